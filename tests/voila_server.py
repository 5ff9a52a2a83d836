"""A Voilà server started exactly as `make serve` starts it, for the server tests.

`serve()` runs ``make -s serve PORT=<free port>`` from the project root (so Voilà reads the
root voila.json and finds the installed template), in its own process group, waits until it
answers, and on exit stops it together with every kernel it started. ``NOTEBOOKS=<dir>``
serves another folder with the same command and settings.

Also here: the small readers the tests share (a page's kernel id, a notebook's code, the
text a page shows) and raw requests that keep ``..`` in a path (requests would remove it).
"""

from __future__ import annotations

import ast
import contextlib
import html
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil  # installed with ipykernel
import requests  # installed with jupyterlab_server

PROJ_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = PROJ_ROOT / "notebooks"

# `make serve` reinstalls the package first when a template file changed: allow for that.
START_TIMEOUT = 180
STOP_TIMEOUT = 20
PAGE_TIMEOUT = 120  # a page is streamed while its cells run
# The tests (and the benchmark's crowds) open pages from one address far faster than a person
# does; the per-client budget has its own tests (tests/test_dashboard_security.py).
# Their pools are voila.json's pool_size (2 price kernels), not sized from this machine's
# memory, so the tests count the same kernels everywhere (the bench sets the share back).
TEST_LIMITS = {
    "HOMEVALUE_KERNELS_PER_CLIENT_PER_MINUTE": "1000",
    "HOMEVALUE_POOL_MEMORY_SHARE": "0",
}
UPSTREAM_CLASSES = [
    "--Voila.kernel_websocket_connection_class="
    "jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection",
    "--VoilaConfiguration.multi_kernel_manager_class="
    "jupyter_server.services.kernels.kernelmanager.AsyncMappingKernelManager",
]


@dataclass
class VoilaServer:
    """A running `make serve`: its process (the group leader), port and captured log."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}/"

    def log(self) -> str:
        """Everything make and Voilà (and the kernels) wrote so far, stdout and stderr."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def processes(self) -> list[psutil.Process]:
        """make, the shell, Voilà and the kernels (kernels run in their own sessions)."""
        return process_tree(self.process.pid)

    def server_process(self) -> psutil.Process:
        """The Voilà server itself, not make, its shell or a kernel."""
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                command = process.cmdline()
                if f"--port={self.port}" in command and "make" not in command[0]:
                    return process
        raise LookupError("the Voilà server process is not running")

    def kernel_ids(self) -> list[str]:
        """The kernels the server runs now, the preheated pool included."""
        found = []
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                match = re.search(r"kernel-([0-9a-f-]{36})\.json", " ".join(process.cmdline()))
                if match:
                    found.append(match[1])
        return found

    def kernel_processes(self, kernel_id: str) -> list[psutil.Process]:
        """The processes whose command line names the kernel's connection file."""
        found = []
        for process in self.processes():
            with contextlib.suppress(psutil.Error):
                if any(kernel_id in part for part in process.cmdline()):
                    found.append(process)
        return found

    def kill_kernel(self, kernel_id: str) -> None:
        """SIGKILL the kernel's processes, as a crash or the OOM killer would, and wait."""
        processes = self.kernel_processes(kernel_id)
        assert processes, f"no process found for kernel {kernel_id}"
        for process in processes:
            process.send_signal(signal.SIGKILL)
        psutil.wait_procs(processes, timeout=10)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=PAGE_TIMEOUT, **kwargs)

    def raw_get(self, path: str) -> tuple[int, bytes]:
        """GET `path` exactly as written (no dot-segment removal), without redirects."""
        connection = http.client.HTTPConnection("localhost", self.port, timeout=PAGE_TIMEOUT)
        try:
            connection.request("GET", "/" + path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def shutdown_kernel(self, kernel_id: str) -> None:
        """Shut a page's kernel down as the browser does when the tab closes."""
        with requests.Session() as session:
            session.get(self.url, timeout=10)  # sets the _xsrf cookie
            token = session.cookies.get("_xsrf", "")
            session.post(
                f"{self.url}voila/api/shutdown/{kernel_id}",
                headers={"X-XSRFToken": token},
                timeout=30,
            )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def start_server(
    command: list[str], log_path: Path, env: dict[str, str] | None
) -> subprocess.Popen:
    """`command` (a `make` target or a server) from the checkout, in its own process group
    (stopped whole), its output in `log_path`, with the tests' limits and `env` on top."""
    # Under `make test`, MAKEFLAGS names jobserver pipes this child cannot use.
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}},
        **TEST_LIMITS,
        **(env or {}),
    }
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=PROJ_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


