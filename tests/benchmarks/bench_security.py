"""What the attacks of issue 10 cost the server now, against upstream Voilà in the same run.

    .venv/bin/python tests/benchmarks/bench_security.py     (part of `make bench`)

Writes the "security" section of docs/benchmarks.md and .json:
- a hostile kernel-websocket message (the legacy protocol; a v1 frame with a forged offset
  count): the slowest answer of the landing page, asked every 0.1 s for 10 s after it, and
  the server's RSS growth; for `make serve` and for upstream Voilà with the same voila.json
  but its own websocket and kernel classes;
- GETs of the pricing page from one address without a browser: answers, kernels and RSS
  right after and once unclaimed pages are reclaimed (ours: 100 GETs; upstream and ours
  at 20 GETs, like with like: upstream keeps a kernel per GET for the 10-minute cull);
- the time `homevalue batch score` takes to refuse a 200-row, 50,000-column CSV.
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
import websocket
from report import (
    JSON_PATH,
    MD_PATH,
    PROJ_ROOT,
    load_average,
    machine_info,
    machine_sentence,
    write_json,
    write_markdown,
)

sys.path.insert(0, str(PROJ_ROOT / "tests"))
from kernel_channel import KernelChannel  # noqa: E402
from voila_server import VoilaServer, kernel_id, serve  # noqa: E402

SECTION = "security"
MD_START, MD_END = "<!-- security:start -->", "<!-- security:end -->"
PRICE_PAGE = "voila/render/price_a_home.ipynb"
MB = 2**20
WATCH_SECONDS = 10
# The defaults a deployment has (tests/voila_server.py raises the per-client budget).
DEFAULTS = {"HOMEVALUE_KERNELS_PER_CLIENT_PER_MINUTE": "10"}


def total_rss(server: VoilaServer) -> int:
    total = 0
    for process in server.processes():
        with contextlib.suppress(Exception):
            total += process.memory_info().rss
    return total


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
    before = total_rss(server)
    statuses = []
    began = time.monotonic()
    for _ in range(count):
        try:
            statuses.append(server.get(PRICE_PAGE).status_code)
        except requests.RequestException:
            statuses.append(0)
    took = time.monotonic() - began
    after = {"kernels": len(server.kernel_ids()), "rss_mb": total_rss(server) / MB}
    time.sleep(reclaim_wait)
    later = {"kernels": len(server.kernel_ids()), "rss_mb": total_rss(server) / MB}
    return {
        "gets": count,
        "pages": statuses.count(200),
        "busy_503": statuses.count(503),
        "seconds": round(took, 1),
        "rss_before_mb": before / MB,
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
        for _ in range(3):
            began = time.monotonic()
            result = subprocess.run(
                [str(PROJ_ROOT / ".venv/bin/homevalue"), "batch", "score", str(path),
                 "--out", str(Path(folder) / "out")],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            times.append(time.monotonic() - began)
        return {
            "file_mb": path.stat().st_size / MB,
            "exit_code": result.returncode,
            "message": result.stderr.strip()[:160],
            "seconds_median": round(statistics.median(times), 2),
            "outputs_written": (Path(folder) / "out").exists(),
        }


def run(log_dir: Path) -> dict:
    results: dict = {"attacks": [], "gets": {}}
    for name, upstream in [("make serve", False), ("upstream Voilà", True)]:
        for how in ("legacy", "forged v1 frame"):
            # a fresh server each time: an upstream server does not survive the first
            log = log_dir / f"{name}-{how}.log".replace(" ", "_")
            with serve(log, env=DEFAULTS, upstream=upstream) as server:
                results["attacks"].append({"server": name, **attack(server, how)})
        log = log_dir / f"{name}-gets.log".replace(" ", "_")
        with serve(log, env=DEFAULTS, upstream=upstream) as server:
            results["gets"][f"{name}, 20 GETs"] = gets(server, 20, reclaim_wait=0)
    with serve(log_dir / "ours-100.log", env=DEFAULTS) as server:
        results["gets"]["make serve, 100 GETs"] = gets(server, 100, reclaim_wait=130)
    results["wide_csv"] = wide_csv_refusal()
    return results


def markdown(results: dict, machine: dict, load: dict) -> str:
    lines = [
        "## Security (issue 10)",
        "",
        f"`{Path(__file__).relative_to(PROJ_ROOT)}`. {machine_sentence(machine, load)}",
        "",
        "### One hostile kernel-websocket message",
        "",
        f"The landing page asked every 0.1 s for {WATCH_SECONDS} s after the message (5 s "
        "timeout), and the Voilà process's RSS growth.",
        "",
        "| server | message | connection | slowest answer | unanswered | RSS growth |",
        "|---|---|---|---:|---:|---:|",
    ]
    for a in results["attacks"]:
        lines.append(
            f"| {a['server']} | {a['message']} | {a['connection']} | {a['slowest_s']:.2f} s | "
            f"{a['unanswered']} | {a['rss_growth_mb']:.0f} MB |"
        )
    lines += [
        "",
        "### GETs of the pricing page from one address, no browser",
        "",
        "| run | pages | 503 busy | took | kernels after | RSS after | after waiting | "
        "kernels then | RSS then |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, g in results["gets"].items():
        lines.append(
            f"| {name} | {g['pages']} | {g['busy_503']} | {g['seconds']:.0f} s | "
            f"{g['after']['kernels']} | {g['after']['rss_mb']:.0f} MB | {g['wait_s']:.0f} s | "
            f"{g['after_wait']['kernels']} | {g['after_wait']['rss_mb']:.0f} MB |"
        )
    w = results["wide_csv"]
    lines += [
        "",
        "RSS counts make, Voilà and every kernel. Upstream keeps each kernel until the 10-minute",
        "idle cull; `make serve` reclaims a page no browser connected to after 120 s.",
        "",
        "### A wide CSV",
        "",
        f"`homevalue batch score` on 200 rows x 50,000 extra columns ({w['file_mb']:.0f} MB): "
        f"refused in {w['seconds_median']:.2f} s wall (median of 3, Python start-up included), "
        f"exit code {w['exit_code']}, outputs written: {w['outputs_written']}. Message: "
        f"`{w['message']}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    machine = machine_info(["homevalue", "voila", "jupyter_server", "tornado"])
    load = {"start": load_average()}
    with tempfile.TemporaryDirectory() as logs:
        results = run(Path(logs))
    load["end"] = load_average()
    write_json(JSON_PATH, SECTION, {"machine": machine, "load": load, **results})
    write_markdown(MD_PATH, MD_START, MD_END, markdown(results, machine, load))
    print(markdown(results, machine, load))


if __name__ == "__main__":
    main()
