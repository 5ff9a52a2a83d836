"""An edited notebook reaches the next viewer: the preheated pool follows the file
(homevalue.dashboards.pool_refresh).

The server test runs `make serve` on a folder with one page that has a pool of one
(`model_report.ipynb` in voila.json), edits it once the pool is warm, and asks for it.
The unit tests drive the pool logic with stand-in tasks, down to a refill caught mid-start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from voila_server import kernel_id, serve, visible_text, write_notebook

from homevalue.dashboards.pool_refresh import PoolRefresh, PoolRefreshKernelManager

POOLED = "model_report.ipynb"  # pool_size 1 in voila.json
SETTLE_TIMEOUT = 120


class Pools(PoolRefresh):
    """Voilà's pool as the mixin sees it: `_pools` of tasks, refilled by fill_if_needed,
    which LimitedKernelManager's wrapper follows with `_after_fill()`."""

    def __init__(self, root: Path):
        self.root_dir = str(root)
        self._pools: dict[str, list] = {POOLED: []}
        self.log = logging.getLogger("test_pool_refresh")
        self.stopped: list[str] = []

    def fill_if_needed(self, delay=None, notebook_name=None, **kwargs):
        loop = asyncio.get_running_loop()
        pool = self._pools[notebook_name]
        while len(pool) < 1:
            pool.append(loop.create_future())
        self._after_fill()

    async def shutdown_kernel(self, kernel_id, now=False):
        self.stopped.append(kernel_id)


def started(future: asyncio.Future, kernel: str) -> None:
    """What a pool task resolves to once its kernel runs the page (voila_kernel_manager)."""
    page = asyncio.get_running_loop().create_future()
    page.set_result(None)
    future.set_result({"kernel_id": kernel, "task": page, "renderer": None})


def test_an_edit_replaces_ready_and_starting_pool_kernels(tmp_path):
    notebook = write_notebook(tmp_path / POOLED, ["print(1)"])

    async def scenario() -> Pools:
        pools = Pools(tmp_path)
        pools.fill_if_needed(notebook_name=POOLED)
        ready = pools._pools[POOLED][0]
        started(ready, "k-ready")
        assert pools.refresh_edited_pools() == 0  # unchanged: nothing to do
        write_notebook(notebook, ["print(1)", "print(2)"])
        assert pools.refresh_edited_pools(POOLED) == 1
        starting = pools._pools[POOLED][0]
        assert starting is not ready  # a refill from the new file
        assert pools.refresh_edited_pools() == 0  # the refill was stamped with the new file
        write_notebook(notebook, ["print(1)", "print(2)", "print(3)"])
        assert pools.refresh_edited_pools() == 1  # caught while it starts: dropped too
        started(starting, "k-starting")  # ... and shut down once it has started
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return pools

    pools = asyncio.run(scenario())
    assert pools.stopped == ["k-ready", "k-starting"]
    assert len(pools._pools[POOLED]) == 1


def test_a_removed_notebooks_pool_is_emptied_and_not_refilled(tmp_path):
    notebook = write_notebook(tmp_path / POOLED, ["print(1)"])

    async def scenario() -> Pools:
        pools = Pools(tmp_path)
        pools.fill_if_needed(notebook_name=POOLED)
        started(pools._pools[POOLED][0], "k-1")
        notebook.unlink()
        assert pools.refresh_edited_pools() == 1
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return pools

    pools = asyncio.run(scenario())
    assert pools._pools[POOLED] == [] and pools.stopped == ["k-1"]


def test_the_dashboards_use_the_refreshing_manager():
    settings = json.loads((Path(__file__).parents[1] / "voila.json").read_text())
    name = settings["VoilaConfiguration"]["multi_kernel_manager_class"]
    assert name == f"{PoolRefreshKernelManager.__module__}.{PoolRefreshKernelManager.__name__}"


# --- the server ------------------------------------------------------------------------


def pool_ready(server, gone: set[str] = frozenset()) -> set[str]:
    """Wait until the pool holds a ready kernel, nothing starts and the kernels `gone` have
    gone; the kernels running then."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(server.get("metrics").text)
            for s in family.samples
        }
        ready = samples.get(
            ("homevalue_dashboards_pool_kernels", (("notebook", POOLED), ("state", "ready"))), 0
        )
        starting = samples.get(("homevalue_dashboards_kernels_starting", ()), 0)
        kernels = set(server.kernel_ids())
        if ready == 1 and starting == 0 and not kernels & gone:
            return kernels
        assert time.monotonic() < deadline, f"pool not ready\n{server.log()[-2000:]}"
        time.sleep(0.5)


@pytest.fixture
def served_page(tmp_path):
    notebooks = tmp_path / "notebooks"
    write_notebook(notebooks / POOLED, ["print('the first version')"])
    with serve(tmp_path / "server.log", notebooks=notebooks) as server:
        yield server, notebooks / POOLED


def test_the_next_visit_after_an_edit_shows_the_new_cell(served_page):
    server, notebook = served_page
    old = pool_ready(server)
    assert len(old) == 1  # the pool's kernel, which ran the first version
    write_notebook(notebook, ["print('the first version')", "print('a cell just added')"])
    page = server.get(f"voila/render/{POOLED}").text
    assert "a cell just added" in visible_text(page)
    assert kernel_id(page) not in old
    # The old page's kernel is shut down; the pool is warm again, with the new page.
    fresh = pool_ready(server, gone=old)
    again = server.get(f"voila/render/{POOLED}").text
    assert "a cell just added" in visible_text(again)
    assert kernel_id(again) in fresh  # served from the pool, preheated after the edit
    log = server.log()
    assert f"{POOLED} changed: replacing 1 preheated kernel(s)" in log
    assert f"Using pre-heated kernel: {kernel_id(again)}" in log
