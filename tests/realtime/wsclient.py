"""A small WebSocket test client (picows) that records every frame the server sends."""

# ruff: noqa: ASYNC109 - a timeout argument reads better in tests

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from picows import WSListener, WSMsgType, WSTransport, ws_connect


class _Listener(WSListener):
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.changed = asyncio.Event()

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            self.messages.append(json.loads(frame.get_payload_as_bytes()))
        elif frame.msg_type == WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            transport.disconnect()
        self.changed.set()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.changed.set()


class WsClient:
    def __init__(self, transport: WSTransport, listener: _Listener) -> None:
        self.transport = transport
        self.listener = listener
        self.socket_id = ""

    @classmethod
    async def connect(cls, url: str, **headers: str) -> WsClient:
        transport, listener = await ws_connect(_Listener, url, extra_headers=headers or None)
        client = cls(transport, listener)  # type: ignore[arg-type]
        return client

    @classmethod
    async def open(cls, port: int, key: str, **headers: str) -> WsClient:
        """Connect to ``/app/{key}`` and wait for connection_established."""
        client = await cls.connect(f"ws://127.0.0.1:{port}/app/{key}?protocol=7", **headers)
        established = await client.wait_for("pusher:connection_established")
        client.socket_id = json.loads(established["data"])["socket_id"]
        return client

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.listener.messages

    @property
    def close_code(self) -> int | None:
        return self.listener.close_code

    def send(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, dict):
            message = json.dumps(message)
        payload = message.encode() if isinstance(message, str) else message
        self.transport.send(WSMsgType.TEXT, payload)

    def subscribe(self, channel: str, auth: str | None = None, channel_data: str | None = None):
        data: dict[str, str] = {"channel": channel}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send({"event": "pusher:subscribe", "data": data})

    async def wait_for(
        self, event: str, *, channel: str | None = None, timeout: float = 5.0, after: int = 0
    ) -> dict[str, Any]:
        """The first message (from index ``after``) with this event (and channel)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages[after:]:
                if message.get("event") == event and (
                    channel is None or message.get("channel") == channel
                ):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.transport.is_disconnected:
                raise AssertionError(
                    f"no {event!r} (channel {channel!r}) within {timeout}s; got {self.messages}"
                    f", close code {self.close_code}"
                )
            self.listener.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.listener.changed.wait(), remaining)

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await asyncio.wait_for(self.transport.wait_disconnected(), timeout)
        return self.close_code

    async def quiet(self, seconds: float = 0.2) -> list[dict[str, Any]]:
        """Wait a little and return what arrived meanwhile (to show that nothing did)."""
        before = len(self.messages)
        await asyncio.sleep(seconds)
        return self.messages[before:]

    async def close(self) -> None:
        if not self.transport.is_disconnected:
            self.transport.send_close()
            self.transport.disconnect()
            await self.transport.wait_disconnected()
