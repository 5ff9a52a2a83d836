"""What the attacks of issue 10 cost the server now, against upstream Voilà in the same run.

    .venv/bin/python tests/benchmarks/bench_security.py [--gets 20] [--many-gets 100]
                            [--reclaim-wait 130] [--strict] [--no-write] [--docs DIR]

Writes the "security" section of docs/benchmarks.md and .json:
- a hostile kernel-websocket message (the legacy protocol; a v1 frame with a forged offset
  count): the slowest answer of the landing page, asked every 0.1 s for 10 s after it, and
  the server's RSS growth; for `make serve` and for upstream Voilà with the same voila.json
  but its own websocket and kernel classes;
- GETs of the pricing page from one address without a browser: answers, kernels and RSS
  right after and once unclaimed pages are reclaimed (ours: 100 GETs; upstream and ours
  at 20 GETs, like with like: upstream keeps a kernel per GET for the 10-minute cull);
- the time `homevalue batch score` takes to refuse a 200-row, 50,000-column CSV.
Part of `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import report
import report_security
import requests
import websocket
from measure import memory_mib
from report import PROJ_ROOT

sys.path.insert(0, str(PROJ_ROOT / "tests"))
from kernel_channel import KernelChannel  # noqa: E402
from voila_server import VoilaServer, kernel_id, serve  # noqa: E402

PRICE_PAGE = "voila/render/price_a_home.ipynb"
MB = 2**20
WATCH_SECONDS = 10
# The defaults a deployment has (tests/voila_server.py raises the per-client budget).
DEFAULTS = {"HOMEVALUE_KERNELS_PER_CLIENT_PER_MINUTE": "10"}


def total_rss_mb(server: VoilaServer) -> float:
    return memory_mib(server.processes())["rss"]


def watch(server: VoilaServer, seconds: float) -> dict:
    """Ask the landing page every 0.1 s (5 s timeout) and sample the server's RSS."""
    process = server.server_process()
    start = process.memory_info().rss
    slowest, growth, unanswered = 0.0, 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        began = time.monotonic()
        try:
            requests.get(server.url + "voila/tree", timeout=5).raise_for_status()
            slowest = max(slowest, time.monotonic() - began)
        except requests.RequestException:
            unanswered += 1
            slowest = max(slowest, time.monotonic() - began)
        with contextlib.suppress(Exception):
            growth = max(growth, process.memory_info().rss - start)
        time.sleep(0.1)
    return {"slowest_s": round(slowest, 3), "unanswered": unanswered, "rss_growth_mb": growth / MB}


def attack(server: VoilaServer, how: str) -> dict:
    """Send one hostile message to a fresh page's kernel, then watch the server."""
    page = server.get(PRICE_PAGE)
    kernel = kernel_id(page.text)
    with KernelChannel(server.url, kernel) as channel:
        model = channel.model_id("Living area")
    outcome = "accepted"
    try:
        if how == "legacy":
            channel = KernelChannel(server.url, kernel, protocol=None)
            channel.update(model, {"value": 1800})
        else:
            channel = KernelChannel(server.url, kernel, timeout=5)
            channel.send_raw((2**60).to_bytes(8, "little") + bytes(64))
            with contextlib.suppress(websocket.WebSocketTimeoutException):
                for _ in range(100):  # status messages may come first
                    channel.recv()
    except websocket.WebSocketBadStatusException as refused:
        outcome = f"refused ({refused.status_code})"
    except websocket.WebSocketConnectionClosedException:
        outcome = "accepted, then closed by the server"
    seen = watch(server, WATCH_SECONDS)
    return {"message": how, "connection": outcome, **seen}


def gets(server: VoilaServer, count: int, reclaim_wait: float) -> dict:
    """`count` GETs of the pricing page from one address; kernels and RSS after."""
    before = total_rss_mb(server)
    statuses = []
    began = time.monotonic()
    for _ in range(count):
        try:
            statuses.append(server.get(PRICE_PAGE).status_code)
        except requests.RequestException:
            statuses.append(0)
    took = time.monotonic() - began
    after = {"kernels": len(server.kernel_ids()), "rss_mb": total_rss_mb(server)}
    time.sleep(reclaim_wait)
    later = {"kernels": len(server.kernel_ids()), "rss_mb": total_rss_mb(server)}
    return {
        "gets": count,
        "pages": statuses.count(200),
        "busy_503": statuses.count(503),
        "seconds": round(took, 1),
        "rss_before_mb": before,
        "after": after,
        "after_wait": later,
        "wait_s": reclaim_wait,
    }


def wide_csv_refusal() -> dict:
    """Wall time of `homevalue batch score` on 200 rows x 50,000 extra columns (median of 3)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wide.csv"
        header = "Neighborhood,Gr_Liv_Area,Year_Built,Longitude,Latitude," + ",".join(
            f"x{i}" for i in range(50_000)
        )
        row = "North_Ames,1500,1975,-93.62,42.03," + ",".join("1" for _ in range(50_000))
        path.write_text(header + "\n" + "\n".join([row] * 200) + "\n")
        times, result = [], None
        out = Path(folder) / "out"
        homevalue = str(PROJ_ROOT / ".venv/bin/homevalue")
        command = [homevalue, "batch", "score", str(path), "--out", str(out)]
        for _ in range(3):
            began = time.monotonic()
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
            times.append(time.monotonic() - began)
        return {
            "file_mb": path.stat().st_size / MB,
            "exit_code": result.returncode,
            "message": result.stderr.strip()[:160],
            "seconds_median": round(statistics.median(times), 2),
            "outputs_written": out.exists(),
        }


def run(log_dir: Path, args: argparse.Namespace) -> dict:
    results: dict = {"watch_s": WATCH_SECONDS, "attacks": [], "gets": []}
    for name, upstream in [("make serve", False), ("upstream Voilà", True)]:
        for how in ("legacy", "forged v1 frame"):
            # a fresh server each time: an upstream server does not survive the first
            log = log_dir / f"{name}-{how}.log".replace(" ", "_")
            with serve(log, env=DEFAULTS, upstream=upstream) as server:
                results["attacks"].append({"server": name, **attack(server, how)})
        log = log_dir / f"{name}-gets.log".replace(" ", "_")
        with serve(log, env=DEFAULTS, upstream=upstream) as server:
            done = gets(server, args.gets, reclaim_wait=0)
            results["gets"].append({"run": f"{name}, {args.gets} GETs", **done})
    with serve(log_dir / "ours-many.log", env=DEFAULTS) as server:
        done = gets(server, args.many_gets, args.reclaim_wait)
        results["gets"].append({"run": f"make serve, {args.many_gets} GETs", **done})
    results["wide_csv"] = wide_csv_refusal()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gets", type=int, default=20, help="GETs, ours and upstream")
    parser.add_argument("--many-gets", type=int, default=100, help="GETs of ours alone, then")
    parser.add_argument(
        "--reclaim-wait",
        type=float,
        default=130.0,
        help="seconds to wait after them for unclaimed pages to go",
    )
    report.add_output_options(parser)
    args = parser.parse_args(argv)
    with (
        report.run_record(
            "bench_security.py", ["homevalue", "voila", "jupyter_server", "tornado"]
        ) as record,
        tempfile.TemporaryDirectory() as logs,
    ):
        record.update(run(Path(logs), args))
    return report.publish("security", record, report_security.markdown(record), args)


if __name__ == "__main__":
    sys.exit(main())
