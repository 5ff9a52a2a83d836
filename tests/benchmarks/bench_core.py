"""Core benchmarks: online latency and batch throughput/memory, ours against the naive way.

Run with `make bench` (= `.venv/bin/python tests/benchmarks/bench_core.py`). Writes the
"core" section of docs/benchmarks.json and the part of docs/benchmarks.md between
`<!-- core:start -->` and `<!-- core:end -->`, keeping anything else in those files.

1. Online: `predict_one(record)` against `model.pipeline.predict(pd.DataFrame([row]))` (the
   naive call) and `lightgbm.Booster.predict` on the encoded row (the obvious fast one, one
   thread like ours) for the same house, `predict_one(record, explain=True)`,
   `comparable_sales`, and what the price page computes for one change of the form: price,
   explanation, comps and what-if curve, then the same through `PricePage` itself (p50/p99
   over many calls after a warm-up).
2. Batch: 100k- and 1M-row CSVs sampled from the reference sales, CSV in -> CSV out, scored
   by `homevalue.batch.score_file` (validation, compiled trees, Arrow IO) and by the naive
   read-all / pipeline.predict / write-all script, at EQUAL thread counts (1 and 2: the
   child's OMP_NUM_THREADS, Arrow's pool and the booster's threads all set to it). Each
   run is its own subprocess, so peak RSS is per run; runs alternate ours/naive and the
   median of the repeats is reported (the machine is shared and noisy). Beside them,
   `lightgbm.Booster.predict` alone on the encoded matrix of the largest file (no
   reading, validation or writing) and our compiled forest on the same matrix.
3. Where the time goes in one 100k chunk, stage by stage, ours and naive at the same
   (largest --threads) thread count.

Not a pytest module (no test_ prefix, no test_ functions): it is too slow and too
machine-dependent to gate CI. `--strict` makes it exit 1 when a target is missed.
Usage: bench_core.py [--sizes 100000,300000,1000000] [--threads 1,2] [--repeats 5]
                     [--repeats-large 2] [--calls 3000] [--only batch] [--strict] [--no-write]
                     [--docs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import report
import report_core
from measure import RECORD, own_cpu_seconds, summary, time_calls
from report import load_average

LIBRARIES = [
    "homevalue",
    "pandas",
    "numpy",
    "scikit-learn",
    "lightgbm",
    "pyarrow",
    "skops",
    "lleaves",
    "llvmlite",
]

LARGE_ROWS = 300_000  # files this big are run --repeats-large times (default 2), not --repeats


# --- small helpers ------------------------------------------------------------------------


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child
    started by a big parent would report the parent's size instead of its own.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes there, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def latency_ms(call, calls: int, warmup: int) -> dict:
    """p50/p99/mean of `call()` in milliseconds, after `warmup` untimed calls."""
    ms = time_calls(call, calls, warmup) * 1e3
    return {"calls": calls, "warmup": warmup, **summary(ms, unit="_ms")}


def lightgbm_booster(model):
    """LightGBM's own Python API on the model's trees: the obvious fast alternative."""
    import lightgbm

    text = json.loads((model.path / "booster.json").read_text())["lightgbm_model"]
    return lightgbm.Booster(model_str=text)


# --- 1. online ----------------------------------------------------------------------------


def measure_online(calls: int) -> dict:
    import homevalue
    from homevalue import load_model, predict_one
    from homevalue.comps import comparable_sales_for
    from homevalue.predict import encode
    from homevalue.schema import validate_record

    model = load_model()
    row = {name: RECORD[name] for name in model.schema.names}
    ours = predict_one(RECORD, model=model)
    naive_price = float(np.exp(model.pipeline.predict(pd.DataFrame([row]))[0]))
    if abs(round(naive_price) - ours.price) > 1:
        raise SystemExit(f"predict_one gave {ours.price}, the pipeline {naive_price}: not the same")

    one = latency_ms(lambda: homevalue.predict_one(RECORD), calls, warmup=200)
    naive_calls = max(50, calls // 6)
    naive = latency_ms(lambda: model.pipeline.predict(pd.DataFrame([row])), naive_calls, warmup=20)
    booster = lightgbm_booster(model)
    encoded = encode(model, validate_record(model.schema, RECORD)[0])
    lightgbm_row = latency_ms(lambda: booster.predict(encoded, num_threads=1), calls, warmup=200)
    explained = latency_ms(lambda: predict_one(RECORD, explain=True), calls // 3, warmup=50)

    def page_comps():  # as the price page asks, on every change
        comparable_sales_for(RECORD, with_model_price=True)

    comps = latency_ms(page_comps, max(500, calls // 3), warmup=100)
    change, page = measure_page_change(model, max(200, calls // 10))
    return {
        "record": RECORD,
        "price": ours.price,
        "flags": [f.code for f in ours.flags],
        "predict_one": one,
        "naive_pipeline": naive,
        "lightgbm_row": lightgbm_row,
        "predict_one_explain": explained,
        "comparable_sales": comps,
        "page_change": change,
        "page_refresh": page,
        "speedup_p50": naive["p50_ms"] / one["p50_ms"],
        "speedup_p99": naive["p99_ms"] / one["p99_ms"],
    }


def measure_page_change(model, calls: int) -> tuple[dict, dict]:
    """One change of the price page's form (the living area, between two sizes): what it
    computes (price, explanation, comps, what-if curve), and PricePage.refresh doing it
    with its widgets (no browser attached: the messages are built, not sent)."""
    from homevalue import predict_one
    from homevalue.comps import comparable_sales_for
    from homevalue.predict import explain_prediction, what_if
    from homevalue.ui import PricePage
    from homevalue.ui.price import what_if_grid

    page = PricePage(model)
    page.form.set_values({name: RECORD[name] for name in model.schema.names})
    varied = page.what_if_choice.value
    feature = model.schema.by_name[varied]
    areas = iter(np.resize([RECORD["Gr_Liv_Area"], RECORD["Gr_Liv_Area"] + 200], 10 * calls))

    def one_change() -> None:
        record = {**RECORD, "Gr_Liv_Area": int(next(areas))}
        price = predict_one(record, model=model)
        explain_prediction(price, model=model)
        comparable_sales_for(record, folder=model.path, with_model_price=True)
        what_if(price.inputs, varied, what_if_grid(feature, price.inputs[varied]), model=model)

    def page_change() -> None:
        page.form.inputs["Gr_Liv_Area"].value = int(next(areas))

    return latency_ms(one_change, calls, warmup=20), latency_ms(page_change, calls, warmup=20)


# --- 2. batch -----------------------------------------------------------------------------


def make_inputs(folder: Path, sizes: list[int], seed: int = 0) -> dict[int, Path]:
    """CSV files of listings: reference sales drawn with replacement, price dropped, an id."""
    from homevalue import config
    from homevalue.comps import reference_sales

    sales = reference_sales(config.model_dir()).drop(columns=["Sale_Price"])
    largest = max(sizes)
    picks = np.random.default_rng(seed).integers(0, len(sales), largest)
    listings = sales.iloc[picks].reset_index(drop=True)
    listings.insert(0, "listing_id", [f"L{i:08d}" for i in range(1, largest + 1)])
    paths = {}
    for size in sorted(sizes):
        path = folder / f"listings_{size}.csv"
        listings.iloc[:size].to_csv(path, index=False)
        paths[size] = path
    return paths


def measured(work) -> dict:
    """Run `work()` (returns a dict of counts) with wall, CPU and memory accounting."""
    baseline = peak_rss_mib()
    load = load_average()
    cpu, start = own_cpu_seconds(), time.perf_counter()
    counts = work()
    wall, cpu = time.perf_counter() - start, own_cpu_seconds() - cpu
    return {
        **counts,
        "wall_s": wall,
        "cpu_s": cpu,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
        "load1_at_start": load[0] if load else None,
    }


def child_ours(source: Path, out_dir: Path, threads: int) -> dict:
    from homevalue import load_model
    from homevalue.batch import score_file

    model = load_model()
    engine = "compiled" if model.compiled() is not None else "lightgbm"

    def work():
        result = score_file(source, out_dir, model=model, progress=False, threads=threads)
        return {
            "rows": result.rows_read,
            "rows_scored": result.rows_scored,
            "rows_rejected": result.rows_rejected,
            "engine": engine,
        }

    return measured(work)


def child_naive(source: Path, out_dir: Path, threads: int) -> dict:
    from homevalue import load_model

    model = load_model()
    pipeline = model.pipeline.set_params(regress__n_jobs=threads)

    def work():
        df = pd.read_csv(source)
        out = df.assign(predicted_price=np.exp(pipeline.predict(df[model.schema.names])))
        out.to_csv(out_dir / f"{source.stem}.naive.csv", index=False)
        return {"rows": len(df), "rows_scored": len(out), "rows_rejected": 0}

    return measured(work)


CHILDREN = {"ours": child_ours, "naive": child_naive}


def run_child(method: str, source: Path, scratch: Path, threads: int) -> dict:
    """One batch run in a fresh interpreter with `threads` threads at most for everything
    (OpenMP, Arrow's pool, the booster); its outputs are deleted afterwards."""
    out_dir = scratch / f"out_{method}"
    out_dir.mkdir()
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, __file__, "--child", method, str(source), str(out_dir), str(threads)],
            capture_output=True,
            text=True,
            check=False,
            env=environment,
        )
        process_wall = time.perf_counter() - start
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"{method} on {source.name} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = process_wall
    result["rows_per_s"] = result["rows"] / result["wall_s"]
    return result


