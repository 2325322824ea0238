"""A local HTTP server that records what is POSTed to it (a Slack incoming webhook, a Pusher
webhook receiver).

``received`` holds the parsed JSON bodies, ``requests`` the raw bodies with their headers (what a
signature is checked on). ``stop()`` then ``start()`` again listens on the same port: in between,
connections are refused, as they are to a receiver that is down.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReceivedRequest:
    headers: dict[str, str]  # names in lower case
    body: bytes


class WebhookReceiver:
    def __init__(self, status: int = 200, port: int = 0) -> None:
        self.status = status
        self.port = port
        self.received: list[dict[str, Any]] = []
        self.requests: list[ReceivedRequest] = []
        self.arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        if self.port == 0:
            raise RuntimeError("the receiver has no port before its first start")
        return f"http://127.0.0.1:{self.port}/services/T000/B000/XXXX"

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append(ReceivedRequest(headers, body))
        self.received.append(json.loads(body))
        self.arrived.set()
        status_line = f"HTTP/1.1 {self.status} OK\r\n"
        writer.write(status_line.encode() + b"Content-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()
