"""What one price-page kernel costs to start, forked from the zygote and cold (side by side).

For each kernel: the wall time from `start_kernel` to the kernel answering, and to the price
page built in it (the notebook's first cell, `ui.build(ui.PricePage, ...)`: imports and
model loading); the kernel's own CPU-seconds (user + system, from its process accounting:
a fork's count starts at the fork) and its RSS, USS and PSS once the page is built (PSS
shares a page among the processes mapping it, so the zygote's pages shared with its
kernels are counted fairly). The zygote's own start (once per server) is reported apart.
Kernels of the two kinds alternate, so both see the same machine.

Usage: .venv/bin/python tests/benchmarks/bench_kernel_start.py [--kernels 5]
Not a pytest module; prints the medians as a table, then every figure as JSON. Quote the
load average it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time

import measure
import psutil
import report
import report_kernel_start
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory

from homevalue import config
from homevalue.dashboards import forking

MIB = 2**20
BUILD = "from homevalue import ui\npage = ui.build(ui.PricePage, 'Price a home')"
NOTEBOOKS = config.PROJ_ROOT / "notebooks"
# The price page's kernels' own variables, as voila.json gives them to its pool.
PRICE_ENV = json.loads((config.PROJ_ROOT / "voila.json").read_text())["VoilaKernelManager"][
    "kernel_pools_config"
]["price_a_home.ipynb"].get("kernel_env_variables", {})


def kernel_env() -> dict[str, str]:
    return {**os.environ, **PRICE_ENV}


async def one_kernel(forked: bool) -> dict:
    os.environ[config.KERNEL_FORK_ENV] = "1" if forked else "0"
    manager = AsyncKernelManager(kernel_name="python3")
    began = time.perf_counter()
    await manager.start_kernel(env=kernel_env(), cwd=str(NOTEBOOKS))
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=120)
        answered = time.perf_counter()
        reply = await client.execute(BUILD, reply=True, timeout=300)
        built = time.perf_counter()
        assert reply["content"]["status"] == "ok", reply["content"]
        process = psutil.Process(manager.provisioner.pid)
        assert forked == isinstance(manager.provisioner.process, forking.ForkedKernel)
        cpu = process.cpu_times()
        memory = process.memory_full_info()
        return {
            "ready_ms": 1000 * (answered - began),
            "page_built_ms": 1000 * (built - began),
            "cpu_s": cpu.user + cpu.system,
            "rss_mib": memory.rss / MIB,
            "uss_mib": memory.uss / MIB,
            "pss_mib": memory.pss / MIB,
        }
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


def zygote_figures() -> dict:
    zygotes = list(forking.ZYGOTES._by_profile.values())
    out = []
    for zygote in zygotes:
        process = psutil.Process(zygote.pid)
        cpu = process.cpu_times()
        memory = process.memory_full_info()
        out.append(
            {
                "cpu_s": cpu.user + cpu.system,
                "rss_mib": memory.rss / MIB,
                "pss_mib": memory.pss / MIB,
            }
        )
    return out


def summary(runs: list[dict]) -> dict:
    """Median, min and max of each figure over the kernels of one kind."""
    return {key: measure.summary((r[key] for r in runs), (50,)) for key in runs[0]}


async def main(kernels: int) -> dict:
    KernelProvisionerFactory.instance().default_provisioner_name = "homevalue-fork"
    os.environ[config.KERNEL_FORK_ENV] = "1"
    began = time.perf_counter()
    await forking.ZYGOTES.get(
        sys.executable, kernel_env(), str(NOTEBOOKS), logging.getLogger("bench")
    )
    zygote_ready_ms = 1000 * (time.perf_counter() - began)
    runs: dict[str, list[dict]] = {"forked": [], "cold": []}
    for _ in range(kernels):
        for kind in ("forked", "cold"):
            runs[kind].append(await one_kernel(kind == "forked"))
    result = {
        "load_average": report.load_average(),
        "zygote": {"ready_ms": zygote_ready_ms, "after": zygote_figures()},
        **{kind: summary(each) for kind, each in runs.items()},
    }
    forking.ZYGOTES.stop()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", type=int, default=5, help="kernels of each kind")
    args = parser.parse_args()
    result = asyncio.run(main(args.kernels))
    print(f"load average {result['load_average']}\n\n{report_kernel_start.medians(result)}\n")
    print(json.dumps(result, indent=1))
