"""Kernels forked from the zygote (homevalue.dashboards.forking and .zygote), without Voilà.

Each test starts real kernels through jupyter_client's AsyncKernelManager with the
"homevalue-fork" provisioner (the entry point voila.json names), and checks what the
dashboards rely on: the kernel runs in its environment and folder, shows a kernel's command
line, is interrupted, restarted, killed and shut down through its pid, survives its zygote,
exits with the server, and starts cold (logged) whenever forking cannot serve it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory

from homevalue import config
from homevalue.dashboards import forking

# What these tests fork from: ipykernel alone keeps the zygote quick to start; one test
# checks the dashboards' own preload.
LIGHT_PRELOAD = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipywidgets")
DASHBOARD_PRELOAD = config.ZYGOTE_PRELOAD
WAIT = 60


@pytest.fixture(autouse=True)
def forking_provisioner(monkeypatch):
    factory = KernelProvisionerFactory.instance()
    monkeypatch.setattr(factory, "default_provisioner_name", "homevalue-fork")
    monkeypatch.setattr(config, "ZYGOTE_PRELOAD", LIGHT_PRELOAD)
    monkeypatch.setenv(config.KERNEL_FORK_ENV, "1")
    yield
    forking.ZYGOTES.stop()


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 4 * WAIT))


async def started(env: dict | None = None, cwd: Path | None = None) -> AsyncKernelManager:
    """A kernel, once this environment's zygote is ready (a kernel asked for while it
    imports starts cold: test_a_kernel_asked_for_while_the_zygote_imports_starts_cold)."""
    env = {**os.environ, **(env or {})}
    cwd = str(cwd or os.getcwd())
    with contextlib.suppress(forking.ZygoteUnavailable):
        await forking.ZYGOTES.get(sys.executable, env, cwd, logging.getLogger("test"))
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel(env=env, cwd=cwd)
    return manager


def test_a_kernel_asked_for_while_the_zygote_imports_starts_cold():
    """Voilà's pool counts only once its first kernel has started: the first kernels do not
    wait for the zygote's imports (the server's first viewers would get kernels outside
    the pool); once it is ready, kernels fork."""

    async def check():
        first = AsyncKernelManager(kernel_name="python3")
        await first.start_kernel(env=dict(os.environ))
        try:
            assert isinstance(first.provisioner.process, subprocess.Popen)
            second = await started()
            try:
                zygote_of(second)
            finally:
                await second.shutdown_kernel(now=True)
        finally:
            await first.shutdown_kernel(now=True)

    run(check())


async def evaluate(manager: AsyncKernelManager, expression: str, code: str = "") -> object:
    """The value of a Python expression in the kernel (it must be JSON)."""
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=WAIT)
        reply = await client.execute(
            code,
            reply=True,
            timeout=WAIT,
            user_expressions={"x": f"__import__('json').dumps({expression})"},
        )
    finally:
        client.stop_channels()
    value = reply["content"]["user_expressions"]["x"]
    assert value["status"] == "ok", value
    return json.loads(eval(value["data"]["text/plain"]))  # a str's repr


def zygote_of(manager: AsyncKernelManager) -> forking.Zygote:
    process = manager.provisioner.process
    assert isinstance(process, forking.ForkedKernel), "the kernel was not forked"
    return process.zygote


def gone(pid: int, timeout: float = WAIT) -> bool:
    """Whether the process exits within `timeout` (a zombie waiting for its reaper has)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_forked_kernel_runs_in_its_own_environment_folder_and_session(tmp_path):
    async def check():
        manager = await started({"VOILA_REQUEST_URL": "http://x/price?a=1"}, tmp_path)
        try:
            zygote = zygote_of(manager)
            pid = manager.provisioner.pid
            seen = await evaluate(
                manager,
                "[os.getpid(), os.getppid(), os.getcwd(), os.environ['VOILA_REQUEST_URL'], "
                "os.getsid(0), 'ipywidgets' in sys.modules, "
                "IPKernelApp.instance().parent_handle]",
                "import os, sys\nfrom ipykernel.kernelapp import IPKernelApp",
            )
            assert seen == [
                pid,
                zygote.pid,
                str(tmp_path),
                "http://x/price?a=1",
                pid,
                True,
                os.getpid(),
            ]
            # a kernel's command line, connection file included (ps, the tests, the bench)
            command = psutil.Process(pid).cmdline()
            assert command[1:3] == ["-m", "ipykernel_launcher"]
            assert manager.connection_file in command
        finally:
            await manager.shutdown_kernel(now=True)
        assert gone(pid)
        assert zygote.alive, "the zygote outlives its kernels"

    run(check())


