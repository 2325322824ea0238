"""The baseline for the WebSocket benchmarks: Pusher protocol 7 on a bare asyncio Protocol.

No WebSocket library: a minimal HTTP upgrade for ``/app/...``, client frames unmasked by hand,
``pusher:subscribe`` / ``pusher:ping`` answered with the very bytes notiflow sends, and
``publish(channel, frame)`` writing one pre-built server frame to each subscriber's transport, one
``write()`` per message (as a C epoll server does). With
``coalesce=True`` the frames a connection receives within one loop tick go out in one write. It is
the "raw uvloop transport writing the same bytes" that BENCHMARKS.md compares notiflow against: no
validation, no limits, no liveness, so nothing real should use it.

Usage (in-process)::

    server = await RawServer.start("127.0.0.1", 0)
    frame = server_frame(event_message("E", "bench", data))
    await server.publish("bench", frame)
    server.subscriber_count("bench")
    await server.close()
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import os
from typing import Any, cast

from notiflow.realtime.protocol import (
    PONG,
    connection_established,
    subscription_succeeded,
)

__all__ = ["RawServer", "server_frame"]

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_REQUEST = 8192
_MAX_FRAME = 1 << 20


def server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked, unfragmented server-to-client frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return header + payload


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def _header(request: bytes, name: bytes) -> bytes | None:
    for line in request.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Connection(asyncio.Protocol):
    __slots__ = ("_buffer", "_upgraded", "channels", "pending", "server", "transport")

    def __init__(self, server: RawServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._upgraded = False
        self.channels: set[str] = set()
        self.pending: list[bytes] | None = None  # coalesced frames awaiting this tick's flush

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for channel in self.channels:
            members = self.server.channels.get(channel)
            if members is not None:
                members.discard(self)
                if not members:
                    del self.server.channels[channel]
        self.channels.clear()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._upgraded:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_REQUEST:
                    self._refuse(_BAD_REQUEST)
                return
            request = bytes(self._buffer[: end + 4])
            del self._buffer[: end + 4]
            if not self._upgrade(request):
                return
        self._read_frames()

    def _refuse(self, response: bytes) -> None:
        assert self.transport is not None
        self.transport.write(response)
        self.transport.close()

    def _upgrade(self, request: bytes) -> bool:
        assert self.transport is not None
        parts = request.split(b" ", 2)
        key = _header(request, b"sec-websocket-key")
        if len(parts) < 3 or parts[0] != b"GET" or key is None:
            self._refuse(_BAD_REQUEST)
            return False
        if not parts[1].startswith(b"/app/"):
            self._refuse(_NOT_FOUND)
            return False
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())  # noqa: S324 (RFC 6455)
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self._upgraded = True
        self.transport.write(server_frame(self.server.next_established()))
        return True

    def _read_frames(self) -> None:
        buf = self._buffer
        while len(buf) >= 2:
            opcode = buf[0] & 0x0F
            masked = buf[1] & 0x80
            length = buf[1] & 0x7F
            offset = 2
            if length == 126:
                if len(buf) < 4:
                    return
                length = int.from_bytes(buf[2:4], "big")
                offset = 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length = int.from_bytes(buf[2:10], "big")
                offset = 10
            if length > _MAX_FRAME:
                self._close()
                return
            mask = b""
            if masked:
                mask = bytes(buf[offset : offset + 4])
                offset += 4
            if len(buf) < offset + length:
                return
            payload = bytes(buf[offset : offset + length])
            del buf[: offset + length]
            if masked and payload:
                payload = _unmask(payload, mask)
            if opcode == 0x1:
                self._on_text(payload)
            elif opcode == 0x8:
                self._close()
                return
            elif opcode == 0x9 and self.transport is not None:
                self.transport.write(server_frame(payload, 0xA))

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.write(server_frame(b"\x03\xe8", 0x8))
            self.transport.close()

    def _on_text(self, payload: bytes) -> None:
        try:
            message: Any = json.loads(payload)
            event = message["event"]
        except (ValueError, TypeError, KeyError):
            return
        assert self.transport is not None
        if event == "pusher:subscribe":
            data = message.get("data")
            channel = data.get("channel") if isinstance(data, dict) else None
            if isinstance(channel, str):
                self.channels.add(channel)
                self.server.channels.setdefault(channel, set()).add(self)
                self.transport.write(server_frame(subscription_succeeded(channel)))
        elif event == "pusher:ping":
            self.transport.write(server_frame(PONG))


class RawServer:
    """The bare-transport Pusher server. ``coalesce`` batches each connection's frames per tick."""

    def __init__(self, coalesce: bool = False, activity_timeout: int = 30) -> None:
        self.coalesce = coalesce
        self.activity_timeout = activity_timeout
        self.connections: set[_Connection] = set()
        self.channels: dict[str, set[_Connection]] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._socket_prefix = int.from_bytes(os.urandom(3), "big")
        self._socket_counter = itertools.count(1)
        self._dirty: list[_Connection] = []
        self._flush_scheduled = False

    @classmethod
    async def start(
        cls, host: str, port: int, *, coalesce: bool = False, backlog: int = 4096
    ) -> RawServer:
        self = cls(coalesce=coalesce)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, backlog=backlog, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def next_established(self) -> bytes:
        socket_id = f"{self._socket_prefix}.{next(self._socket_counter)}"
        return connection_established(socket_id, self.activity_timeout)

    def subscriber_count(self, channel: str) -> int:
        return len(self.channels.get(channel, ()))

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    async def publish(self, channel: str, frame: bytes) -> int:
        """Write a pre-built server frame to every subscriber of ``channel``; returns how many."""
        return self.publish_nowait(channel, frame)

    def publish_nowait(self, channel: str, frame: bytes) -> int:
        members = self.channels.get(channel)
        if not members:
            return 0
        if not self.coalesce:
            for connection in members:
                transport = connection.transport
                if transport is not None:
                    transport.write(frame)
            return len(members)
        dirty = self._dirty
        for connection in members:
            pending = connection.pending
            if pending is None:
                connection.pending = [frame]
                dirty.append(connection)
            else:
                pending.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return len(members)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            pending = connection.pending
            connection.pending = None
            transport = connection.transport
            if transport is not None and pending:
                transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