def repeats_for(size: int, repeats: int, repeats_large: int) -> int:
    return max(1, repeats_large if size >= LARGE_ROWS else repeats)


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Each method's median over its runs, and ours against naive."""
    both: dict = {}
    for method, results in runs.items():
        medians = {
            key: statistics.median(r[key] for r in results)
            for key in ("wall_s", "rows_per_s", "cpu_s", "peak_rss_mib", "baseline_rss_mib")
        }
        first = results[0]
        both[method] = {
            **medians,
            **{key: first[key] for key in ("rows", "rows_scored", "rows_rejected")},
            "engine": first.get("engine", "pipeline"),
            "cpu_s_per_100k_rows": medians["cpu_s"] / first["rows"] * 1e5,
            "runs": results,
        }
    ours, naive = both["ours"], both["naive"]
    both["throughput_ratio"] = ours["rows_per_s"] / naive["rows_per_s"]
    both["rss_ratio"] = ours["peak_rss_mib"] / naive["peak_rss_mib"]
    both["cpu_ratio"] = ours["cpu_s"] / naive["cpu_s"]
    both["repeats"] = len(runs["ours"])
    return both


def measure_batch(
    paths: dict[int, Path], threads: list[int], repeats: int, repeats_large: int, scratch: Path
) -> dict:
    sizes = {}
    for size, path in sorted(paths.items()):
        by_threads = {}
        for count in threads:
            runs: dict[str, list[dict]] = {"ours": [], "naive": []}
            for repeat in range(repeats_for(size, repeats, repeats_large)):
                order = ["ours", "naive"] if repeat % 2 == 0 else ["naive", "ours"]
                for method in order:
                    run = run_child(method, path, scratch, count)
                    runs[method].append(run)
                    print(
                        f"  {size:>9,} rows  {count} thr  {method:<5}  {run['wall_s']:7.2f} s  "
                        f"{run['rows_per_s']:>9,.0f} rows/s  cpu {run['cpu_s']:6.1f} s  "
                        f"peak {run['peak_rss_mib']:6.0f} MiB  load {run['load1_at_start']}",
                        file=sys.stderr,
                    )
            by_threads[str(count)] = summarise(runs)
        sizes[str(size)] = {"file_mib": path.stat().st_size / 2**20, "by_threads": by_threads}
    return {"threads": threads, "sizes": sizes, "predict_only": predict_only(paths, threads)}


