"""What every dashboard page shares: panels that describe themselves, safe callbacks, the URL.

A page is a handful of panels, each displayed by its own notebook cell. A panel's plain-text
form (what nbval compares) is a one-paragraph summary of what a viewer sees in it, so a
change to the model or to `homevalue` that changes the page fails the notebook tests.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Callable

import ipywidgets as widgets

from homevalue.errors import HomevalueError
from homevalue.ui import render

log = logging.getLogger("homevalue.ui")


def _server_log_stream():
    """A stream to the kernel process's own stderr, which Voilà's server log collects.

    Inside a kernel, ipykernel redirects file descriptor 2 to the page (anything written
    there would be shown to the viewer); `sys.stderr.fileno()` is its copy of the original.
    """
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8")
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return sys.__stderr__


if not log.handlers:
    _handler = logging.StreamHandler(_server_log_stream())
    _handler.setFormatter(logging.Formatter("%(asctime)s homevalue.ui %(levelname)s %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False

FRIENDLY = "Something went wrong on our side; it has been logged. Try again, or reload the page."


class Panel(widgets.VBox):
    """A box whose text form is a summary of its content, for nbval and for logs."""

    def __init__(self, children=(), *, title: str, summary: Callable[[], str], **kwargs):
        super().__init__(children, **kwargs)
        self._title = title
        self._summary = summary
        self.add_class("hv-panel")

    def __repr__(self) -> str:
        return f"{self._title}: {self._summary()}"

    def _repr_mimebundle_(self, **kwargs):
        # ipywidgets cuts the text form at 110 characters; the summary is the point here.
        data = super()._repr_mimebundle_(**kwargs)
        data["text/plain"] = repr(self)
        return data


def guarded(status: widgets.HTML) -> Callable:
    """Decorate a callback so a bug shows a friendly line in `status` and a server log line.

    Expected problems (HomevalueError: bad file, bad value) are shown as they are; anything
    else is a bug, logged with its traceback but never shown to the viewer.
    """

    def decorate(callback: Callable) -> Callable:
        @functools.wraps(callback)
        def wrapper(*args, **kwargs):
            try:
                return callback(*args, **kwargs)
            except HomevalueError as error:
                status.value = render.notice(str(error))
            except Exception:
                log.exception("callback %s failed", callback.__qualname__)
                status.value = render.notice(FRIENDLY)
            return None

        return wrapper

    return decorate


HOOK_FAILED = "This panel could not be updated for this house; the error has been logged."


class Hooks:
    """Callbacks added to a page by an analyst, each run with the same state, each alone.

    A callback that raises is logged with its traceback and leaves a short line in its
    `status` (its own panel's, or the page's): never a traceback for the viewer, and
    neither the page nor the other callbacks notice. A HomevalueError's own words are
    shown, as `guarded` does. A callback's own status line is cleared when it next succeeds.
    """

    def __init__(self, status: widgets.HTML):
        self.status = status
        self._hooks: list[tuple[Callable[[object], None], widgets.HTML | None]] = []

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def add(self, callback: Callable[[object], None], status: widgets.HTML | None = None):
        self._hooks.append((callback, status))

    def run(self, state: object) -> None:
        for callback, status in self._hooks:
            self.run_one(callback, status, state)

    def run_one(self, callback: Callable, status: widgets.HTML | None, state: object) -> None:
        line = self.status if status is None else status
        try:
            callback(state)
        except HomevalueError as error:
            line.value = render.notice(str(error))
        except Exception:
            log.exception("hook %s failed", getattr(callback, "__qualname__", callback))
            line.value = render.notice(HOOK_FAILED)
        else:
            if status is not None:
                status.value = ""


class Throttle:
    """Run `action` at once, then at most every `interval` seconds while changes keep coming.

    The first change after a pause is answered immediately (no added latency); a burst (a
    slider dragged, a form filled in code) collapses into one trailing run. Without a
    running event loop (tests, nbval) every call runs at once.
    """

    def __init__(self, action: Callable[[], None], interval: float = 0.15):
        self.action = action
        self.interval = interval
        self.last = -float("inf")
        self.pending: asyncio.TimerHandle | None = None

    def __call__(self, *_ignored) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        wait = self.last + self.interval - time.monotonic()
        if loop is None or wait <= 0:
            self._run()
        elif self.pending is None:
            self.pending = loop.call_later(wait, self._run)

    def _run(self) -> None:
        self.pending = None
        self.last = time.monotonic()
        self.action()


class Debounce:
    """Run `action` once changes have paused for `delay` seconds (the last call wins).

    For what a person hears, not sees: a screen reader told every intermediate price while
    a count is stepped would queue them all. Without a running event loop (tests, nbval)
    every call runs at once.
    """

    def __init__(self, action: Callable[[], None], delay: float = 0.6):
        self.action = action
        self.delay = delay
        self.pending: asyncio.TimerHandle | None = None

    def __call__(self, *_ignored) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.action()
            return
        if self.pending is not None:
            self.pending.cancel()
        self.pending = loop.call_later(self.delay, self._run)

    def _run(self) -> None:
        self.pending = None
        self.action()


# How long a preheated kernel waits for its viewer's request before giving up on the query.
REQUEST_TIMEOUT_SECONDS = 10


def request_query() -> dict[str, str]:
    """The viewer's URL query as {name: last value}.

    Under preheated kernels the notebook runs before anyone asks for the page; Voilà sends
    the viewer's request (its CGI-style variables) to the kernel over a websocket at
    `voila/query/<kernel id>` once a viewer takes the kernel. This speaks that small
    protocol (as `voila.utils.wait_for_request` does) without importing `voila`, which
    drags the whole server into every kernel: +44 MB of memory and +1.1 s of start-up.
    Outside Voilà (JupyterLab, nbval) and without preheating it returns at once.
    """
    if os.environ.get("VOILA_PREHEAT", "False") != "False" and "VOILA_KERNEL_ID" in os.environ:
        os.environ.update(_voila_request_variables())
    pairs = urllib.parse.parse_qsl(os.environ.get("QUERY_STRING", ""), keep_blank_values=True)
    return dict(pairs)


def _voila_request_variables() -> dict[str, str]:
    """Block until Voilà hands this kernel to a viewer; its request's variables, or {}."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    env = os.environ
    base = env.get("VOILA_WS_BASE_URL", env.get("VOILA_SERVER_URL", "/"))
    url = (
        f"{env.get('VOILA_WS_PROTOCOL', 'ws')}://{env.get('VOILA_APP_IP', '127.0.0.1')}:"
        f"{env.get('VOILA_APP_PORT', '8866')}{base}voila/query/{env['VOILA_KERNEL_ID']}"
    )
    try:
        # The kernel may wait in the pool for hours: only connecting has a deadline.
        with connect(url, open_timeout=REQUEST_TIMEOUT_SECONDS) as websocket:
            variables = json.loads(websocket.recv())
    except (OSError, TimeoutError, ValueError, WebSocketException) as error:
        log.error("no request details from Voilà at %s: %s", url, error)
        return {}
    return {str(k): str(v) for k, v in variables.items()}


