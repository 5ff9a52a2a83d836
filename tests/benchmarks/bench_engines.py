"""Tree engines for our booster side by side: LightGBM, lleaves (ours) and tl2cgen/treelite.

Issue 13 asked to "measure, choose, write down why": docs/engines.md holds the choice and
the figures this script printed. Each engine prices the same encoded matrix (reference
sales drawn with replacement, as bench_core's files are, validated and encoded), and is
measured for:
- compile time: wall seconds and CPU seconds (this process and its children: gcc), from
  LightGBM's model text to a loadable library (LightGBM itself has none);
- rows/s at each thread count, best of --repeats, the engines taking turns so a change in
  the machine's other load falls on all of them alike;
- one row: p50 of --calls calls after a warm-up, as the engine's own Python API prices it
  and, for the compiled ones, through ctypes into the library with buffers kept (how
  homevalue.compiled calls lleaves' library: `CompiledForest.predict_row`);
- agreement: the largest difference from LightGBM's raw score (log price) on every row.

tl2cgen and treelite are not homevalue's dependencies. Measure them from a scratch
environment that holds only them, put after ours on the path:
    python3 -m venv .venv-tl2cgen
    .venv-tl2cgen/bin/pip install --no-deps tl2cgen==1.0.0 treelite==4.8.1
    PYTHONPATH=$(echo .venv-tl2cgen/lib/python3*/site-packages) \\
        .venv/bin/python tests/benchmarks/bench_engines.py
(tl2cgen 1.0.0 carries treelite 4.1.2 inside and warns that the model it is handed comes
from a newer treelite; its prices are checked against LightGBM's all the same.) Without
them the tl2cgen rows are skipped, with a line saying so.

Usage: bench_engines.py [--rows 1000000] [--threads 1,2] [--repeats 3] [--calls 5000]
                        [--json PATH]
Not a pytest module. Quote the load average it prints with any figure.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import report_engines
from measure import time_calls

from homevalue import compiled, config, load_model
from homevalue.comps import reference_sales
from homevalue.predict import encode_frame
from homevalue.schema import validate_frame

# tl2cgen's code generator: split the trees over this many C files, compiled in parallel
# by as many gcc processes (its default is one file: minutes of one core for 800 trees).
TL2CGEN_PARALLEL_COMP = 8


def encoded_matrix(model, rows: int, seed: int = 0) -> np.ndarray:
    """`rows` reference sales drawn with replacement, validated and encoded."""
    sales = reference_sales(config.model_dir()).drop(columns=["Sale_Price"])
    picks = np.random.default_rng(seed).integers(0, len(sales), rows)
    checked = validate_frame(model.schema, sales.iloc[picks].reset_index(drop=True))
    return np.ascontiguousarray(encode_frame(model, checked.values)[checked.ok])


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the C compiler)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(work) -> tuple[object, float, float]:
    """(what `work()` returned, wall seconds, CPU seconds)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = work()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def p50_us(call, calls: int, warmup: int = 500) -> float:
    return float(np.percentile(time_calls(call, calls, warmup), 50)) * 1e6


class Engine:
    """One way of pricing: `predict(matrix, threads)`, `one(row)`, and what building cost."""

    name = ""
    compile_wall: float | None = None
    compile_cpu: float | None = None
    note = ""

    def predict(self, matrix: np.ndarray, threads: int) -> np.ndarray:
        raise NotImplementedError

    def one_calls(self, row: np.ndarray) -> dict:
        """{label: a call pricing `row` alone}."""
        raise NotImplementedError


class LightGBMEngine(Engine):
    name = "LightGBM 4 (lightgbm.Booster.predict)"

    def __init__(self, model_text: str):
        import lightgbm

        self.booster = lightgbm.Booster(model_str=model_text)

    def predict(self, matrix, threads):
        return self.booster.predict(matrix, raw_score=True, num_threads=threads)

    def one_calls(self, row):
        from homevalue import load_model

        native = load_model().booster  # homevalue's own call of the same C library
        one = row.reshape(1, -1)
        return {
            "Booster.predict": lambda: self.booster.predict(one, raw_score=True, num_threads=1),
            "C API via ctypes (homevalue.booster)": lambda: native.predict(one),
        }


class LleavesEngine(Engine):
    name = "lleaves (homevalue.compiled)"

    def __init__(self, model_text: str, features: int, folder: Path):
        path = folder / f"lleaves-v{compiled.FORMAT}.so"
        _, self.compile_wall, self.compile_cpu = timed(lambda: compiled.build(model_text, path))
        self.forest = compiled.CompiledForest(path, features)

    def predict(self, matrix, threads):
        return self.forest.predict(matrix, threads=threads)

    def one_calls(self, row):
        values = row.tolist()
        return {"CompiledForest.predict_row (ctypes)": lambda: self.forest.predict_row(values)}


