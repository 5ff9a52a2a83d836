"""What the bench scripts share on the measuring side: the houses they price, a call timer,
summaries of samples, and the CPU and memory of a tree of processes."""

from __future__ import annotations

import contextlib
import json
import resource
import time
from collections.abc import Callable, Iterable

import numpy as np
import psutil

MIB = 2**20

# The house the online benchmarks time (bench_core, bench_api), as a form sends it: every
# one of the 16 fields, plain Python values (reference sale 1, North Ames; inside the
# training range, so no flags are raised).
RECORD = {
    "Neighborhood": "North_Ames",
    "Overall_Cond": "Average",
    "Bldg_Type": "OneFam",
    "Central_Air": "Y",
    "Gr_Liv_Area": 1656,
    "Total_Bsmt_SF": 1080,
    "Lot_Area": 31770,
    "Year_Built": 1960,
    "Year_Remod_Add": 1960,
    "Garage_Cars": 2,
    "Full_Bath": 1,
    "Half_Bath": 0,
    "Bedroom_AbvGr": 3,
    "Fireplaces": 2,
    "Longitude": -93.619754,
    "Latitude": 42.054035,
}
# What bench_api sends: the house, as the JSON body of one request to this route.
API_PATH = "/v1/predict"
API_BODY = json.dumps(RECORD).encode()
# The neighbourhoods bench_dashboards' concurrent viewers price, viewer i the (i mod 5)th.
NEIGHBOURHOODS = ["North_Ames", "College_Creek", "Old_Town", "Edwards", "Somerset"]


def time_calls(call: Callable[[], object], calls: int, warmup: int) -> np.ndarray:
    """Seconds taken by each of `calls` calls of `call()`, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    clock = time.perf_counter
    times = np.empty(calls)
    for i in range(calls):
        start = clock()
        call()
        times[i] = clock() - start
    return times


def summary(values: Iterable[float | None], points=(50, 99), unit: str = "") -> dict:
    """n, the percentiles `points`, mean, min and max of the values given (keys end in
    `unit`, e.g. "p50_ms"); `missing` counts the None ones (a timeout, a step that failed)."""
    values = list(values)
    present = np.asarray([v for v in values if v is not None], dtype=float)
    out: dict = {"n": len(present), "missing": len(values) - len(present)}
    for point in points:
        out[f"p{point}{unit}"] = float(np.percentile(present, point)) if len(present) else None
    for name, reduce in (("mean", np.mean), ("min", np.min), ("max", np.max)):
        out[f"{name}{unit}"] = float(reduce(present)) if len(present) else None
    return out


def stats(values: Iterable[float | None]) -> dict:
    """n, median, p95, mean, min, max of the values given (absent without values);
    `missing` counts the None ones: bench_dashboards' summary of a sample."""
    out = summary(values, (50, 95))
    out["median"] = out.pop("p50")
    return {key: value for key, value in out.items() if value is not None}


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (those still running)."""
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(pid)
        return [parent, *parent.children(recursive=True)]
    return []


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    """User + system CPU-seconds so far of the processes."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def memory_mib(processes: Iterable[psutil.Process]) -> dict:
    """RSS, USS and PSS summed over the processes, in MiB (PSS splits shared pages fairly)."""
    total = {"rss": 0.0, "uss": 0.0, "pss": 0.0, "processes": 0}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            info = process.memory_full_info()
            total["rss"] += info.rss / MIB
            total["uss"] += info.uss / MIB
            total["pss"] += getattr(info, "pss", 0) / MIB
            total["processes"] += 1
    return total


def own_cpu_seconds(children: bool = False) -> float:
    """CPU-seconds of this process (and, with `children`, of those it has waited for)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)[: 2 if children else 1]:
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total