def test_two_kernels_share_one_zygote_and_each_has_its_own_random_state():
    async def check():
        first, second = await started(), await started()
        try:
            assert zygote_of(first) is zygote_of(second)
            draw = "[random.random(), float(numpy.random.random())]"
            code = "import random, numpy"
            assert await evaluate(first, draw, code) != await evaluate(second, draw, code)
        finally:
            await asyncio.gather(first.shutdown_kernel(now=True), second.shutdown_kernel(now=True))

    run(check())


def test_an_interrupt_stops_a_running_cell():
    async def check():
        manager = await started()
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=WAIT)
            msg_id = client.execute("import time; time.sleep(60)")
            await asyncio.sleep(1.0)
            began = time.monotonic()
            await manager.interrupt_kernel()
            reply = await client.get_shell_msg(timeout=WAIT)
            assert reply["parent_header"]["msg_id"] == msg_id
            assert reply["content"]["ename"] == "KeyboardInterrupt"
            assert time.monotonic() - began < 10
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)

    run(check())


def test_a_restart_forks_a_new_kernel_and_a_killed_kernel_reports_its_signal():
    async def check():
        manager = await started()
        try:
            before = manager.provisioner.pid
            process = manager.provisioner.process
            await manager.restart_kernel(now=True)
            after = manager.provisioner.pid
            assert after != before and gone(before)
            assert process.returncode == -signal.SIGKILL  # reported by the zygote
            assert await evaluate(manager, "1 + 1") == 2
            zygote_of(manager)
        finally:
            await manager.shutdown_kernel(now=True)

    run(check())


def test_a_shutdown_request_ends_the_kernel_cleanly():
    async def check():
        manager = await started()
        process = manager.provisioner.process
        assert await evaluate(manager, "'ready'") == "ready"
        await manager.shutdown_kernel()  # asks the kernel, as Voilà and the culler do
        assert process.returncode == 0
        assert not await manager.is_alive()

    run(check())


def test_kernels_survive_their_zygotes_death_and_the_next_kernel_gets_a_new_zygote(
    monkeypatch, caplog
):
    monkeypatch.setattr(config, "ZYGOTE_RETRY_SECONDS", 0.0)

    async def check():
        first = await started()
        try:
            old = zygote_of(first)
            os.kill(old.pid, signal.SIGKILL)
            assert gone(old.pid)
            for _ in range(100):
                if not old.alive:
                    break
                await asyncio.sleep(0.05)
            assert not old.alive
            assert await first.is_alive()
            assert await evaluate(first, "2 * 21") == 42
            with caplog.at_level(logging.WARNING):
                second = await started()
            try:
                assert zygote_of(second).pid != old.pid
                assert "fork server" in caplog.text and "starting a new one" in caplog.text
            finally:
                await second.shutdown_kernel(now=True)
            # the kernel of the dead zygote is still managed: interrupt and shutdown work
            pid = first.provisioner.pid
        finally:
            await first.shutdown_kernel(now=True)
        assert gone(pid)

    run(check())


def test_a_zygote_that_fails_leaves_kernels_to_start_cold_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(config, "ZYGOTE_PRELOAD", ("homevalue_no_such_module",))

    async def check():
        with caplog.at_level(logging.WARNING):
            manager = await started()
        try:
            assert not isinstance(manager.provisioner.process, forking.ForkedKernel)
            assert "starts cold" in caplog.text and "fork server" in caplog.text
            assert await evaluate(manager, "3 * 3") == 9
        finally:
            await manager.shutdown_kernel(now=True)

    run(check())


