"""bench_kernel_start.py's table, from the figures it measured: nothing here measures."""

from __future__ import annotations

import report


def medians(result: dict) -> str:
    """The median of each figure, a row per kind of kernel."""
    rows = [
        {"kernel": kind, **{key: s["p50"] for key, s in result[kind].items()}}
        for kind in ("forked", "cold")
    ]
    return report.table(
        rows,
        {
            "ready_ms": ".0f",
            "page_built_ms": ".0f",
            "cpu_s": ".2f",
            "rss_mib": ".0f",
            "uss_mib": ".0f",
            "pss_mib": ".0f",
        },
    )
