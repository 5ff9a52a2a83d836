"""The trained booster through LightGBM's own C library, without importing `lightgbm`.

Why not `lightgbm.Booster`: importing the lightgbm package imports scikit-learn (for its
sklearn wrappers) and loading the skops artifact imports skops; together that is +95 MB
of memory and about a second of start-up in every dashboard kernel, for a model whose
prediction is one C call. So serving reads `booster.json` (LightGBM's text model plus the
ordinal encoding the pipeline applies, written by training) and calls `lib_lightgbm.so`
from the pinned lightgbm wheel exactly as `lightgbm.Booster.predict` does; the tests hold
the two to identical prices on every reference sale. Training and the tests still use the
fitted scikit-learn pipeline (`Model.pipeline`, loaded on first use).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import json
from pathlib import Path

import numpy as np

# From LightGBM's c_api.h.
_DTYPE_FLOAT64 = 1
_ROW_MAJOR = 1
_PREDICT_NORMAL = 0
_ALL_ITERATIONS = -1


class BoosterError(RuntimeError):
    """LightGBM refused a call; the message is LGBM_GetLastError's."""


@functools.cache
def _library() -> ctypes.CDLL:
    """lib_lightgbm.so from the installed lightgbm package, found without importing it."""
    spec = importlib.util.find_spec("lightgbm")
    if spec is None or not spec.submodule_search_locations:
        raise BoosterError("the lightgbm package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "lib" / "lib_lightgbm.so"
    library = ctypes.CDLL(str(path))
    library.LGBM_GetLastError.restype = ctypes.c_char_p
    return library


def _call(function: str, *args) -> None:
    library = _library()
    if getattr(library, function)(*args) != 0:
        raise BoosterError(f"{function}: {library.LGBM_GetLastError().decode()}")


class NativeBooster:
    """A loaded LightGBM model: raw scores (log prices) for rows of encoded features."""

    def __init__(self, model_text: str, feature_names: list[str], categories: dict):
        self.feature_names = list(feature_names)
        self.categories = {name: list(values) for name, values in categories.items()}
        self._handle = ctypes.c_void_p()
        iterations = ctypes.c_int()
        _call(
            "LGBM_BoosterLoadModelFromString",
            model_text.encode(),
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
        saved = json.loads(Path(path).read_text())
        return cls(saved["lightgbm_model"], saved["feature_names"], saved["categories"])

    def __del__(self) -> None:
        if getattr(self, "_handle", None) and self._handle.value:
            _library().LGBM_BoosterFree(self._handle)
            self._handle = ctypes.c_void_p()

    def predict(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Raw scores for a 2-D float matrix, one per row (LGBM_BoosterPredictForMat)."""
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        rows, columns = data.shape
        if columns != len(self.feature_names):
            raise ValueError(f"{columns} columns given, the model takes {len(self.feature_names)}")
        out = np.empty(rows, dtype=np.float64)
        if rows == 0:
            return out
        written = ctypes.c_int64()
        _call(
            "LGBM_BoosterPredictForMat",
            self._handle,
            data.ctypes.data_as(ctypes.c_void_p),
            _DTYPE_FLOAT64,
            ctypes.c_int32(rows),
            ctypes.c_int32(columns),
            _ROW_MAJOR,
            _PREDICT_NORMAL,
            0,
            _ALL_ITERATIONS,
            f"num_threads={int(threads)}".encode(),
            ctypes.byref(written),
            out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
        )
        if written.value != rows:
            raise BoosterError(f"LightGBM wrote {written.value} predictions for {rows} rows")
        return out

    def num_trees(self) -> int:
        count = ctypes.c_int()
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
