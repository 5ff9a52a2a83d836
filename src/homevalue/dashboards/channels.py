"""The kernel websocket as a border: what a viewer's browser may send a kernel, and see of it.

Voilà forwards a viewer's websocket frames to the page's kernel and the kernel's messages
back. Two upstream functions trust the frame they are given:

- Voilà 0.5.13's `VoilaKernelWebsocketHandler.write_message` reads every binary kernel
  reply as if it were framed with the v1 protocol. Without the
  `v1.kernel.websocket.jupyter.org` subprotocol (the legacy protocol) replies are framed
  differently, their first 8 bytes read as a count of ~10^17 offsets, and the list it
  builds freezes the whole server while its memory grows until it is killed.
- jupyter_server's `deserialize_msg_from_ws_v1` takes the offset count of an *incoming*
  frame from the frame itself, so one crafted 72-byte frame does the same with v1.

So a connection here speaks v1 only (a legacy handshake is refused with HTTP 400, which
Voilà's own frontend never sees: it always asks for v1), every incoming frame's framing is
checked before anything reads it, a viewer may open only the widget-control comm (the one
the widget manager needs to fetch state: without this a viewer could create widgets of any
size in the kernel), and kernel errors and stderr go to the server's log instead of the
viewer (ipywidgets sends a full traceback, with server paths, for a malformed update).

A kernel the server shuts down (idle culling, `DELETE /api/kernels/<id>`, the memory
ceiling) is reported to its viewers here: jupyter_server leaves their websockets open and
silent (it reports only restarts and failed restarts), so a page's kernel connection would
never learn that its kernel is gone. Each socket gets the kernel status "dead", as
jupyter_server sends for a restart that failed, then is closed. The page's kernel
connection (@jupyterlab/services) reports "dead" and stops: the template's connection-lost
notice follows that status. Closing alone would not do: the connection would retry the
socket, and each retry of a missing kernel's socket logs a traceback on Voilà (its 404 page
needs a `static_path` Voilà does not set).
"""

from __future__ import annotations

import json
import re

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado import web
from tornado.ioloop import PeriodicCallback

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
CHANNELS = frozenset({"shell", "control", "stdin", "iopub"})
# Header, parent header, metadata, content, then the buffers: one upload is one buffer.
MAX_PARTS = 4 + 16
# The comms a viewer's page opens itself; every widget model is created by the kernel.
VIEWER_COMM_TARGETS = frozenset({"jupyter.widget.control"})
# A closing frame's code for "policy violation" (RFC 6455 section 7.4.1).
POLICY_VIOLATION = 1008
# ... and for "going away": the kernel behind the socket was shut down.
GOING_AWAY = 1001
KERNEL_WATCH_MS = 2000  # how often an open socket checks that its kernel still exists
LOGGED_TEXT = 2000  # characters of a kernel's stderr or traceback kept per log line
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class FrameError(ValueError):
    """A websocket frame that is not a well-formed v1 kernel message."""


def split_v1_frame(frame: bytes) -> tuple[str, list[bytes]]:
    """(channel, message parts) of a v1 frame, refusing any frame whose offsets do not fit it.

    The v1 layout is: an 8-byte count n, n 8-byte offsets (little-endian), then the channel
    name and the message parts, each running from its offset to the next one's.
    """
    if not isinstance(frame, bytes):
        raise FrameError("text frame: this server speaks only the binary v1 kernel protocol")
    if len(frame) < 8:
        raise FrameError(f"frame of {len(frame)} bytes is too short to hold its offsets")
    count = int.from_bytes(frame[:8], "little")
    if not 3 <= count <= MAX_PARTS + 2:
        raise FrameError(f"frame declares {count} offsets (at most {MAX_PARTS + 2} are accepted)")
    header_end = 8 * (count + 1)
    if len(frame) < header_end:
        raise FrameError(f"frame of {len(frame)} bytes is shorter than its {count} offsets")
    offsets = [int.from_bytes(frame[8 * i : 8 * (i + 1)], "little") for i in range(1, count + 1)]
    bounds = [header_end, *offsets, len(frame)]
    if any(later < earlier for earlier, later in zip(bounds, bounds[1:], strict=False)):
        raise FrameError("frame offsets are out of order or point outside the frame")
    channel = frame[offsets[0] : offsets[1]].decode("utf-8", errors="replace")
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(1, count - 1)]
    return channel, parts


class ViewerKernelConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket with the checks a public page needs.

    Registered the supported way: `Voila.kernel_websocket_connection_class` in voila.json.
    """

    async def prepare(self) -> None:
        offered = self.websocket_handler.request.headers.get("Sec-WebSocket-Protocol", "")
        if V1_PROTOCOL not in (part.strip() for part in offered.split(",")):
            # Finish, not HTTPError: the websocket handler cannot render an error page.
            refusal = f"This server speaks only the {V1_PROTOCOL} kernel protocol."
            self.websocket_handler.set_status(400, reason="Unsupported kernel protocol")
            self.websocket_handler.set_header("Content-Type", "text/plain; charset=UTF-8")
            raise web.Finish(refusal + "\n")
        await super().prepare()

    def connect(self):
        connected = super().connect()
        if connected is not None:  # None: the connection failed and is already closed
            self._kernel_watch = PeriodicCallback(self._close_if_kernel_gone, KERNEL_WATCH_MS)
            self._kernel_watch.start()
        return connected

    def disconnect(self) -> None:
        watch = getattr(self, "_kernel_watch", None)
        if watch is not None:
            watch.stop()
        super().disconnect()

    def _close_if_kernel_gone(self) -> None:
        """A shut-down kernel leaves its websockets open and silent: tell this one's page its
        kernel is dead, then close it (a dict lookup every 2 s per open page)."""
        if self.kernel_id in self.multi_kernel_manager:
            return
        self._kernel_watch.stop()
        self.log.info("kernel %s: shut down, closing its viewer's websocket", self.kernel_id)
        try:
            self._send_status_message("dead")
        except Exception as error:  # the socket is closing anyway: say so in the log only
            self.log.info("kernel %s: could not send its dead status: %r", self.kernel_id, error)
        self.websocket_handler.close(GOING_AWAY, "kernel shut down")

    def handle_incoming_message(self, incoming_msg) -> None:
        try:
            channel, parts = split_v1_frame(incoming_msg)
            if channel not in CHANNELS:
                raise FrameError(f"unknown channel {channel[:40]!r}")
            if len(parts) < 4:
                raise FrameError("a kernel message has a header, parent, metadata and content")
            header = json.loads(parts[0])
            if header.get("msg_type") == "comm_open":
                target = json.loads(parts[3]).get("target_name")
                if target not in VIEWER_COMM_TARGETS:
                    raise FrameError(f"a viewer may not open a comm to {str(target)[:60]!r}")
        except (FrameError, ValueError, AttributeError, TypeError) as error:
            self._refuse(str(error))
            return
        super().handle_incoming_message(incoming_msg)

    def _refuse(self, reason: str) -> None:
        """Close the viewer's socket: a page never sends such frames, so the peer is not one."""
        self.log.warning("kernel %s: websocket closed, %s", self.kernel_id, reason)
        self.websocket_handler.close(POLICY_VIOLATION, "malformed kernel message")

    def handle_outgoing_message(self, stream, outgoing_msg) -> None:
        if getattr(stream, "channel", stream) == "iopub" and self._kept_from_viewer(outgoing_msg):
            return
        super().handle_outgoing_message(stream, outgoing_msg)

    def _kept_from_viewer(self, msg_list: list) -> bool:
        """Errors and stderr are for the operator: logged here, never sent to the page."""
        _, parts = self.session.feed_identities(msg_list)
        header = self.session.unpack(parts[1])
        kind = header.get("msg_type")
        if kind not in ("error", "stream"):
            return False
        content = self.session.unpack(parts[4])
        if kind == "stream" and content.get("name") != "stderr":
            return False
        text = content.get("text") if kind == "stream" else "\n".join(content.get("traceback", []))
        text = ANSI_ESCAPE.sub("", str(text)).strip()
        self.log.warning(
            "kernel %s %s (not shown to the viewer): %s", self.kernel_id, kind, text[:LOGGED_TEXT]
        )
        return True
