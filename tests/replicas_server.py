"""`make serve-replicas` for the tests: N Voilà servers behind nginx, all on free ports.

`serve_replicas()` runs the make target exactly as a person does (in its own process group,
as a terminal would), waits for the launcher's "Serving" line, and on exit stops it with
Ctrl-C's signal (SIGINT to the group) and then kills anything left, so a failed test never
leaves servers, kernels or nginx behind.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests
from voila_server import START_TIMEOUT, free_port, process_tree, start_server, stop_group

STOP_TIMEOUT = 40  # s: nginx, then each replica shutting its kernels down


@dataclass
class Replicas:
    """A running `make serve-replicas`: make (the group leader), the proxy's port, the
    replicas' ports (replica n is ports[n - 1]) and the run folder with every log."""

    process: subprocess.Popen
    port: int
    ports: list[int]
    run_dir: Path
    output: Path

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/"

    def log(self, number: int) -> str:
        return (self.run_dir / f"replica-{number}.log").read_text(errors="replace")

    def nginx_log(self) -> str:
        return (self.run_dir / "nginx-error.log").read_text(errors="replace")

    def processes(self) -> list[psutil.Process]:
        """make, the launcher, nginx, the replicas and their kernels."""
        return process_tree(self.process.pid)

    def server(self, number: int) -> psutil.Process:
        """Replica `number`'s Voilà server process."""
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                command = process.cmdline()
                if "homevalue.dashboards" in command and f"--port={self.ports[number - 1]}" in (
                    command
                ):
                    return process
        raise LookupError(f"replica {number} is not running")

    def holder(self, kernel_id: str) -> int:
        """The replica whose server started the kernel (the kernel is its child process)."""
        for number in range(1, len(self.ports) + 1):
            try:
                server = self.server(number)
            except LookupError:  # a replica a test killed
                continue
            for child in server.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if f"kernel-{kernel_id}.json" in " ".join(child.cmdline()):
                        return number
        raise LookupError(f"no replica runs kernel {kernel_id}")

    def probe(self, cookies: dict | None = None) -> tuple[int, requests.Response]:
        """Which replica a request with these cookies reaches: a GET of a unique path that
        no server has, which the replica that answers logs (a 404 is logged as a warning)."""
        path = f"hv-probe-{uuid.uuid4().hex}"
        answer = requests.get(self.url + path, cookies=cookies or {}, timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [n for n in range(1, len(self.ports) + 1) if f"GET /{path} " in self.log(n)]
            if found:
                assert len(found) == 1, f"{path} reached replicas {found}"
                return found[0], answer
            time.sleep(0.05)
        raise AssertionError(f"no replica logged {path}; the proxy answered {answer.status_code}")

    def stop(self) -> None:
        """Ctrl-C, as in the terminal; then kill whatever is still there after STOP_TIMEOUT."""
        stop_group(self.process.pid, self.processes(), signal.SIGINT, STOP_TIMEOUT)


@contextlib.contextmanager
def serve_replicas(
    run_dir: Path, count: int = 2, env: dict[str, str] | None = None, voila_args: str = ""
) -> Iterator[Replicas]:
    port, ports = free_port(), []
    while len(ports) < count:
        candidate = free_port()
        if candidate != port and candidate not in ports:
            ports.append(candidate)
    command = [
        "make",
        "-s",
        "serve-replicas",
        f"PORT={port}",
        f"REPLICAS={count}",
        f"REPLICA_PORTS={','.join(map(str, ports))}",
        f"RUN_DIR={run_dir}",
    ]
    if voila_args:
        command.append(f"VOILA_ARGS={voila_args}")
    run_dir.mkdir(parents=True, exist_ok=True)
    output = run_dir / "make.out"
    replicas = Replicas(start_server(command, output, env), port, ports, run_dir, output)
    try:
        _wait_until_serving(replicas)
        yield replicas
    finally:
        replicas.stop()


def _wait_until_serving(replicas: Replicas) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        said = replicas.output.read_text(errors="replace")
        if replicas.process.poll() is not None:
            raise RuntimeError(f"`make serve-replicas` exited:\n{said[-3000:]}")
        if re.search(r"^Serving ", said, re.M):
            return
        time.sleep(0.25)
    raise RuntimeError("`make serve-replicas` did not start in time")