def page_path() -> str:
    """The page's own path on the server (for shareable links), or "" outside Voilà."""
    return os.environ.get("SCRIPT_NAME", "")


def live_region() -> widgets.HTML:
    """A polite live region (role="status"), heard by screen readers and not seen.

    ipywidgets cannot set ARIA attributes; homevalue.js gives every `.hv-live` widget its
    role and aria-live once it is drawn. The widget's own element is the region, so it
    exists before its first text, as assistive technologies require to announce a change.
    """
    region = widgets.HTML()
    region.add_class("hv-live")
    region.add_class("hv-sr-only")
    return region


def version_marker(version: str) -> widgets.HTML:
    """An element the template's footer reads to show which model priced the page."""
    return widgets.HTML(render.version_marker(version), layout={"display": "none"})


class Unavailable:
    """Stands in for a page whose model could not be loaded.

    The first panel asked for says why (without a traceback); the rest are empty, so the
    notebook reads the same whether or not the model is there.
    """

    def __init__(self, title: str, error: Exception):
        self.title = title
        self.error = error
        self.shown = False
        log.error("%s unavailable: %s", title, error)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if self.shown:
            return Panel(title=name, summary=lambda: "unavailable")
        self.shown = True
        message = (
            f"{self.title} is unavailable: the price model could not be loaded. "
            "The error has been logged; please tell the team that runs this site."
        )
        return Panel([widgets.HTML(render.notice(message))], title=name, summary=lambda: message)

    def apply_request(self, query=None) -> None:
        """Nothing to fill in."""

    def on_priced(self, callback, *, status=None) -> None:
        """Nothing will be priced: an analyst's panel stays as it was built."""


def build(page_class, title: str, *args, **kwargs):
    """The page, or an Unavailable stand-in if its model cannot be loaded."""
    try:
        return page_class(*args, **kwargs)
    except HomevalueError as error:
        return Unavailable(title, error)
