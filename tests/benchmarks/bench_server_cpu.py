"""What the dashboards' server spends per new price-page viewer, from process accounting.

Issue 12 item 7 asks for at most 0.5 CPU-s per new viewer, server side. This measures it
for each server configuration asked for (kernel forking off/on, HOMEVALUE_KERNEL_FORK;
shared compiled templates off/on, `LimitedKernelManager.share_compiled_templates`), with
the servers running side by side and the viewers taking turns between them, so every
configuration sees the same machine. (The server's logger at its log level, app.py, is
on in all of them: it has no switch.)

One viewer: a new chromium context (an empty cache: a first visit) opens the price page,
served from the preheated pool, and waits until it is interactive (the sold houses drawn);
then the server is left until its pool has its kernels again and it is quiet. Between the
server being quiet before and after, the CPU-seconds (user + system, process accounting)
of: the Voilà process (with make's), the zygote (forking on), the kernel the viewer took,
and the new kernels (the pool's refill: its start and its page render), with the refill
kernel's RSS and PSS. Closing the tab (Voilà's shutdown beacon) is counted apart. The
first viewer of each server is a warm-up, not counted: its pool's first kernels started
cold (the zygote was still importing) and its first render filled the template cache.

Only the price notebook is served (the pools of the other pages would only add noise).
The servers listen on ports 9400-9499 (this helper's range on the shared machine).

Usage: .venv/bin/python tests/benchmarks/bench_server_cpu.py [--viewers 4]
       [--fork off,on] [--shared off,on]
Not a pytest module; prints a JSON summary. Quote the load average it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from playwright.sync_api import sync_playwright

PROJ_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJ_ROOT / "tests"))
from browser.screenshots import launch, open_page  # noqa: E402
from voila_server import VoilaServer, serve  # noqa: E402

MIB = 2**20
FIRST_PORT = 9400
POOL = 2  # voila.json's price pool (the servers' TEST_LIMITS keep it from memory sizing)
QUIET_CPU_PERCENT = 3.0  # a settled server: all its processes under this, % of one core
QUIET_SECONDS = 1.5  # ... for this long
SETTLE_TIMEOUT = 180.0
READY_TIMEOUT_MS = 120_000


def kind(process: psutil.Process) -> str:
    """'kernel', 'zygote' or 'voila' (the server itself, and make and its shell)."""
    command = " ".join(process.cmdline())
    if "ipykernel_launcher" in command:
        return "kernel"
    if "homevalue.dashboards.zygote" in command:
        return "zygote"
    return "voila"


def account(server: VoilaServer) -> dict[tuple[int, float], tuple[str, float]]:
    """Each process of the server: its kind and its own CPU-seconds so far (not its reaped
    children's: a kernel that exits in the window is not counted twice)."""
    out = {}
    for process in server.processes():
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            out[(process.pid, process.create_time())] = (kind(process), times.user + times.system)
    return out


def spent(before: dict, after: dict) -> dict[str, float]:
    """CPU-seconds between two accounts, by kind; kernels split into the ones already
    there (the pool kernel the viewer took) and new ones (the refill)."""
    out = {"voila_s": 0.0, "zygote_s": 0.0, "taken_kernel_s": 0.0, "new_kernels_s": 0.0}
    for key, (what, seconds) in after.items():
        if what == "kernel":
            name = "taken_kernel_s" if key in before else "new_kernels_s"
        else:
            name = f"{what}_s"
        out[name] += seconds - before.get(key, (what, 0.0))[1]
    out["kernels_s"] = out["taken_kernel_s"] + out["new_kernels_s"]
    out["server_s"] = out["voila_s"] + out["zygote_s"]
    out["total_s"] = out["server_s"] + out["kernels_s"]
    return out


def kernels(server: VoilaServer) -> list[psutil.Process]:
    found = []
    for process in server.processes():
        with contextlib.suppress(psutil.Error):
            if kind(process) == "kernel":
                found.append(process)
    return found


def runnable(server: VoilaServer) -> bool:
    """Whether any of the server's processes is running or waiting for a core: a pool
    refill at nice 10 on a busy machine may wait long enough to look quiet otherwise."""
    for process in server.processes():
        with contextlib.suppress(psutil.Error):
            if process.status() == psutil.STATUS_RUNNING:
                return True
    return False


def settle(server: VoilaServer, kernel_count: int) -> float:
    """Wait until the server runs `kernel_count` kernels and has been quiet for
    QUIET_SECONDS; the seconds it took."""
    began = time.monotonic()
    quiet_since = None
    last = account(server)
    while time.monotonic() - began < SETTLE_TIMEOUT:
        time.sleep(0.25)
        now = account(server)
        used = sum(s for _k, s in now.values()) - sum(last.get(key, (None, 0.0))[1] for key in now)
        last = now
        quiet = (
            used / 0.25 * 100 < QUIET_CPU_PERCENT
            and not runnable(server)
            and len(kernels(server)) == kernel_count
        )
        if not quiet:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_SECONDS:
            return time.monotonic() - began
    raise TimeoutError(
        f"server on {server.port} did not settle with {kernel_count} kernels "
        f"in {SETTLE_TIMEOUT:g} s (it runs {len(kernels(server))})"
    )


def one_viewer(browser, server: VoilaServer) -> dict:
    settle(server, POOL)
    before = account(server)
    pool_pids = {p.pid for p in kernels(server)}
    context = browser.new_context()
    try:
        page = context.new_page()
        began = time.perf_counter()
        open_page(page, server.url, "price_a_home")
        page.wait_for_selector(".hv-map.hv-sales-shown", state="attached", timeout=READY_TIMEOUT_MS)
        ready_s = time.perf_counter() - began
        settle(server, POOL + 1)
        after = account(server)
        refill = [p for p in kernels(server) if p.pid not in pool_pids]
        memory = refill[0].memory_full_info() if refill else None
        page.close(run_before_unload=True)  # Voilà's shutdown beacon
    finally:
        context.close()
    settle(server, POOL)
    closed = account(server)
    return {
        "ready_s": ready_s,
        **spent(before, after),
        "close_server_s": spent(after, closed)["server_s"],
        "refill_rss_mib": memory.rss / MIB if memory else None,
        "refill_pss_mib": memory.pss / MIB if memory else None,
    }


def summary(runs: list[dict]) -> dict:
    return {
        key: {
            "median": statistics.median(r[key] for r in runs),
            "min": min(r[key] for r in runs),
            "max": max(r[key] for r in runs),
        }
        for key in runs[0]
        if all(r[key] is not None for r in runs)
    }


def main(viewers: int, forks: list[str], shared: list[str]) -> dict:
    configurations = [(f, s) for f in forks for s in shared]
    notebooks = Path(tempfile.mkdtemp(prefix="bench-server-cpu-"))
    shutil.copy(PROJ_ROOT / "notebooks" / "price_a_home.ipynb", notebooks)
    runs: dict[str, list[dict]] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, notebooks, ignore_errors=True)
        servers = {}
        for port, (fork, share) in enumerate(configurations, FIRST_PORT):
            name = f"fork {fork}, shared templates {share}"
            args = "" if share == "on" else "--LimitedKernelManager.share_compiled_templates=False"
            env = {"HOMEVALUE_KERNEL_FORK": "1" if fork == "on" else "0"}
            log = notebooks / f"server-{port}.log"
            servers[name] = stack.enter_context(serve(log, notebooks, env, args, port=port))
            settle(servers[name], POOL)
            runs[name] = []
        playwright = stack.enter_context(sync_playwright())
        browser = launch(playwright)
        stack.callback(browser.close)
        load = [os.getloadavg()]
        for server in servers.values():  # warm-up
            one_viewer(browser, server)
        names = list(servers)
        for turn in range(viewers):
            for name in names[turn % len(names) :] + names[: turn % len(names)]:
                runs[name].append(one_viewer(browser, servers[name]))
                print(name, json.dumps(runs[name][-1]), file=sys.stderr)
            load.append(os.getloadavg())
    return {
        "load_average": {"start": load[0], "end": load[-1], "each_turn": load[1:]},
        **{name: summary(each) for name, each in runs.items()},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", type=int, default=4, help="viewers per configuration")
    parser.add_argument("--fork", default="off,on", help="kernel forking: off, on or off,on")
    parser.add_argument("--shared", default="off,on", help="shared templates: off, on or both")
    args = parser.parse_args()
    print(json.dumps(main(args.viewers, args.fork.split(","), args.shared.split(",")), indent=1))
