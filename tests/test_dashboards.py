"""The dashboards' server parts that need no server: frame checks, client budgets, addresses.

The same parts are attacked through a real Voilà server in tests/test_dashboard_security.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from traitlets import TraitError

from homevalue import config
from homevalue.dashboards.app import client_address, log_request
from homevalue.dashboards.channels import MAX_PARTS, FrameError, split_v1_frame
from homevalue.dashboards.kernels import ClientBudget, LimitedKernelManager

parts = st.lists(st.binary(max_size=64), min_size=4, max_size=MAX_PARTS)
channels = st.sampled_from(["shell", "control", "stdin", "iopub"])


@given(channel=channels, message=parts)
def test_every_frame_jupyter_writes_is_read_back_exactly(channel, message):
    frame = serialize_msg_to_ws_v1(message, channel)
    assert split_v1_frame(frame) == (channel, message)
    assert split_v1_frame(frame) == deserialize_msg_from_ws_v1(frame)


@given(st.binary(max_size=512))
def test_any_bytes_are_read_or_refused_at_once(frame):
    began = time.perf_counter()
    with contextlib.suppress(FrameError):
        split_v1_frame(frame)
    assert time.perf_counter() - began < 0.05


@given(count=st.integers(min_value=0, max_value=2**64 - 1), tail=st.binary(max_size=64))
def test_a_forged_offset_count_is_refused_without_reading_it(count, tail):
    """Upstream builds a list of `count` offsets: 2**60 froze the whole server."""
    frame = count.to_bytes(8, "little") + tail
    if not 3 <= count <= MAX_PARTS + 2:
        with pytest.raises(FrameError, match="offsets"):
            split_v1_frame(frame)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("text", "text frame"),
        (b"\x01\x02", "too short"),
        ((5).to_bytes(8, "little"), "shorter than its 5 offsets"),
        ((3).to_bytes(8, "little") + (10**6).to_bytes(8, "little") * 3, "outside the frame"),
    ],
)
def test_malformed_frames_say_what_is_wrong(frame, reason):
    with pytest.raises(FrameError, match=reason):
        split_v1_frame(frame)


def test_a_real_widget_message_passes():
    content = {"comm_id": "c", "data": {"method": "update", "state": {"value": 1800}}}
    message = [json.dumps(part).encode() for part in ({"msg_type": "comm_msg"}, {}, {}, content)]
    channel, read = split_v1_frame(serialize_msg_to_ws_v1(message, "shell"))
    assert channel == "shell" and json.loads(read[3]) == content


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_budget_allows_a_burst_then_one_page_per_interval():
    clock = Clock()
    budget = ClientBudget(per_minute=4, clock=clock)
    assert [budget.take("a") for _ in range(4)] == [0, 0, 0, 0]
    assert budget.take("a") == pytest.approx(15)  # 4 a minute: the next one in 15 s
    assert budget.take("b") == 0  # others have their own
    clock.now += 15
    assert budget.take("a") == 0
    assert budget.take("a") > 0


def test_a_client_budget_remembers_a_bounded_number_of_clients(monkeypatch):
    monkeypatch.setattr("homevalue.dashboards.kernels.CLIENTS_REMEMBERED", 3)
    budget = ClientBudget(per_minute=1, clock=Clock())
    for client in "abcde":
        budget.take(client)
    assert list(budget.buckets) == ["c", "d", "e"]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("198.51.100.7", "", (), "198.51.100.7"),
        ("198.51.100.7", "10.0.0.1", (), "198.51.100.7"),  # an untrusted peer's claim
        ("127.0.0.1", "10.0.0.1", ("127.0.0.1",), "10.0.0.1"),
        ("127.0.0.1", "6.6.6.6, 10.0.0.1", ("127.0.0.1",), "10.0.0.1"),  # only our hop
        ("127.0.0.1", "", ("127.0.0.1",), "127.0.0.1"),
    ],
)
def test_the_client_address_trusts_only_our_own_proxy(peer, forwarded, trusted, client):
    assert client_address(peer, forwarded, trusted) == client


def test_limits_default_from_the_machine_and_read_the_environment(monkeypatch):
    for name in ("HOMEVALUE_MAX_KERNELS", "HOMEVALUE_KERNELS_PER_CLIENT_PER_MINUTE"):
        monkeypatch.delenv(name, raising=False)
    limits = config.dashboard_limits()
    expected = int(config.machine_memory_mb() * 0.75 / config.KERNEL_TYPICAL_MB)
    assert limits.max_kernels == max(4, expected)
    assert limits.kernels_per_client_per_minute == config.KERNELS_PER_CLIENT_PER_MINUTE
    monkeypatch.setenv("HOMEVALUE_MAX_KERNELS", "7")
    monkeypatch.setenv("HOMEVALUE_TRUSTED_PROXIES", "127.0.0.1, ::1")
    limits = config.dashboard_limits()
    assert (limits.max_kernels, limits.trusted_proxies) == (7, ("127.0.0.1", "::1"))


@pytest.mark.parametrize(("memory_mb", "size"), [(2_048, 2), (16_384, 4), (24_105, 6), (65_536, 8)])
def test_the_price_pool_is_sized_from_memory_within_voila_json_bounds(monkeypatch, memory_mb, size):
    """As many typical kernels as fit in 5% of the memory, between voila.json's pool_size
    and pool_max; a pool without pool_max keeps its size."""
    monkeypatch.delenv("HOMEVALUE_POOL_MEMORY_SHARE", raising=False)
    monkeypatch.setattr(config, "machine_memory_mb", lambda: memory_mb)
    pools = json.loads((config.PROJ_ROOT / "voila.json").read_text())
    sized = config.pool_sizes(pools["VoilaKernelManager"]["kernel_pools_config"])
    assert sized["price_a_home.ipynb"]["pool_size"] == size
    assert sized["score_a_batch.ipynb"] == {"pool_size": 1}


@pytest.mark.parametrize(
    ("status", "level"), [(200, "INFO"), (404, "WARNING"), (503, "WARNING"), (500, "ERROR")]
)
def test_the_access_log_masks_a_login_token(caplog, status, level):
    class Handler:
        request = SimpleNamespace(
            method="GET",
            uri="/voila/render/p.ipynb?a=1&token=s3cret&_xsrf=x&b=2",
            remote_ip="127.0.0.1",
            request_time=lambda: 0.01,
        )

        def get_status(self):
            return status

    with caplog.at_level("INFO", logger="tornado.access"):
        log_request(Handler())
    [record] = caplog.records
    assert record.levelname == level
    assert "s3cret" not in record.getMessage()
    assert "?a=1&token=[secret]&_xsrf=[secret]&b=2" in record.getMessage()


@pytest.mark.parametrize("level, debug", [("INFO", False), ("WARN", False), ("DEBUG", True)])
def test_the_servers_debug_calls_stop_at_its_log_level(level, debug):
    """traitlets left the server's logger at DEBUG whatever `--log-level` said, so every
    debug call (one per kernel message of a page being built) made a record to drop."""
    import logging

    from homevalue.dashboards.app import DashboardServer

    server = DashboardServer(log_level=level)
    assert server.log.isEnabledFor(logging.DEBUG) is debug
    assert server.log.isEnabledFor(logging.WARNING)
    server.log.warning("still logged")  # the handler still writes what passes


def test_a_kernel_that_has_not_started_has_no_idle_time_yet():
    """jupyter_server sets `last_activity` once the kernel runs; before, reading it raises."""
    from jupyter_server.services.kernels.kernelmanager import ServerKernelManager

    manager = LimitedKernelManager()
    manager._kernels["starting"] = ServerKernelManager()
    assert manager._seconds_idle("starting") == float("inf")
    assert manager._seconds_idle("gone") == float("inf")


@pytest.mark.parametrize(
    ("connections", "idle_seconds", "state", "culled"),
    [
        (0, 299, "idle", False),  # a gone viewer's kernel, not idle long enough yet
        (0, 301, "idle", True),  # ... and then culled
        (1, 301, "idle", False),  # an open page outlives a gone one's timeout
        (1, 14_399, "idle", False),
        (1, 14_401, "idle", True),  # ... until its own, much longer, limit
        (2, 14_401, "busy", False),  # never while it works
    ],
)
def test_culling_takes_a_gone_viewers_kernel_soon_and_an_open_pages_only_after_hours(
    connections, idle_seconds, state, culled
):
    from jupyter_server._tz import utcnow

    manager = LimitedKernelManager(
        cull_idle_timeout=300, cull_connected=False, connected_idle_timeout=14_400
    )
    manager._kernels["k"] = SimpleNamespace(
        execution_state=state,
        kernel_name="python3",
        kernel_spec=SimpleNamespace(metadata={}),
        last_activity=utcnow() - timedelta(seconds=idle_seconds),
    )
    manager._kernel_connections["k"] = connections
    shut = []

    async def shutdown_kernel(kernel_id, now=False, restart=False):
        shut.append(kernel_id)
        manager._kernels.pop(kernel_id)

    manager.shutdown_kernel = shutdown_kernel
    asyncio.run(manager.cull_kernel_if_idle("k"))
    assert shut == (["k"] if culled else [])


def test_culling_skips_a_kernel_still_starting():
    """A kernel being started (a pool refill) has no last activity yet: upstream's culler
    reads the unset trait and logs a traceback; a starting kernel is not idle."""

    class Starting(SimpleNamespace):
        @property
        def last_activity(self):
            raise TraitError("The 'last_activity' trait expected a datetime, not None.")

    manager = LimitedKernelManager(cull_idle_timeout=300, cull_connected=False)
    manager._kernels["k"] = Starting(execution_state="starting", kernel_name="python3")
    shut = []

    async def shutdown_kernel(kernel_id, now=False, restart=False):
        shut.append(kernel_id)

    manager.shutdown_kernel = shutdown_kernel
    asyncio.run(manager.cull_kernel_if_idle("k"))
    assert shut == []


def test_a_pool_refill_runs_at_low_priority_until_a_viewer_takes_it(monkeypatch, caplog):
    """A refill's imports and notebook (about 2 CPU-s) must not slow the viewers already
    there: it starts at nice REFILL_NICE and is back at 0 once taken from the pool (where
    this user may lower a nice value; otherwise the log says so, once)."""
    import os
    import subprocess
    import sys

    import psutil
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

    from homevalue.dashboards import kernels

    sleepers = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])]
    sleepers.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
    try:
        manager = LimitedKernelManager()

        async def start(self, **kwargs):
            kernel_id = f"k{len(manager._kernels)}"
            pid = sleepers[len(manager._kernels)].pid
            manager._kernels[kernel_id] = SimpleNamespace(provisioner=SimpleNamespace(pid=pid))
            return kernel_id

        monkeypatch.setattr(AsyncMappingKernelManager, "start_kernel", start)
        refill = asyncio.run(manager.start_kernel(env={"VOILA_PREHEAT": "True"}))
        own = asyncio.run(manager.start_kernel(env={}))
        nice = [psutil.Process(p.pid).nice for p in sleepers]
        assert (nice[0](), nice[1]()) == (kernels.REFILL_NICE, 0)  # a viewer's: never lowered
        manager._restore_priority(pooled={refill})  # still waiting in the pool
        assert nice[0]() == kernels.REFILL_NICE
        manager._restore_priority(pooled=set())  # a viewer took it
        if os.geteuid() == 0:
            assert nice[0]() == 0
        else:
            assert "keep nice" in caplog.text
        assert own not in manager._niced and refill not in manager._niced
    finally:
        for sleeper in sleepers:
            sleeper.kill()


def test_a_pool_refill_counts_toward_the_cap_from_when_voila_schedules_it(monkeypatch, tmp_path):
    """Voilà starts a taken pool kernel's replacement only after `fill_delay` (1 s) and its
    notebook's reading: a viewer arriving meanwhile must count it, or they are admitted
    and take a pool kernel over the cap (with forked kernels' quick refills, the 7th of 6
    viewers the cap allowed got a page)."""
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
    from traitlets.config import Configurable
    from voila.voila_kernel_manager import voila_kernel_manager_factory

    from homevalue.dashboards.kernels import KernelLimitReached

    monkeypatch.setenv("HOMEVALUE_MAX_KERNELS", "3")

    class Server(Configurable):  # what Voilà's pool reads of its application
        root_dir, notebook_path = str(tmp_path), None  # no notebooks: no pool at start
        base_url = server_url = "/"
        port = 0

    async def start(self, **kwargs):
        kernel_id = f"k{len(self._kernels)}"
        self._kernels[kernel_id] = SimpleNamespace(provisioner=None)
        return kernel_id

    monkeypatch.setattr(AsyncMappingKernelManager, "start_kernel", start)

    async def scenario() -> None:
        pooled = voila_kernel_manager_factory(LimitedKernelManager, True, 0)
        manager = pooled(parent=Server(), kernel_pools_config={"page.ipynb": {"pool_size": 1}})

        async def initialize(notebook, kernel_id=None, **kwargs):  # Voilà's, less the page
            return {"kernel_id": await manager.start_kernel(**kwargs)}

        manager._initialize = initialize
        manager._kernels.update(viewer=SimpleNamespace(), other=SimpleNamespace())
        manager.fill_if_needed(delay=0.3, notebook_name="page.ipynb")  # a viewer took one
        assert manager.kernel_count() == 3
        with pytest.raises(KernelLimitReached, match="3 kernels running"):
            manager.admit("198.51.100.1")
        [refill] = manager._pools["page.ipynb"]
        assert (await asyncio.wait_for(refill, 5))["kernel_id"] == "k2"  # it had its room
        assert manager.kernel_count() == 3 and not manager._refills_due

    asyncio.run(scenario())


def test_only_the_price_pages_kernels_go_without_pyarrow():
    """pyarrow is a third of a price kernel's memory; the batch page needs it for Parquet."""
    pools = json.loads((config.PROJ_ROOT / "voila.json").read_text())["VoilaKernelManager"][
        "kernel_pools_config"
    ]
    lean = {
        name
        for name, pool in pools.items()
        if pool.get("kernel_env_variables", {}).get("HOMEVALUE_WITHOUT_PYARROW") == "1"
    }
    assert lean == {"price_a_home.ipynb"}


def test_the_price_page_runs_and_prices_without_pyarrow(tmp_path):
    """Every cell of the price notebook, as its kernel runs them, with pyarrow held back."""
    notebook = json.loads((config.PROJ_ROOT / "notebooks" / "price_a_home.ipynb").read_text())
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    script = "\n".join(cells) + (
        "\nimport sys\n"
        "assert sys.modules['pyarrow'] is None, 'pyarrow was imported'\n"
        "assert page.last is not None and page.last.price > 0\n"
        "print('priced without pyarrow:', round(page.last.price))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "HOMEVALUE_WITHOUT_PYARROW": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "priced without pyarrow" in done.stdout
