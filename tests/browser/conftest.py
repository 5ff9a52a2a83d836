"""Fixtures for the browser tests: one `make serve`, one chromium, a watched page per test.

The server is package-scoped, so it (and every kernel it started) is gone once the browser
tests end (pytest honours that scope only for a directory with an __init__.py; without one
it lasts the session: pytest-dev/pytest#13216). Each test gets a fresh browser context and
page; everything the page reports that is ours to fix (a console error, an uncaught
exception, a dialog, anything the page's Content-Security-Policy blocked, a failed request
to the server, an error in the server's log) fails the test that caused it. The basemap's
tiles come from the internet, which is unreachable here: their failed loads are the only
thing ignored (the policy allows them, so they fail on the network, never on the policy).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from voila_server import VoilaServer, serve

from browser.screenshots import VIEWPORT, launch
from homevalue.ui.page import FRIENDLY

# A taller window than the screenshots': the price page's map fits without scrolling.
TEST_VIEWPORT = {"width": VIEWPORT["width"], "height": 1200}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
# What the server's log must not gain while a test runs.
SERVER_LOG_ERROR = re.compile(r"Traceback \(most recent call last\)|\bERROR\b|\bCRITICAL\b")
# Not ours, and harmless: a kernel message in flight as a page closes. jupyter_server
# (services/kernels/connection/channels.py, _on_zmq_reply, v1 protocol) does not wait for
# tornado's write to the websocket, so when the socket closes meanwhile asyncio logs the
# write's WebSocketClosedError as a "Task exception was never retrieved". Removed whole
# (from that line to the exception's last line) before the log is searched for errors.
CLOSED_SOCKET_WRITE = re.compile(
    r"^Task exception was never retrieved\n"
    r"future: <Task finished name='[^']*' coro=<WebSocketProtocol13\.write_message\.<locals>"
    r"\.wrapper\(\).*exception=WebSocketClosedError\(\)>\n"
    r"(?:.*\n)*?tornado\.websocket\.WebSocketClosedError\n",
    re.M,
)
# Not ours either: jupyter_client interrupts (SIGINT) every kernel it shuts down before
# asking it to stop (manager.py, shutdown_kernel), and a kernel that is handling a widget
# message at that moment (a tab closed or reloaded mid-reprice) logs this one line.
INTERRUPTED_AT_SHUTDOWN = re.compile(
    r"^\[IPKernelApp\] ERROR \| KeyboardInterrupt caught in kernel\.\n", re.M
)
KERNEL_SHUTDOWN_WAIT = 15  # s for Voilà to act on the page's shutdown beacon
# Reports every securitypolicyviolation event of every document the page loads. Installed
# by the devtools protocol, so the page's own policy does not block it.
REPORT_CSP_VIOLATIONS = """document.addEventListener('securitypolicyviolation', e =>
  window.hvReportCspViolation(`${e.effectiveDirective} blocked ${e.blockedURI || 'inline'}`
    + ` (${e.sourceFile || document.URL}:${e.lineNumber}) ${e.sample || ''}`.trim()));"""
# The centre of the first circle of a map (GeoJSON paths in `scope`, not drawn in `skip`
# colour) that nothing covers, in window coordinates; null if none is in view.
UNCOVERED_CIRCLE = """([scope, skip]) => {
  for (const path of document.querySelectorAll(scope + ' path.leaflet-interactive')) {
    if (path.getAttribute('stroke') === skip) continue;
    const box = path.getBoundingClientRect();
    const x = box.left + box.width / 2, y = box.top + box.height / 2;
    if (x > 0 && y > 0 && x < innerWidth && y < innerHeight
        && document.elementFromPoint(x, y) === path) return {x, y};
  }
  return null;
}"""


def is_local(url: str) -> bool:
    """True for the Voilà server (and for an unknown location, to be safe)."""
    host = urllib.parse.urlsplit(url).hostname
    return host is None or host in LOCAL_HOSTS


@dataclass
class Problems:
    """What went wrong in the browser while a test ran."""

    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return [
            *(f"console error: {m}" for m in self.console),
            *(f"uncaught exception: {m}" for m in self.page_errors),
            *(f"dialog: {m}" for m in self.dialogs),
            *(f"failed request: {m}" for m in self.failed_requests),
            *(f"blocked by the Content-Security-Policy: {m}" for m in self.csp_violations),
        ]

    def take(self) -> list[str]:
        """All problems so far, for a test to assert on; the fixture then sees only new ones."""
        found = self.all()
        kinds = (self.console, self.page_errors, self.dialogs, self.failed_requests)
        for kind in (*kinds, self.csp_violations):
            kind.clear()
        return found

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("dialog", self._dialog)
        page.on("requestfailed", self._request_failed)
        page.expose_function("hvReportCspViolation", self._csp_violation)
        page.add_init_script(REPORT_CSP_VIOLATIONS)

    def _console(self, message) -> None:
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if message.text.startswith("Failed to load resource") and not is_local(url):
            return  # a map tile or a CDN font: the internet is unreachable here
        self.console.append(f"{message.text} ({url})")

    def _csp_violation(self, report: str) -> None:
        self.csp_violations.append(report)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _request_failed(self, request) -> None:
        if is_local(request.url):
            self.failed_requests.append(f"{request.url}: {request.failure}")


@pytest.fixture(scope="package")
def server(tmp_path_factory) -> Iterator[VoilaServer]:
    """`make serve` on notebooks/, shared by every browser test.

    Its batch folder is the test's own: the batch page records uploads in the job's history,
    which by default is `./batch/` of the checkout, and the price page its feedback
    (`feedback_db(server)`).
    """
    folder = tmp_path_factory.mktemp("voila")
    env = {
        "HOMEVALUE_BATCH_INBOX": str(folder / "batch" / "inbox"),
        "HOMEVALUE_FEEDBACK_DB": str(folder / "batch" / "feedback.sqlite"),
    }
    with serve(folder / "server.log", env=env) as running:
        running.inbox = Path(env["HOMEVALUE_BATCH_INBOX"])  # the Monitoring page's runs
        yield running


def feedback_db(server: VoilaServer) -> Path:
    """The feedback store of the `server` fixture's pages."""
    return server.log_path.parent / "batch" / "feedback.sqlite"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def problems() -> Problems:
    return Problems()