class Tl2cgenEngine(Engine):
    name = "tl2cgen (treelite)"

    def __init__(self, model_text: str, features: int, folder: Path):
        import tl2cgen
        import treelite

        self.tl2cgen, self.features = tl2cgen, features
        source = folder / "model.txt"
        source.write_text(model_text)
        path = folder / "tl2cgen.so"

        def build():
            model = treelite.frontend.load_lightgbm_model(str(source))
            tl2cgen.export_lib(
                model,
                toolchain=os.environ.get("CC", "gcc"),
                libpath=str(path),
                params={"parallel_comp": TL2CGEN_PARALLEL_COMP},
                nthread=os.cpu_count(),
            )

        _, self.compile_wall, self.compile_cpu = timed(build)
        self.note = (
            f"tl2cgen {tl2cgen.__version__}, treelite {treelite.__version__}, "
            f"parallel_comp={TL2CGEN_PARALLEL_COMP}, {os.cpu_count()} gcc processes"
        )
        self.path = path
        self.predictors: dict[int, object] = {}
        # The generated `predict(union Entry *row, int pred_margin, double *out)`, one row.
        self.library = ctypes.CDLL(str(path))
        self.entry = self.library.predict
        self.entry.restype = None
        self.entry.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]

    def predictor(self, threads: int):
        if threads not in self.predictors:
            self.predictors[threads] = self.tl2cgen.Predictor(str(self.path), nthread=threads)
        return self.predictors[threads]

    def predict(self, matrix, threads):
        data = self.tl2cgen.DMatrix(matrix, dtype="float64")
        return self.predictor(threads).predict(data, pred_margin=True).reshape(-1)

    def one_calls(self, row):
        if np.isnan(row).any():
            raise ValueError("the one-row call writes values only: give a row without NaN")
        predictor = self.predictor(1)
        one = row.reshape(1, -1)
        source = (ctypes.c_double * self.features)(*row.tolist())  # Entry.fvalue, in order
        target = (ctypes.c_double * 1)()
        values = row.tolist()

        def direct() -> float:
            source[:] = values
            self.entry(source, 1, target)
            return target[0]

        return {
            "Predictor.predict(DMatrix)": lambda: predictor.predict(
                self.tl2cgen.DMatrix(one, dtype="float64"), pred_margin=True
            ),
            "generated predict() via ctypes": direct,
        }


def engines(model, folder: Path) -> tuple[list[Engine], list[str]]:
    text = model._model_text()
    features = len(model.schema.names)
    found: list[Engine] = [LightGBMEngine(text)]
    skipped = []
    try:
        found.append(LleavesEngine(text, features, folder))
    except compiled.CompileUnavailable as error:
        skipped.append(f"lleaves: {error}")
    try:
        import tl2cgen  # noqa: F401
        import treelite  # noqa: F401
    except ImportError as error:
        skipped.append(
            f"tl2cgen: cannot be imported ({error}): install it in a scratch environment "
            "and put it on PYTHONPATH, as this script's docstring shows"
        )
    else:
        found.append(Tl2cgenEngine(text, features, folder))
    return found, skipped


def measure(args) -> dict:
    model = load_model()
    matrix = encoded_matrix(model, args.rows)
    reference = model.booster.predict(matrix, threads=max(args.threads))
    with tempfile.TemporaryDirectory(prefix="homevalue-engines-") as scratch:
        found, skipped = engines(model, Path(scratch))
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
        speed: dict[str, dict[int, float]] = {e.name: {} for e in found}
        for _ in range(args.repeats):  # the engines take turns, round after round
            for engine in found:
                for threads in args.threads:
                    _, wall, _ = timed(lambda e=engine, t=threads: e.predict(matrix, t))
                    best = speed[engine.name].get(threads, 0.0)
                    speed[engine.name][threads] = max(best, len(matrix) / wall)
        row = matrix[0]
        results = []
        for engine in found:
            gap = float(np.max(np.abs(engine.predict(matrix, max(args.threads)) - reference)))
            calls = engine.one_calls(row).items()
            ones = {label: p50_us(call, args.calls) for label, call in calls}
            results.append(
                {
                    "engine": engine.name,
                    "note": engine.note,
                    "compile_wall_s": engine.compile_wall,
                    "compile_cpu_s": engine.compile_cpu,
                    "rows_per_s": {str(t): speed[engine.name][t] for t in args.threads},
                    "one_row_p50_us": ones,
                    "max_abs_log_difference": gap,
                }
            )
    return {
        "rows": len(matrix),
        "threads": args.threads,
        "repeats": args.repeats,
        "calls": args.calls,
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "skipped": skipped,
        "engines": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    args.threads = [int(t) for t in args.threads.split(",")]
    found = measure(args)
    print(report_engines.table(found))
    print(
        f"{found['rows']:,} rows, best of {found['repeats']}; one row: p50 of "
        f"{found['calls']:,} calls; load average {found['load_average']}"
    )
    for engine in found["engines"]:
        if engine["note"]:
            print(f"{engine['engine']}: {engine['note']}")
    if args.json:
        args.json.write_text(json.dumps(found, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
