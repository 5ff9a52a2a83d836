"""The "security" section of docs/benchmarks.md, from bench_security.py's record: its tables
and prose. Nothing here measures: the same function renders a fresh record and one read back
from docs/benchmarks.json."""

from __future__ import annotations

import report


def markdown(record: dict) -> str:
    attacks = [
        {
            "server": a["server"],
            "message": a["message"],
            "connection": a["connection"],
            "slowest answer": a["slowest_s"],
            "unanswered": a["unanswered"],
            "RSS growth": a["rss_growth_mb"],
        }
        for a in record["attacks"]
    ]
    gets = [
        {
            "run": g["run"],
            "pages": g["pages"],
            "503 busy": g["busy_503"],
            "took": g["seconds"],
            "kernels after": g["after"]["kernels"],
            "RSS after": g["after"]["rss_mb"],
            "after waiting": g["wait_s"],
            "kernels then": g["after_wait"]["kernels"],
            "RSS then": g["after_wait"]["rss_mb"],
        }
        for g in record["gets"]
    ]
    seconds, mb = "{:.0f} s".format, "{:.0f} MB".format
    w = record["wide_csv"]
    return report.join(
        report.heading("Security (issue 10)", record),
        "### One hostile kernel-websocket message",
        f"The landing page asked every 0.1 s for {record['watch_s']:g} s after the message (5 s "
        "timeout), and the Voilà process's RSS growth.",
        report.table(attacks, {"slowest answer": "{:.2f} s".format, "RSS growth": mb}),
        "### GETs of the pricing page from one address, no browser",
        report.table(
            gets, {"took": seconds, "RSS after": mb, "after waiting": seconds, "RSS then": mb}
        ),
        "RSS counts make, Voilà and every kernel. Upstream keeps each kernel until the 10-minute\n"
        "idle cull; `make serve` reclaims a page no browser connected to after 120 s.",
        "### A wide CSV",
        f"`homevalue batch score` on 200 rows x 50,000 extra columns ({w['file_mb']:.0f} MB): "
        f"refused in {w['seconds_median']:.2f} s wall (median of 3, Python start-up included), "
        f"exit code {w['exit_code']}, outputs written: {w['outputs_written']}. Message: "
        f"`{w['message']}`",
    )


def upgrade(record: dict) -> dict:
    """A record stored before bench_security used `report.run_record` (its load average as
    "load", its GETs keyed by run, no time, duration or watch window kept), in the current
    shape: the same figures; the time and duration stay unknown."""
    if "load_average" in record:
        return record
    old = dict(record)
    gets = old.pop("gets")
    return {
        "command": ".venv/bin/python tests/benchmarks/bench_security.py",
        "load_average": old.pop("load"),
        "watch_s": 10,  # bench_security's WATCH_SECONDS when those records were taken
        **old,
        "gets": [{"run": run, **each} for run, each in gets.items()],
    }