def predict_only(paths: dict[int, Path], threads: list[int]) -> dict:
    """The model alone on the largest file's encoded matrix: `lightgbm.Booster.predict`
    (LightGBM's own Python API) and our compiled forest, at each thread count (best of 2)."""
    from homevalue import load_model
    from homevalue.batch import read_chunks
    from homevalue.predict import encode_frame
    from homevalue.schema import validate_frame

    model = load_model()
    size, path = max(paths.items())
    parts = []
    for frame in read_chunks(path, 100_000):
        checked = validate_frame(model.schema, frame)
        parts.append(encode_frame(model, checked.values)[checked.ok])
    matrix = np.concatenate(parts)
    booster = lightgbm_booster(model)
    forest = model.compiled(build=True)
    found: dict = {"rows": len(matrix), "file_rows": size, "lightgbm": {}, "compiled": {}}
    engines = {"lightgbm": lambda n: booster.predict(matrix, num_threads=n)}
    if forest is not None:
        engines["compiled"] = lambda n: forest.predict(matrix, threads=n)
    for count in threads:
        for name, predict in engines.items():
            best = min(_seconds(predict, count) for _ in range(2))
            found[name][str(count)] = {"seconds": best, "rows_per_s": len(matrix) / best}
    if forest is not None:
        gap = np.max(np.abs(booster.predict(matrix, num_threads=2) - forest.predict(matrix)))
        found["max_abs_log_difference"] = float(gap)
    return found