@pytest.mark.parametrize("setting", ["0", None])
def test_forking_can_be_turned_off_and_is_off_by_default(monkeypatch, setting):
    if setting is None:
        monkeypatch.delenv(config.KERNEL_FORK_ENV)
    else:
        monkeypatch.setenv(config.KERNEL_FORK_ENV, setting)

    async def check():
        manager = await started()
        try:
            assert isinstance(manager.provisioner.process, subprocess.Popen)
        finally:
            await manager.shutdown_kernel(now=True)

    run(check())


def test_a_zygote_reports_a_thread_a_fork_would_lose():
    """A thread (a library's pool) does not exist in a fork: the zygote reports it, and the
    server then starts kernels cold."""
    script = textwrap.dedent(
        """
        import json, threading, time
        from homevalue.dashboards.zygote import fork_hazards
        before = fork_hazards()
        threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
        print(json.dumps([before, fork_hazards()]))
        """
    )
    env = {**os.environ, **config.ZYGOTE_ENV_DEFAULTS}  # as the zygote has it
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    before, after = json.loads(out.stdout)
    assert before == [] and len(after) == 1 and "2 threads" in after[0]


def test_a_zygote_with_a_thread_pool_is_refused_for_good(monkeypatch, caplog):
    monkeypatch.setattr(config, "ZYGOTE_ENV_DEFAULTS", {"OPENBLAS_NUM_THREADS": "2"})
    monkeypatch.setattr(config, "ZYGOTE_PRELOAD", ("numpy", *LIGHT_PRELOAD))
    monkeypatch.setattr(config, "ZYGOTE_RETRY_SECONDS", 0.0)

    async def check():
        with caplog.at_level(logging.WARNING):
            first = await started()
            second = await started()
        try:
            for manager in (first, second):
                assert isinstance(manager.provisioner.process, subprocess.Popen)
            assert re.search(r"a fork would lose \d+ threads", caplog.text)
            assert "the fork server was refused" in caplog.text  # the second: not retried
            (zygote,) = forking.ZYGOTES._by_profile.values()
            assert zygote.refused
        finally:
            await asyncio.gather(first.shutdown_kernel(now=True), second.shutdown_kernel(now=True))

    run(check())


@pytest.mark.parametrize("without_pyarrow", ["1", ""])
def test_the_dashboards_preload_leaves_nothing_a_fork_would_lose(without_pyarrow):
    """What the zygote imports for the price page's kernels (without pyarrow) and for the
    others (with it), in its environment: no thread pool (OpenBLAS, Arrow's jemalloc),
    no zmq context, no event loop."""
    script = textwrap.dedent(
        f"""
        import json
        from homevalue.dashboards.zygote import fork_hazards, preload
        preload({list(DASHBOARD_PRELOAD)!r})
        print(json.dumps(fork_hazards()))
        """
    )
    env = {**os.environ, **config.ZYGOTE_ENV_DEFAULTS, "HOMEVALUE_WITHOUT_PYARROW": without_pyarrow}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
    )
    assert json.loads(out.stdout) == []


SERVER = """
import asyncio, logging, os, sys, time
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory
from homevalue import config
from homevalue.dashboards import forking
KernelProvisionerFactory.instance().default_provisioner_name = "homevalue-fork"
os.environ[config.KERNEL_FORK_ENV] = "1"
config.ZYGOTE_PRELOAD = {preload!r}

async def main():
    await forking.ZYGOTES.get(sys.executable, dict(os.environ), os.getcwd(), logging.getLogger())
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel()
    process = manager.provisioner.process
    print(process.pid, process.zygote.pid, flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


def test_the_zygote_and_its_kernels_exit_with_the_server():
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(preload=LIGHT_PRELOAD)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        kernel, zygote = map(int, server.stdout.readline().split())
        assert psutil.Process(kernel).ppid() == zygote
        server.kill()  # as a crash would: no shutdown of anything
        server.wait()
        assert gone(zygote, 20) and gone(kernel, 20)
    finally:
        server.kill()
        server.wait()