@pytest.fixture
def page(browser, server, problems) -> Iterator[Page]:
    """A fresh page of `make serve` whose problems fail the test."""
    with watched_page(browser, server, problems) as tab:
        yield tab


@contextlib.contextmanager
def watched_page(browser: Browser, server: VoilaServer, problems: Problems) -> Iterator[Page]:
    """A fresh page of `server` whose problems fail the test; its kernel is shut down after."""
    # A fresh context has no cookies, like a viewer arriving by a link straight to a page;
    # the template must still get its kernel shut down when the page closes.
    context = browser.new_context(viewport=TEST_VIEWPORT)
    tab = context.new_page()
    problems.watch(tab)
    log_start = len(server.log())
    found: list[str] = []
    try:
        yield tab
        found += problems.all()
        if not tab.is_closed():
            with contextlib.suppress(Exception):
                if FRIENDLY in tab.inner_text("body"):
                    found.append(f"the page shows {FRIENDLY!r} (a callback failed)")
    finally:
        kernel = None
        with contextlib.suppress(Exception):  # a page that never loaded has no kernel
            kernel = page_kernel(tab)
        close(tab)
        if kernel and not wait_for_kernel_shutdown(server, kernel):
            found.append(f"closing the page left its kernel {kernel} running (leaked)")
        context.close()
    log = CLOSED_SOCKET_WRITE.sub("", server.log()[log_start:])
    log = INTERRUPTED_AT_SHUTDOWN.sub("", log)
    errors = [line for line in log.splitlines() if SERVER_LOG_ERROR.search(line)]
    assert not found, "the browser reported problems:\n" + "\n".join(found)
    assert not errors, "the server logged errors:\n" + "\n".join(errors)


@pytest.fixture
def circle_point():
    """A point the mouse can click or hover to reach one circle of a map (and only it)."""

    def find(tab: Page, scope: str, skip: str = "") -> tuple[float, float]:
        tab.locator(scope).first.scroll_into_view_if_needed()
        point = tab.evaluate(UNCOVERED_CIRCLE, [scope, skip])
        assert point, f"no circle of {scope} is in view"
        return point["x"], point["y"]

    return find


def page_kernel(tab: Page) -> str | None:
    """The id of the kernel behind the page, if it has one."""
    config = tab.evaluate(
        "() => { const e = document.getElementById('jupyter-config-data');"
        " return e ? e.textContent : null; }"
    )
    return json.loads(config).get("kernelId") if config else None


def close(tab: Page) -> None:
    """Close as a viewer does: beforeunload runs, and Voilà's frontend asks for shutdown."""
    if tab.is_closed():
        return
    tab.close(run_before_unload=True)
    if not tab.is_closed():
        try:
            tab.wait_for_event("close", timeout=30_000)
        except PlaywrightTimeoutError:
            # Once in a full CI run a tab's renderer took over 10 s to close after its
            # unload handlers; close it outright. Whether its kernel was shut down, which is
            # what a viewer's leaving must do, is still checked by the caller.
            tab.close()


def wait_for_kernel_shutdown(server: VoilaServer, kernel: str) -> bool:
    """Wait until Voilà shuts the kernel of a closed page down; if it never does, do it
    ourselves (so kernels do not pile up and slow later tests) and say so."""
    deadline = time.monotonic() + KERNEL_SHUTDOWN_WAIT
    while time.monotonic() < deadline:
        if f"Kernel shutdown: {kernel}" in server.log():
            return True
        time.sleep(0.1)
    server.shutdown_kernel(kernel)
    return False
