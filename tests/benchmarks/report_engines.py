"""bench_engines.py's table (pasted into docs/engines.md), from the figures it measured:
nothing here measures."""

from __future__ import annotations

import report

GAP = "max \\|Δ log\\| vs LightGBM"  # pipes escaped: they would split the cell


def table(found: dict) -> str:
    """A row per engine: compile time, rows/s at each thread count, one row's p50 and the
    largest difference from LightGBM's prices."""
    rows = []
    for e in found["engines"]:
        built = (
            "none"
            if e["compile_wall_s"] is None
            else f"{e['compile_wall_s']:.1f} / {e['compile_cpu_s']:.1f}"
        )
        rows.append(
            {
                "engine": e["engine"],
                "compile (wall / CPU s)": built,
                **{f"rows/s, {t} thr": e["rows_per_s"][str(t)] for t in found["threads"]},
                "one row p50 (µs)": "; ".join(
                    f"{v:.1f} ({k})" for k, v in e["one_row_p50_us"].items()
                ),
                GAP: e["max_abs_log_difference"],
            }
        )
    thousands = "{:,.0f}k".format
    formats = {f"rows/s, {t} thr": lambda v: thousands(v / 1e3) for t in found["threads"]}
    return report.table(rows, {**formats, GAP: ".1e"})
