"""A kernel websocket client that speaks as a browser, or as an attacker, to Voilà.

`KernelChannel` opens `/api/kernels/<id>/channels` with the v1 subprotocol (what Voilà's
frontend uses) or without it (the legacy JSON protocol), sends kernel messages and reads
the kernel's replies, so the server tests can drive a page's widgets exactly as the page's
own JavaScript does, and send what no page ever would.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import websocket  # websocket-client
from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)

V1 = "v1.kernel.websocket.jupyter.org"
WIDGET_CONTROL = "jupyter.widget.control"
CONTROL_PROTOCOL = "1.0.0"  # ipywidgets 8's __control_protocol_version__


class KernelChannel:
    """One websocket to a kernel; `protocol` is V1 or None (legacy)."""

    def __init__(
        self,
        base_url: str,
        kernel_id: str,
        protocol: str | None = V1,
        timeout: float = 10,
        cookie: str | None = None,
        sslopt: dict | None = None,
    ):
        self.session = uuid.uuid4().hex
        self.protocol = protocol
        url = base_url.replace("http", "ws", 1).rstrip("/")
        self.ws = websocket.create_connection(
            f"{url}/api/kernels/{kernel_id}/channels?session_id={self.session}",
            subprotocols=[protocol] if protocol else None,
            timeout=timeout,
            cookie=cookie,
            sslopt=sslopt,
        )

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> KernelChannel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def message(
        self, msg_type: str, content: dict, channel: str = "shell", metadata: dict | None = None
    ) -> dict:
        header = {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": "viewer",
            "session": self.session,
            "date": datetime.now(UTC).isoformat(),
            "version": "5.3",
        }
        return {
            "header": header,
            "parent_header": {},
            "metadata": metadata or {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }

    def send(
        self, msg_type: str, content: dict, channel: str = "shell", metadata: dict | None = None
    ) -> dict:
        message = self.message(msg_type, content, channel, metadata)
        if self.protocol is None:
            self.ws.send(json.dumps(message))
        else:
            parts = [
                json.dumps(message[k]).encode()
                for k in ("header", "parent_header", "metadata", "content")
            ]
            self.ws.send_binary(serialize_msg_to_ws_v1(parts, channel))
        return message

    def send_raw(self, frame: bytes | str) -> None:
        if isinstance(frame, bytes):
            self.ws.send_binary(frame)
        else:
            self.ws.send(frame)

    def recv(self) -> dict:
        """The next message as {channel, header, parent_header, content}."""
        data = self.ws.recv()
        if not data:  # websocket-client's answer to a closing frame
            raise websocket.WebSocketConnectionClosedException("the server closed the socket")
        if isinstance(data, str):
            return json.loads(data)
        if self.protocol is None:  # jupyter_server's legacy binary framing (big-endian)
            count = struct.unpack("!i", data[:4])[0]
            offsets = struct.unpack("!" + "I" * count, data[4 : 4 * (count + 1)])
            end = offsets[1] if count > 1 else None
            return json.loads(data[offsets[0] : end])
        channel, parts = deserialize_msg_from_ws_v1(data)
        names = ("header", "parent_header", "metadata", "content")
        decoded = {name: json.loads(part) for name, part in zip(names, parts[:4], strict=True)}
        return {"channel": channel, **decoded}

    def recv_until(self, wanted: Callable[[dict], bool], timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.recv()
            if wanted(message):
                return message
        raise TimeoutError("the kernel did not send the awaited message")

    def replies_until(self, msg_id: str, msg_type: str, seconds: float) -> list[dict]:
        """Messages received until the `msg_type` answer to `msg_id` arrives (or time is up)."""
        received = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = self.recv()
            except websocket.WebSocketTimeoutException:
                break
            received.append(message)
            parent = message.get("parent_header") or {}
            if parent.get("msg_id") == msg_id and message["header"]["msg_type"] == msg_type:
                break
        return received

    def widget_states(self) -> dict[str, dict]:
        """Every widget model's state, asked for as the page's widget manager asks."""
        comm = uuid.uuid4().hex
        opened = {"comm_id": comm, "target_name": WIDGET_CONTROL, "data": {}}
        self.send("comm_open", opened, metadata={"version": CONTROL_PROTOCOL})
        self.send("comm_msg", {"comm_id": comm, "data": {"method": "request_states"}})
        reply = self.recv_until(
            lambda m: m["header"]["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm
        )
        return {k: v["state"] for k, v in reply["content"]["data"]["states"].items()}

    def model_id(self, description: str) -> str:
        """The id of the widget whose label is `description` (e.g. "Living area")."""
        for model, state in self.widget_states().items():
            if state.get("description") == description:
                return model
        raise LookupError(f"no widget labelled {description!r}")

    def update(self, model: str, state: dict) -> dict:
        """Set widget state as the browser does when a viewer edits a field."""
        return self.send(
            "comm_msg",
            {"comm_id": model, "data": {"method": "update", "state": state, "buffer_paths": []}},
        )
