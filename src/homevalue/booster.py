"""The trained booster through LightGBM's own C library, without importing `lightgbm`.

Why not `lightgbm.Booster`: importing the lightgbm package imports scikit-learn (for its
sklearn wrappers) and loading the skops artifact imports skops; together that is +95 MB
of memory and about a second of start-up in every dashboard kernel, for a model whose
prediction is one C call. So serving reads `booster.json` (LightGBM's text model plus the
ordinal encoding the pipeline applies, written by training) and calls LightGBM's library
from the pinned lightgbm wheel as `lightgbm.Booster.predict` does: the library is found
where `lightgbm/libpath.py` looks for it, every function called has its C signature
declared, and every output buffer is sized by `LGBM_BoosterCalcNumPredict`. The tests hold
the two to identical prices on every reference sale. Training and the tests still use the
fitted scikit-learn pipeline (`Model.pipeline`, loaded on first use).

Threads: a NativeBooster may be shared by threads; its calls into LightGBM take turns
(a lock per booster). LightGBM's batch predict takes only a shared lock on the booster,
yet building its per-call predictor writes into the booster (LightGBM issue #6142, open),
contribution predicts run concurrently have corrupted the heap (#5482), and each call sets
OpenMP's thread count for the whole process. Rows within one call still use `threads`.
Every failure to load is a ModelError (LibraryError, BoosterError), so the pages show
their "unavailable" panel and the API reports not ready, never a traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import itertools
import json
import platform
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from homevalue.errors import ModelFileError, ModelRuntimeError

# From LightGBM's c_api.h.
_DTYPE_FLOAT64 = 1
_ROW_MAJOR = 1
_PREDICT_NORMAL = 0
_PREDICT_CONTRIB = 3  # C_API_PREDICT_CONTRIB: TreeSHAP values, then the expected value
_ALL_ITERATIONS = -1
_MAX_ROWS = 2**31 - 1  # nrow is an int32_t in LGBM_BoosterPredictForMat

_HANDLE = ctypes.c_void_p
_INT_OUT = ctypes.POINTER(ctypes.c_int)
_INT64_OUT = ctypes.POINTER(ctypes.c_int64)
# Every function this module calls, with its signature in c_api.h (restype, argtypes):
# declared, so a wrong argument is a TypeError in Python rather than a misread in C, and a
# library without one of them is refused when it is loaded, not at the first price.
_SIGNATURES = {
    "LGBM_GetLastError": (ctypes.c_char_p, []),
    # (model_str, out_num_iterations, out)
    "LGBM_BoosterLoadModelFromString": (
        ctypes.c_int,
        [ctypes.c_char_p, _INT_OUT, ctypes.POINTER(_HANDLE)],
    ),
    "LGBM_BoosterFree": (ctypes.c_int, [_HANDLE]),
    "LGBM_BoosterGetNumFeature": (ctypes.c_int, [_HANDLE, _INT_OUT]),
    "LGBM_BoosterNumberOfTotalModel": (ctypes.c_int, [_HANDLE, _INT_OUT]),
    # (handle, num_row, predict_type, start_iteration, num_iteration, out_len)
    "LGBM_BoosterCalcNumPredict": (
        ctypes.c_int,
        [_HANDLE, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, _INT64_OUT],
    ),
    # (handle, data, data_type, nrow, ncol, is_row_major, predict_type, start_iteration,
    #  num_iteration, parameter, out_len, out_result)
    "LGBM_BoosterPredictForMat": (
        ctypes.c_int,
        [
            _HANDLE,
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int32,
            ctypes.c_int32,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            _INT64_OUT,
            ctypes.POINTER(ctypes.c_double),
        ],
    ),
}


class BoosterError(ModelFileError):
    """A saved booster that cannot be used: LightGBM refused it (the message is then
    LGBM_GetLastError's), or it is not one, or not whole."""


class LibraryError(ModelRuntimeError):
    """LightGBM's shared library cannot be found or loaded, or lacks a function we call."""


def library_candidates() -> list[Path]:
    """Where LightGBM's own `lightgbm/libpath.py` looks for its library, in its order: the
    folder holding the package, then the package's `bin` and `lib`, each with the file name
    of this platform (lib_lightgbm.dll, .dylib or .so). Found without importing lightgbm."""
    spec = importlib.util.find_spec("lightgbm")
    if spec is None or not spec.submodule_search_locations:
        raise LibraryError("the lightgbm package is not installed")
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    folders = [package.parent, package / "bin", package / "lib"]
    system = platform.system()
    if system in ("Windows", "Microsoft"):
        folders += [package.parent / "Release", package.parent / "windows" / "x64" / "DLL"]
        name = "lib_lightgbm.dll"
    elif system == "Darwin":
        name = "lib_lightgbm.dylib"
    else:
        name = "lib_lightgbm.so"
    return [folder / name for folder in folders]


def _library_path() -> Path:
    """The first of `library_candidates` that is a file, as libpath.py picks it."""
    candidates = library_candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise LibraryError(f"LightGBM's library is in none of {', '.join(map(str, candidates))}")


@functools.cache
def _library() -> ctypes.CDLL:
    """LightGBM's library, loaded once, with every function we call declared."""
    path = _library_path()
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:  # missing, not a shared object, wrong architecture
        raise LibraryError(f"LightGBM's library {path} cannot be loaded ({error})") from None
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            function = getattr(library, name)
        except AttributeError:  # another library, or a LightGBM too old for this code
            raise LibraryError(
                f"{path} has no {name}: it is not the LightGBM library this code calls"
            ) from None
        function.restype, function.argtypes = restype, argtypes
    return library


def _call(function: str, *args) -> None:
    library = _library()
    if getattr(library, function)(*args) != 0:
        raise BoosterError(f"{function}: {library.LGBM_GetLastError().decode()}")


_TREE_SIZES = re.compile(rb"^tree_sizes=([0-9 ]*)$", re.MULTILINE)


def check_whole(model: bytes) -> None:
    """Refuse LightGBM model text that LightGBM would read past the end of.

    LightGBM's loader (`GBDT::LoadModelFromString`) finds each tree at the offset its
    header's `tree_sizes` gives, and never checks that offset against the text's length:
    text cut short made it read beyond its buffer and abort or segfault the process
    (LightGBM 4.7, tested). So each tree must start where the sizes say, inside the text,
    and the last one must be followed by `end of trees`, as LightGBM writes it.
    """
    start = model.find(b"\nTree=") + 1
    sizes = _TREE_SIZES.search(model, 0, start) if start else None
    if sizes is None:
        raise BoosterError("the model text is cut short or not LightGBM's: no trees, or no sizes")
    *trees, end = itertools.accumulate((int(n) for n in sizes[1].split()), initial=start)
    whole = end <= len(model) and model.startswith(b"end of trees", end)
    if not whole or not all(model.startswith(b"Tree=", at) for at in trees):
        raise BoosterError(
            f"the model text is cut short or damaged: its {len(trees)} trees need "
            f"{end - start:,} bytes after the header, {len(model) - start:,} are there"
        )


class NativeBooster:
    """A loaded LightGBM model: raw scores (log prices) for rows of encoded features.

    A prediction backend (homevalue.model.Backend). Safe to share between threads: its
    calls into LightGBM take turns (see the module's docstring for why)."""

    name = "lightgbm"

    def __init__(self, model_text: str, feature_names: list[str], categories: dict):
        self.feature_names = list(feature_names)
        self.categories = {name: list(values) for name, values in categories.items()}
        self._lock = threading.Lock()
        self._handle = ctypes.c_void_p()
        model = model_text.encode()
        check_whole(model)
        iterations = ctypes.c_int()
        _call(
            "LGBM_BoosterLoadModelFromString",
            model,
            ctypes.byref(iterations),
            ctypes.byref(self._handle),
        )
        count = ctypes.c_int()
        _call("LGBM_BoosterGetNumFeature", self._handle, ctypes.byref(count))
        if count.value != len(self.feature_names):
            raise BoosterError(
                f"the model has {count.value} features, its encoding names "
                f"{len(self.feature_names)}"
            )

    @classmethod
    def read(cls, path: Path) -> NativeBooster:
        """The booster `export` wrote to `path`; BoosterError says why a file is not one."""
        try:
            saved = json.loads(Path(path).read_bytes().decode("utf-8"))
        except UnicodeDecodeError as error:
            raise BoosterError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
        except ValueError as error:  # json.JSONDecodeError
            raise BoosterError(f"not JSON ({error})") from None
        shape = {"lightgbm_model": str, "feature_names": list, "categories": dict}
        if not isinstance(saved, dict) or any(
            not isinstance(saved.get(key), kind) for key, kind in shape.items()
        ):
            raise BoosterError(
                "not a saved booster: it needs lightgbm_model (text), feature_names (a list) "
                "and categories (a map)"
            )
        return cls(saved["lightgbm_model"], saved["feature_names"], saved["categories"])

    def __del__(self) -> None:
        if getattr(self, "_handle", None) and self._handle.value:
            # At interpreter exit, finding the library again can be too late: nothing to free.
            with contextlib.suppress(ImportError, LibraryError):
                _library().LGBM_BoosterFree(self._handle)
            self._handle = ctypes.c_void_p()

    def predict(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Raw scores for a 2-D float matrix, one per row (LGBM_BoosterPredictForMat)."""
        return self._predict(matrix, _PREDICT_NORMAL, threads).reshape(-1)

    def predict_row(self, row: Sequence[float]) -> float:
        """The raw score of one row given as numbers (the online path's call)."""
        return float(self._predict(np.array([row], dtype=np.float64), _PREDICT_NORMAL, 1)[0, 0])

    def contributions(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Exact TreeSHAP contributions, rows x (features + 1), from LightGBM itself.

        Column j is feature j's share of the row's raw score; the last column is the
        expected value (the same in every row). Each row sums to `predict` of that row, to
        rounding in the last digits: it is LightGBM's `pred_contrib`, the C API's
        contribution predict type, on the booster we already serve.
        """
        return self._predict(matrix, _PREDICT_CONTRIB, threads)

    def _predict(self, matrix: np.ndarray, kind: int, threads: int) -> np.ndarray:
        """LGBM_BoosterPredictForMat of `kind`, as rows x values per row, into a buffer of
        the size LightGBM gives for it (LGBM_BoosterCalcNumPredict), as lightgbm's own
        wrapper sizes it: LightGBM writes that many values, whatever we expect."""
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        if data.ndim != 2:
            raise ValueError(f"a matrix of rows is needed, not {data.ndim} dimensions")
        rows, columns = data.shape
        if columns != len(self.feature_names):
            raise ValueError(f"{columns} columns given, the model takes {len(self.feature_names)}")
        if rows > _MAX_ROWS:
            raise ValueError(f"{rows:,} rows at once: give at most {_MAX_ROWS:,}")
        with self._lock:
            if rows == 0:
                return np.empty((0, self._size(1, kind)), dtype=np.float64)
            out = np.empty(self._size(rows, kind), dtype=np.float64)
            written = ctypes.c_int64()
            _call(
                "LGBM_BoosterPredictForMat",
                self._handle,
                data.ctypes.data_as(ctypes.c_void_p),
                _DTYPE_FLOAT64,
                rows,
                columns,
                _ROW_MAJOR,
                kind,
                0,
                _ALL_ITERATIONS,
                f"num_threads={int(threads)}".encode(),
                ctypes.byref(written),
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        if written.value != len(out) or len(out) % rows:
            raise BoosterError(
                f"LightGBM wrote {written.value} values for {rows} rows, {len(out)} expected"
            )
        return out.reshape(rows, -1)

    def _size(self, rows: int, kind: int) -> int:
        """How many values LightGBM writes for `rows` rows of `kind` (under the lock)."""
        size = ctypes.c_int64()
        _call(
            "LGBM_BoosterCalcNumPredict",
            self._handle,
            rows,
            kind,
            0,
            _ALL_ITERATIONS,
            ctypes.byref(size),
        )
        return size.value

    def num_trees(self) -> int:
        count = ctypes.c_int()
        with self._lock:
            _call("LGBM_BoosterNumberOfTotalModel", self._handle, ctypes.byref(count))
        return count.value


def export(pipeline, path: Path) -> None:
    """Write what NativeBooster needs from a fitted pipeline (training calls this)."""
    encode = pipeline.named_steps["encode"]
    encoder = encode.named_transformers_["categories"]
    saved = {
        "feature_names": [str(name) for name in encode.get_feature_names_out()],
        "categories": {
            str(name): [str(value) for value in values]
            for name, values in zip(encoder.feature_names_in_, encoder.categories_, strict=True)
        },
        "lightgbm_model": pipeline.named_steps["regress"].booster_.model_to_string(),
    }
    Path(path).write_text(json.dumps(saved, indent=1) + "\n")
