"""Broadcast drivers: where notiflow's own live events go (``NOTIFLOW_BROADCAST_DRIVER``).

- ``builtin``: the hub of notiflow's WebSocket server (in process, or via Redis to other nodes);
- ``pusher``: any Pusher-compatible HTTP API (managed Pusher, Soketi, Reverb, another notiflow),
  signed as the ``pusher`` SDKs sign;
- ``log``: one structured log line per event (development without a browser);
- ``null``: nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
import structlog

from notiflow.realtime.hub import Hub
from notiflow.realtime.signing import body_md5, request_signature

log = structlog.get_logger(__name__)

# Pusher accepts at most 10 events per batch request.
PUSHER_BATCH_LIMIT = 10


@dataclass(frozen=True, slots=True)
class LiveEvent:
    channel: str
    name: str
    data: str  # already JSON-encoded, as the Pusher protocol carries it


class Broadcaster(Protocol):
    async def publish(self, events: Sequence[LiveEvent]) -> None: ...

    async def occupied(self, prefix: str) -> set[str] | None:
        """The channels with this prefix that have subscribers anywhere, or None when unknown
        (then everything is published)."""
        ...

    async def close(self) -> None: ...


class HubBroadcaster:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def publish(self, events: Sequence[LiveEvent]) -> None:
        for event in events:
            await self.hub.publish(event.channel, event.name, event.data)

    async def occupied(self, prefix: str) -> set[str] | None:
        return set(await self.hub.channel_counts(prefix))

    async def close(self) -> None:
        return None


class PusherHttpBroadcaster:
    """Sends events through a Pusher HTTP API with ``POST /apps/{id}/batch_events``."""

    def __init__(
        self,
        *,
        app_id: str,
        key: str,
        secret: str,
        base_url: str,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.app_id = app_id
        self.key = key
        self.secret = secret
        self.client = client or httpx.AsyncClient(base_url=base_url, timeout=5.0)

    async def publish(self, events: Sequence[LiveEvent]) -> None:
        for start in range(0, len(events), PUSHER_BATCH_LIMIT):
            chunk = events[start : start + PUSHER_BATCH_LIMIT]
            body = json.dumps(
                {"batch": [{"channel": e.channel, "name": e.name, "data": e.data} for e in chunk]}
            ).encode()
            path = f"/apps/{self.app_id}/batch_events"
            params = {
                "auth_key": self.key,
                "auth_timestamp": str(int(time.time())),
                "auth_version": "1.0",
                "body_md5": body_md5(body),
            }
            params["auth_signature"] = request_signature(self.secret, "POST", path, params)
            response = await self.client.post(
                path,
                params=params,
                content=body,
                headers={"Content-Type": "application/json"},
            )
            if response.status_code >= 400:
                log.warning(
                    "pusher_publish_failed", status=response.status_code, body=response.text[:200]
                )

    async def occupied(self, prefix: str) -> set[str] | None:
        return None

    async def close(self) -> None:
        await self.client.aclose()


class LogBroadcaster:
    async def publish(self, events: Sequence[LiveEvent]) -> None:
        for event in events:
            log.info("live_event", channel=event.channel, event_name=event.name, data=event.data)

    async def occupied(self, prefix: str) -> set[str] | None:
        return None

    async def close(self) -> None:
        return None


class NullBroadcaster:
    async def publish(self, events: Sequence[LiveEvent]) -> None:
        return None

    async def occupied(self, prefix: str) -> set[str] | None:
        return set()

    async def close(self) -> None:
        return None
