"""The booster's trees compiled to machine code: the fast backend for batch and online prices.

Why: LightGBM's own predict walks 800 trees of 15 leaves through generic node arrays, about
50 µs a row; the same trees compiled to straight-line code by lleaves (LLVM) price a row in
a few µs, to the last bits of the same sums. So serving compiles the booster once, caches
the shared library on disk keyed by the booster's SHA-256, and every later process (a
dashboard kernel, a cron run, an API worker) loads it with ctypes in about a millisecond:
no LLVM, lleaves or compiler is imported or needed to *use* it.

Compiling takes lleaves + llvmlite (pinned) and a C compiler driver to link the object
(`cc`, or $CC), about 12 s of one core. It happens at `make install` and `make model`
(`python -m homevalue.compiled`), and lazily when a batch file is large enough to pay for it
(homevalue.batch); a viewer's price never waits for it. Where it cannot be done, prices
come from LightGBM's library as before, with one warning in the log.

The library is written under a temporary name and renamed into place, so a process never
loads a half-written one; loading checks it against LightGBM on known rows before use.
Every failure is a ModelRuntimeError naming the file and what to do.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from homevalue import config
from homevalue.errors import ModelRuntimeError

log = logging.getLogger("homevalue.compiled")

# Bumped when the way a library is built changes (its entry point, its arguments): a
# library of another format is simply another file in the cache.
FORMAT = 1
ENTRY = "forest_root"  # lleaves' entry: (double *rows, double *out, int32 start, int32 end)
# A compiled library must give LightGBM's raw score to this much (log price): lleaves
# adds the trees' values in another order, which moves the last bits (measured 5e-14).
TOLERANCE = 1e-9
FIX = (
    "delete it (it is rebuilt by `python -m homevalue.compiled`, `make model` or the next "
    "large batch), or set HOMEVALUE_COMPILED=0 to price with LightGBM's library"
)


class CompileUnavailable(ModelRuntimeError):
    """This environment cannot compile the booster (no lleaves/llvmlite, or no linker)."""


def enabled() -> bool:
    """HOMEVALUE_COMPILED=0 keeps every price on LightGBM's library (operators, tests)."""
    return os.environ.get("HOMEVALUE_COMPILED", "1").strip().lower() not in ("0", "false", "no")


def library_path(booster_sha256: str, folder: Path | None = None) -> Path:
    """Where the compiled library of the booster with this SHA-256 lives in the cache,
    named as this platform names a shared library (as lightgbm/libpath.py names its own)."""
    folder = Path(folder or config.cache_dir())
    suffix = {"Darwin": "dylib", "Windows": "dll", "Microsoft": "dll"}.get(platform.system(), "so")
    return folder / f"forest-{booster_sha256}-{platform.machine()}-v{FORMAT}.{suffix}"