def _seconds(predict, threads: int) -> float:
    start = time.perf_counter()
    predict(threads)
    return time.perf_counter() - start


# --- 3. where the time goes ---------------------------------------------------------------


class Stopwatch:
    """Seconds spent inside wrapped functions, by name."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def wrap(self, name, function):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed

    def wrap_iterator(self, name, function):
        def timed(*args, **kwargs):
            iterator = iter(function(*args, **kwargs))
            while True:
                start = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                    return
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
                yield item

        return timed


@contextlib.contextmanager
def patched(owner, name, replacement):
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def breakdown_ours(source: Path, scratch: Path, threads: int) -> dict:
    """Run the real score_file on one chunk with timers around each stage it calls."""
    from homevalue import batch, predict
    from homevalue.model import Model, load_model

    model = load_model()
    watch = Stopwatch()
    out_dir = scratch / "breakdown"
    with contextlib.ExitStack() as stack:
        for owner, name, label in [
            (predict, "validate_frame", "validate"),
            (predict, "encode_frame", "encode"),
            (Model, "predict_log", "predict"),
            (predict, "finish", "finish"),
            (batch, "score_frame", "score_frame"),
            (batch, "neutralise_formulas", "neutralise"),
            (batch._CsvSink, "write", "sink_write"),
        ]:
            stack.enter_context(patched(owner, name, watch.wrap(label, getattr(owner, name))))
        stack.enter_context(
            patched(batch, "read_chunks", watch.wrap_iterator("read", batch.read_chunks))
        )
        start = time.perf_counter()
        result = batch.score_file(source, out_dir, model=model, progress=False, threads=threads)
        total = time.perf_counter() - start
    shutil.rmtree(out_dir, ignore_errors=True)
    s = watch.seconds
    inner = s["validate"] + s["encode"] + s["predict"] + s["finish"]
    stages = {
        "read": s["read"],
        "validate": s["validate"],
        "encode": s["encode"],
        "predict": s["predict"],
        "finish": s["finish"],
        "assemble": s["score_frame"] - inner,
        "neutralise": s["neutralise"],
        "write": s["sink_write"] - s["neutralise"],
    }
    stages["other"] = total - sum(stages.values())
    return {"rows": result.rows_read, "total_s": total, "stages": stages, "threads": threads}


def breakdown_naive(source: Path, scratch: Path, threads: int) -> dict:
    from homevalue import load_model

    model = load_model()
    pipeline = model.pipeline.set_params(regress__n_jobs=threads)
    clock = time.perf_counter
    t0 = clock()
    df = pd.read_csv(source)
    t1 = clock()
    log_price = pipeline.predict(df[model.schema.names])
    t2 = clock()
    out = df.assign(predicted_price=np.exp(log_price))
    t3 = clock()
    out.to_csv(scratch / "naive_breakdown.csv", index=False)
    t4 = clock()
    (scratch / "naive_breakdown.csv").unlink()
    stages = {"read": t1 - t0, "predict": t2 - t1, "assign": t3 - t2, "write": t4 - t3}
    return {"rows": len(df), "total_s": t4 - t0, "stages": stages, "threads": threads}


def predict_threads(source: Path) -> dict:
    """The booster alone on one encoded chunk, 1 thread against 2 (best of 2 each)."""
    from homevalue import load_model
    from homevalue.batch import read_chunks
    from homevalue.predict import encode_frame
    from homevalue.schema import validate_frame

    model = load_model()
    frame = next(iter(read_chunks(source, 100_000)))
    matrix = encode_frame(model, validate_frame(model.schema, frame).values)
    seconds = {}
    for threads in (1, 2):
        best = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            model.predict_log(matrix, threads=threads)
            best = min(best, time.perf_counter() - start)
        seconds[str(threads)] = best
    engine = "compiled trees" if model.compiled() is not None else "LightGBM's library"
    return {
        "rows": len(frame),
        "trees": model.booster.num_trees(),
        "engine": engine,
        "seconds_by_threads": seconds,
    }


# --- main ---------------------------------------------------------------------------------


def run_batch(
    scratch: Path, sizes: list[int], threads: list[int], repeats: int, repeats_large: int
) -> tuple[dict, dict[int, Path]]:
    print(f"writing inputs {sizes} to {scratch} ...", file=sys.stderr)
    paths = make_inputs(scratch, sizes)
    print("batch ...", file=sys.stderr)
    return measure_batch(paths, threads, repeats, repeats_large, scratch), paths


def run_benchmarks(args: argparse.Namespace, sizes: list[int], threads: list[int]) -> dict:
    from homevalue import config

    with (
        report.run_record("bench_core.py", LIBRARIES) as core,
        tempfile.TemporaryDirectory(prefix="homevalue-bench-") as folder,
    ):
        print("online ...", file=sys.stderr)
        online = measure_online(args.calls)
        scratch = Path(folder)
        batch, paths = run_batch(scratch, sizes, threads, args.repeats, args.repeats_large)
        chunk = paths[min(sizes, key=lambda n: abs(n - config.BATCH_CHUNK_ROWS))]
        print(f"breakdown on {chunk.name} ...", file=sys.stderr)
        breakdown = {
            "ours": breakdown_ours(chunk, scratch, max(threads)),
            "naive": breakdown_naive(chunk, scratch, max(threads)),
            "predict_threads": predict_threads(chunk),
            "chunk_rows": config.BATCH_CHUNK_ROWS,
        }
    core.update(
        chunk_rows=config.BATCH_CHUNK_ROWS,
        online=online,
        batch=batch,
        breakdown=breakdown,
        targets=report_core.targets(online, batch, config.BATCH_CHUNK_ROWS),
        notes=report_core.notes(batch, breakdown),
    )
    return core


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,300000,1000000", help="batch file sizes in rows")
    parser.add_argument("--threads", default="1,2", help="thread counts, each for ours and naive")
    parser.add_argument("--repeats", type=int, default=5, help="batch runs per method and size")
    parser.add_argument(
        "--repeats-large", type=int, default=2, help=f"the same for files of {LARGE_ROWS:,}+ rows"
    )
    parser.add_argument("--calls", type=int, default=3000, help="timed predict_one calls")
    parser.add_argument(
        "--only", choices=["batch"], help="run only the batch section; print, write nothing"
    )
    report.add_output_options(parser)
    parser.add_argument(
        "--child",
        nargs=4,
        metavar=("METHOD", "SOURCE", "OUT_DIR", "THREADS"),
        help=argparse.SUPPRESS,
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        method, source, out_dir, threads = args.child
        print(json.dumps(CHILDREN[method](Path(source), Path(out_dir), int(threads))))
        return 0
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    threads = sorted({int(t) for t in args.threads.split(",") if t.strip()})
    if args.only == "batch":
        from homevalue import config

        load = load_average()
        with tempfile.TemporaryDirectory(prefix="homevalue-bench-") as folder:
            batch, _ = run_batch(Path(folder), sizes, threads, args.repeats, args.repeats_large)
        print(f"load average at start {load}, at end {load_average()}")
        print(report_core.batch_markdown(batch, config.BATCH_CHUNK_ROWS) + "\n")
        print(report.targets_table(report_core.batch_targets(batch, config.BATCH_CHUNK_ROWS)))
        return 0
    core = run_benchmarks(args, sizes, threads)
    return report.publish("core", core, report_core.markdown(core), args)


if __name__ == "__main__":
    sys.exit(main())