@contextlib.contextmanager
def serve(
    log_path: Path,
    notebooks: Path | None = None,
    env: dict[str, str] | None = None,
    voila_args: str = "",
    upstream: bool = False,
    port: int | None = None,
) -> Iterator[VoilaServer]:
    """Run `make serve` on a free port until the block ends; fail with the log if it dies.

    `env` adds environment variables (the kernels inherit them), e.g. another model folder;
    `voila_args` adds Voilà options on top of voila.json (`make serve VOILA_ARGS=...`).
    `upstream` runs Voilà's own `voila` command instead, with jupyter_server's kernel and
    websocket classes in place of ours (the benchmarks' baseline), on the same voila.json.
    `port` is the port to serve on (a free one if not given).
    """
    port = port or free_port()
    command = ["make", "-s", "serve", f"PORT={port}"]
    if upstream:
        command = [
            str(PROJ_ROOT / ".venv/bin/voila"),
            "--no-browser",
            f"--port={port}",
            "--Voila.port_retries=0",
            *UPSTREAM_CLASSES,
            *voila_args.split(),
            str(notebooks or NOTEBOOKS),
        ]
    else:
        if notebooks is not None:
            command.append(f"NOTEBOOKS={notebooks}")
        if voila_args:
            command.append(f"VOILA_ARGS={voila_args}")
    server = VoilaServer(start_server(command, log_path, env), port, log_path)
    try:
        _wait_until_up(server)
        yield server
    finally:
        _stop(server)


def _wait_until_up(server: VoilaServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"`make serve` exited with status {server.process.returncode}:\n"
                + server.log()[-3000:]
            )
        with contextlib.suppress(requests.ConnectionError, requests.Timeout):
            if requests.get(server.url, timeout=5).status_code == 200:
                return
        time.sleep(0.25)
    raise RuntimeError(f"Voilà did not answer within {START_TIMEOUT} s:\n" + server.log()[-3000:])


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants; empty once it is gone."""
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def stop_group(
    group: int, processes: list[psutil.Process], sig: int, timeout: float = STOP_TIMEOUT
) -> None:
    """Send `sig` to the process group, give `processes` `timeout` s to go, kill the rest."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def _stop(server: VoilaServer) -> None:
    """SIGTERM the group (Voilà then shuts its kernels down), then SIGKILL what is left."""
    stop_group(server.process.pid, server.processes(), signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=5)


def write_notebook(path: Path, cells: list) -> Path:
    """A Python notebook of `cells` (nbformat cells, or code as text) at `path`."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells = [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def kernel_id(page: str) -> str:
    """The id of the kernel behind a rendered page (from Voilà's jupyter-config-data)."""
    match = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S
    )
    assert match, "the page has no jupyter-config-data (no kernel was started)"
    return json.loads(match[1])["kernelId"]


def code_statements(notebook: Path, min_length: int = 8) -> list[str]:
    """The first line of every statement in the notebook's code cells, stripped.

    Only statement lines are taken (never comments, string contents or output), so any of
    them showing up in a page means the page shows the notebook's code.
    """
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    found: list[str] = []
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        # IPython magics and shell escapes are not Python: blank them, keep line numbers.
        lines = [
            "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
        ]
        tree = ast.parse("\n".join(lines))
        for node in ast.walk(tree):
            if isinstance(node, ast.stmt):
                line = lines[node.lineno - 1].strip()
                if len(line) >= min_length and line not in found:
                    found.append(line)
    return found


def visible_text(page: str) -> str:
    """The page without its tags, entities decoded: highlighted code reads as plain code."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))