class CompiledForest:
    """A compiled booster: raw scores (log prices) for rows of encoded features.

    A prediction backend (homevalue.model.Backend). Safe to share between threads without
    a lock: the compiled function only reads its rows and writes its own outputs (lleaves
    emits no global state), `predict` gives each call its own output array, and
    `predict_row` keeps its two buffers per thread."""

    name = "compiled"

    def __init__(self, path: Path, features: int):
        self.path, self.features = Path(path), int(features)
        try:
            self._library = ctypes.CDLL(str(self.path))
            entry = getattr(self._library, ENTRY)
        except (OSError, AttributeError) as error:  # missing, not a library, no entry point
            raise ModelRuntimeError(
                f"the compiled model {self.path} cannot be loaded ({error}): {FIX}"
            ) from None
        # lleaves' entry, `void forest_root(double *rows, double *out, int32 start, int32 end)`:
        # declared, so a wrong argument is a TypeError rather than a misread in machine code.
        entry.restype = None
        entry.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32]
        self._entry = entry
        self._row_type = ctypes.c_double * self.features
        self._buffers = threading.local()  # predict_row's, one pair per thread

    def predict(self, matrix: np.ndarray, *, threads: int = 1) -> np.ndarray:
        """Raw scores for a 2-D float matrix, one per row; `threads` split the rows (the
        call releases the GIL, as ctypes calls do)."""
        data = np.ascontiguousarray(matrix, dtype=np.float64)
        rows, columns = data.shape
        if columns != self.features:
            raise ValueError(f"{columns} columns given, the model takes {self.features}")
        if rows >= 2**31 - 1:
            raise ValueError(f"{rows:,} rows at once: give fewer than 2**31 - 1")
        out = np.empty(rows, dtype=np.float64)
        source, target = data.ctypes.data, out.ctypes.data
        parts = max(1, min(int(threads), rows // 1024))  # a small call is not worth a thread
        if parts == 1:
            self._entry(source, target, 0, rows)
            return out
        edges = np.linspace(0, rows, parts + 1).astype(int)
        with concurrent.futures.ThreadPoolExecutor(parts) as pool:
            list(
                pool.map(
                    lambda start, end: self._entry(source, target, int(start), int(end)),
                    edges[:-1],
                    edges[1:],
                )
            )
        return out

    def predict_row(self, row: Sequence[float]) -> float:
        """The raw score of one row given as numbers: the online path's call.

        `predict` of a one-row matrix spends more in numpy than the trees take (building
        the array, the output, their addresses: ~5 µs of ~15), so one row goes through two
        ctypes arrays kept per thread (a price may be asked from several threads at once)
        and comes back as a float."""
        buffers = self._buffers
        try:
            source, target = buffers.source, buffers.target
        except AttributeError:
            source = buffers.source = self._row_type()
            target = buffers.target = (ctypes.c_double * 1)()
        if len(row) != self.features:
            raise ValueError(f"{len(row)} values given, the model takes {self.features}")
        source[:] = row
        self._entry(source, target, 0, 1)
        return target[0]


def check_against(forest: CompiledForest, reference, rows: np.ndarray) -> None:
    """Refuse a library that does not give `reference`'s raw scores on `rows` (a stale or
    foreign file in the cache would otherwise price every house wrongly, silently)."""
    expected = reference.predict(rows)
    found = forest.predict(rows)
    worst = float(np.max(np.abs(found - expected))) if len(rows) else 0.0
    if not np.isfinite(worst) or worst > TOLERANCE:
        raise ModelRuntimeError(
            f"the compiled model {forest.path} disagrees with LightGBM by {worst:.3g} in log "
            f"price on known rows (at most {TOLERANCE:g} is allowed): {FIX}"
        )


# --- building -----------------------------------------------------------------------------

_BUILDING = threading.Lock()  # one compile at a time per process (it takes a core for 12 s)


def _linker() -> str:
    found = shutil.which(os.environ.get("CC") or "cc")
    if found is None:
        raise CompileUnavailable(
            "no C compiler driver (`cc`, or $CC) to link the compiled model: install one "
            "(Debian: apt-get install gcc) to price batches several times faster"
        )
    return found


def _object_code(model_text: str, scratch: Path) -> bytes:
    """The booster as a relocatable object file for this machine's architecture."""
    try:
        import lleaves.compiler  # noqa: F401
        import llvmlite.binding  # noqa: F401
    except ImportError as error:
        raise CompileUnavailable(
            f"lleaves cannot be imported ({error}): install the pinned environment "
            "(`make install`) to price batches several times faster"
        ) from None
    try:
        return _compile_to_object(model_text, scratch)
    except Exception as error:  # LLVM and lleaves fail in their own ways; none is ours
        raise ModelRuntimeError(
            f"compiling the model failed ({type(error).__name__}: {error}): prices stay on "
            "LightGBM's library"
        ) from None


def _compile_to_object(model_text: str, scratch: Path) -> bytes:
    import llvmlite.binding as llvm
    from lleaves.compiler import compile_to_module

    source = scratch / "model.txt"
    source.write_text(model_text)
    # raw_score: the log price itself, as LightGBM's C API gives it (regression's identity).
    module = compile_to_module(str(source), raw_score=True)
    llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    # The architecture's baseline CPU, not this host's: the cache may be shared by machines
    # of one architecture with other CPUs, and the trees are compares and adds anyway.
    machine = target.create_target_machine(reloc="pic", codemodel="default", opt=3)
    return machine.emit_object(module)


def build(model_text: str, target: Path) -> Path:
    """Compile `model_text` (LightGBM's text model) into the shared library `target`.

    Written under a temporary name in the same folder and renamed into place: a process
    that loads `target` concurrently finds the old file, none, or the whole new one.
    Raises CompileUnavailable when this environment cannot compile, ModelRuntimeError when
    the compiler fails.
    """
    target = Path(target)
    linker = _linker()
    with _BUILDING, tempfile.TemporaryDirectory(prefix="homevalue-compile-") as folder:
        scratch = Path(folder)
        obj = scratch / "forest.o"
        obj.write_bytes(_object_code(model_text, scratch))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            done = subprocess.run(
                [linker, "-shared", "-o", str(temporary), str(obj)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                raise ModelRuntimeError(
                    f"linking the compiled model failed ({linker}: "
                    f"{done.stderr.strip()[-300:]}): prices stay on LightGBM's library"
                )
            os.replace(temporary, target)
        except OSError as error:
            raise ModelRuntimeError(
                f"cannot write the compiled model into {target.parent} ({error}): set "
                "HOMEVALUE_CACHE_DIR to a writable folder"
            ) from None
    return target


def main(argv: list[str] | None = None) -> int:
    """`python -m homevalue.compiled`: compile the model's booster into the cache now (the
    warm-up `make install` and `make model` run), so no batch waits for it later."""
    import time

    from homevalue.model import load_model

    logging.basicConfig(format="homevalue: %(message)s", level=logging.INFO)
    model = load_model(argv[0] if argv else None)
    start = time.perf_counter()
    forest = model.compiled(build=True)
    if forest is None:
        return 0  # the reason was logged; prices stay on LightGBM's library
    print(f"compiled model ready: {forest.path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
