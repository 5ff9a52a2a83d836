"""Start the dashboards' kernels as forks of a warm interpreter (homevalue.dashboards.zygote).

`ForkingProvisioner` is jupyter_client's LocalProvisioner with one change: where it would
run `python -m ipykernel_launcher -f <connection file>`, it asks this server's zygote for
a fork that runs the same kernel. Everything else (the connection file, the ports, the
restarter, interrupts, shutdown, the culler, the memory watch in kernels.py) sees the
kernel's pid and process group as before: signals go through a pidfd (the kernel is the
zygote's child, not ours), and the zygote reports each kernel's exit status.

A kernel is started cold, as upstream does, when forking is off (HOMEVALUE_KERNEL_FORK, off
by default) or cannot serve it: its zygote is still importing (the pools' first kernels,
at start: logged as info), or, with a warning, a command other than ipykernel_launcher's,
a zygote that failed to start, reported a fork hazard (not retried) or died (a new one is
started after ZYGOTE_RETRY_SECONDS). A kernel's environment decides its zygote: kernels whose
environments differ beyond Voilà's per-kernel variables (VOILA_*, JPY_*) import under
different settings (thread counts, HOMEVALUE_* switches), so they get different zygotes.

Selected for every kernel in voila.json (`KernelProvisionerFactory.default_provisioner_name
= "homevalue-fork"`, registered under jupyter_client.kernel_provisioners in pyproject).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections import OrderedDict
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from homevalue import config
from homevalue.dashboards import zygote as zygote_process

PER_KERNEL_PREFIXES = ("VOILA_", "JPY_")
EXITS_REMEMBERED = 10_000  # exit statuses not yet read (a kernel nobody polls again)
UNKNOWN_EXIT = -1  # the zygote died before it could report how a kernel ended


class ZygoteUnavailable(Exception):
    """This kernel cannot be forked; the reason goes to the log and the kernel starts cold."""


class ZygoteStarting(ZygoteUnavailable):
    """The zygote is still importing: this kernel starts cold rather than wait for it.

    Voilà counts a preheated pool as present only once its first kernel has started, so a
    first kernel held for the zygote's imports would send the server's first viewers to
    kernels outside the pool (without the pool's environment)."""


def import_profile(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The part of a kernel's environment its imports may read: all but Voilà's per-kernel
    variables, which differ for every kernel and are set in the fork."""
    return tuple(sorted((k, v) for k, v in env.items() if not k.startswith(PER_KERNEL_PREFIXES)))


def kernel_args(cmd: list[str]) -> list[str] | None:
    """The arguments after `python -m ipykernel_launcher`, or None for another command."""
    if len(cmd) >= 3 and cmd[1:3] == ["-m", zygote_process.KERNEL_MODULE]:
        return cmd[3:]
    return None


class Zygote:
    """The server's end of one zygote process: its control socket, read by a thread (so any
    event loop, or none, may ask for a fork), the forks asked for, the exits reported."""

    def __init__(self, python: str, env: dict[str, str], cwd: str, modules: tuple[str, ...]):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        room = " " * zygote_process.ARGV_ROOM
        command = [python, "-m", zygote_process.__name__, str(theirs.fileno()), *modules]
        try:
            self.process = subprocess.Popen(
                [*command, "--", room],
                pass_fds=[theirs.fileno()],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # the server's Ctrl-C is not the zygote's
            )
        except OSError as error:
            ours.close()
            raise ZygoteUnavailable(f"the fork server did not start: {error}") from error
        finally:
            theirs.close()
        self.pid = self.process.pid
        self.sock = ours
        self.ready: concurrent.futures.Future = concurrent.futures.Future()
        self.failed: str | None = None
        self.refused = False  # failed for good: its imports are not safe to fork
        self.failed_at = 0.0
        self._lock = threading.Lock()
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._exits: OrderedDict[int, int] = OrderedDict()
        self._next_id = 0
        threading.Thread(target=self._read, name=f"zygote-{self.pid}", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.failed is None

    async def wait_ready(self, timeout: float) -> None:
        try:
            ready = await asyncio.wait_for(asyncio.wrap_future(self.ready), timeout)
        except TimeoutError:
            self.fail(f"it was not ready after {timeout:g} s")
        except ZygoteUnavailable:
            pass
        else:
            if ready["hazards"]:  # the same imports would bring them again: not retried
                self.refused = True
                self.fail("a fork would lose " + ", ".join(ready["hazards"]))
        if self.failed:
            raise ZygoteUnavailable(f"the fork server (pid {self.pid}) failed: {self.failed}")

    async def fork(self, python: str, args: list[str], env: dict, cwd: str, timeout: float):
        """A new kernel: (pid, pidfd)."""
        answer: concurrent.futures.Future = concurrent.futures.Future()
        request = {"python": python, "args": args, "env": env, "cwd": cwd}
        with self._lock:
            if self.failed:
                raise ZygoteUnavailable(f"the fork server failed: {self.failed}")
            self._next_id += 1
            request["id"] = self._next_id
            self._pending[self._next_id] = answer
            try:
                self.sock.send(json.dumps(request).encode())
            except OSError as error:
                del self._pending[self._next_id]
                message = f"the fork server did not take a request: {error}"
                raise ZygoteUnavailable(message) from error
        try:
            return await asyncio.wait_for(asyncio.wrap_future(answer), timeout)
        except TimeoutError:
            # A fork answered later is killed (_handle); this zygote is not trusted again.
            self.fail(f"no fork within {timeout:g} s")
            message = f"the fork server did not fork within {timeout:g} s"
            raise ZygoteUnavailable(message) from None

    def exit_status(self, pid: int) -> int | None:
        with self._lock:
            return self._exits.pop(pid, None)

    def fail(self, why: str) -> None:
        """Stop using this zygote (and stop it): its kernels keep running."""
        with self._lock:
            if self.failed is None:
                self.failed, self.failed_at = why, time.monotonic()
            pending, self._pending = self._pending, {}
        for answer in pending.values():
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                answer.set_exception(ZygoteUnavailable(f"the fork server failed: {why}"))
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            self.ready.set_exception(ZygoteUnavailable(why))
        with contextlib.suppress(OSError):
            self.process.kill()

    def _read(self) -> None:
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(
                    self.sock, zygote_process.MESSAGE_MAX_BYTES, 1
                )
            except OSError as error:
                self.fail(f"its socket failed: {error}")
                break
            if not data:
                break
            self._handle(json.loads(data), fds)
        status = self.process.wait()
        self.fail(f"it exited with status {status}")
        self.sock.close()

    def _handle(self, message: dict, fds: list[int]) -> None:
        if "ready" in message:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                self.ready.set_result(message)
        elif "exit" in message:
            with self._lock:
                self._exits[message["exit"]] = message["status"]
                while len(self._exits) > EXITS_REMEMBERED:
                    self._exits.popitem(last=False)
        elif "id" in message:
            with self._lock:
                answer = self._pending.pop(message["id"], None)
            if "error" in message:
                if answer is not None:
                    answer.set_exception(ZygoteUnavailable(message["error"]))
            elif answer is None or not fds:  # given up on: nobody manages this kernel
                for fd in fds:
                    with contextlib.suppress(OSError):
                        signal.pidfd_send_signal(fd, signal.SIGKILL)
                    os.close(fd)
                if answer is not None:
                    answer.set_exception(ZygoteUnavailable("the fork server sent no pidfd"))
            else:
                answer.set_result((message["pid"], fds[0]))


class Zygotes:
    """This server's zygotes, one per import profile, each started on first use."""

    def __init__(self):
        self._lock = threading.Lock()
        self._by_profile: dict[tuple, Zygote] = {}

    def _zygote(self, python: str, env: dict[str, str], cwd: str, log) -> Zygote:
        key = (python, import_profile(env))
        with self._lock:
            zygote = self._by_profile.get(key)
            if zygote is not None and zygote.refused:
                raise ZygoteUnavailable(f"the fork server was refused: {zygote.failed}")
            if zygote is not None and not zygote.alive:
                waited = time.monotonic() - zygote.failed_at
                if waited < config.ZYGOTE_RETRY_SECONDS:
                    raise ZygoteUnavailable(
                        f"the fork server (pid {zygote.pid}) failed {waited:.0f} s ago "
                        f"({zygote.failed}); a new one starts after "
                        f"{config.ZYGOTE_RETRY_SECONDS} s"
                    )
                log.warning(
                    "the kernel fork server (pid %d) failed (%s): starting a new one",
                    zygote.pid,
                    zygote.failed,
                )
                zygote = None
            if zygote is None:
                if len(self._by_profile) >= config.ZYGOTE_MAX and key not in self._by_profile:
                    raise ZygoteUnavailable(
                        f"{config.ZYGOTE_MAX} fork servers run already (kernels with "
                        "as many different environments)"
                    )
                zygote_env = {**config.ZYGOTE_ENV_DEFAULTS, **dict(key[1])}
                zygote = Zygote(python, zygote_env, cwd, config.ZYGOTE_PRELOAD)
                self._by_profile[key] = zygote
                log.info("kernel fork server started (pid %d)", zygote.pid)
        return zygote

    async def get(self, python: str, env: dict[str, str], cwd: str, log) -> Zygote:
        """The zygote for this environment, started if need be and waited for."""
        zygote = self._zygote(python, env, cwd, log)
        await zygote.wait_ready(config.ZYGOTE_READY_SECONDS)
        return zygote

    async def ready(self, python: str, env: dict[str, str], cwd: str, log) -> Zygote:
        """The zygote for this environment if it is ready; ZygoteStarting while it imports
        (started if need be, and checked once it is ready: a failure is logged then)."""
        zygote = self._zygote(python, env, cwd, log)
        if not zygote.ready.done():
            asyncio.ensure_future(self._check_ready(zygote, log))
            raise ZygoteStarting(f"the fork server (pid {zygote.pid}) is still starting")
        await zygote.wait_ready(config.ZYGOTE_READY_SECONDS)
        return zygote

    @staticmethod
    async def _check_ready(zygote: Zygote, log) -> None:
        with contextlib.suppress(ZygoteUnavailable):
            await zygote.wait_ready(config.ZYGOTE_READY_SECONDS)
            return
        log.warning("the kernel fork server (pid %d) failed: %s", zygote.pid, zygote.failed)

    def stop(self) -> None:
        """Stop every zygote (their kernels keep running): for tests."""
        with self._lock:
            zygotes, self._by_profile = list(self._by_profile.values()), {}
        for zygote in zygotes:
            zygote.fail("stopped")
            with contextlib.suppress(subprocess.TimeoutExpired):
                zygote.process.wait(timeout=10)


ZYGOTES = Zygotes()


class ForkedKernel:
    """A forked kernel, in the shape LocalProvisioner expects of its Popen: poll, wait,
    send_signal, kill, terminate, through a pidfd (it is the zygote's child, not ours)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, pidfd: int, zygote: Zygote):
        self.pid, self.pidfd, self.zygote = pid, pidfd, zygote
        self.returncode: int | None = None
        self._gone_at: float | None = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        if not select.select([self.pidfd], [], [], 0)[0]:
            return None
        status = self.zygote.exit_status(self.pid)
        if status is None and self.zygote.alive:  # its exit report is on the way
            self._gone_at = self._gone_at or time.monotonic()
            if time.monotonic() - self._gone_at < config.ZYGOTE_EXIT_REPORT_SECONDS:
                return None
        self.returncode = UNKNOWN_EXIT if status is None else status
        self._close()
        return self.returncode

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(0.01)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def _close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def __del__(self):
        self._close()


class ForkingProvisioner(LocalProvisioner):
    """LocalProvisioner whose kernels are forks of this server's zygote when they can be."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        args = kernel_args(cmd)
        env = dict(kwargs.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launcher sets it
        cwd = str(kwargs.get("cwd") or os.getcwd())
        streams = [kwargs.get(name) for name in ("stdin", "stdout", "stderr")]
        why = (
            f"{config.KERNEL_FORK_ENV} is off"
            if not config.kernel_fork_enabled()
            else "its command is not ipykernel_launcher's"
            if args is None
            else "its standard streams are redirected"
            if any(stream is not None for stream in streams)
            else None
        )
        if why is None:
            try:
                zygote = await ZYGOTES.ready(cmd[0], env, cwd, self.log)
                pid, pidfd = await zygote.fork(cmd[0], args, env, cwd, config.ZYGOTE_FORK_SECONDS)
            except ZygoteStarting as error:
                self.log.info("kernel %s starts cold: %s", self.kernel_id, error)
            except ZygoteUnavailable as error:
                self.log.warning("kernel %s starts cold: %s", self.kernel_id, error)
            else:
                self.process = ForkedKernel(pid, pidfd, zygote)
                self.pid = self.pgid = pid  # its own session, as launch_kernel makes it
                self.cwd = cwd
                return self.connection_info
        elif config.kernel_fork_enabled():
            self.log.info("kernel %s starts cold: %s", self.kernel_id, why)
        return await super().launch_kernel(cmd, **kwargs)
