"""What a Pusher webhook is: its events, its body, its signature, and which app sends which.

A webhook is one POST of a JSON body ``{"time_ms": ..., "events": [...]}`` signed with the app's
secret, as Pusher sends it (https://pusher.com/docs/channels/server_api/webhooks)::

    body = webhook_body([channel_occupied("presence-room")], time_ms=1_700_000_000_000)
    headers = signed_headers(app, body)   # Content-Type, X-Pusher-Key, X-Pusher-Signature
    verify_signature(app.secret, body, headers["X-Pusher-Signature"])  # what a receiver checks

The events of a node are :class:`Recorded` here, then stored as ``webhook_events`` rows
(:mod:`notiflow.realtime.webhooks.outbox`) and posted by
:mod:`notiflow.realtime.webhooks.sender`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import structlog

from notiflow.config import Settings, parse_webhook_events

log = structlog.get_logger(__name__)

__all__ = [
    "Recorded",
    "RecordedEvents",
    "WebhookApp",
    "WebhookName",
    "WebhookTiming",
    "cache_miss",
    "channel_occupied",
    "channel_vacated",
    "client_event",
    "member_added",
    "member_removed",
    "signed_headers",
    "verify_signature",
    "webhook_apps",
    "webhook_body",
]


class WebhookName(StrEnum):
    CHANNEL_OCCUPIED = "channel_occupied"
    CHANNEL_VACATED = "channel_vacated"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    CLIENT_EVENT = "client_event"
    CACHE_MISS = "cache_miss"


@dataclass(frozen=True, slots=True)
class WebhookApp:
    """One app's webhook: the receiver's URL, the key and secret that sign each POST, and the
    events the app wants."""

    app_id: str
    key: str
    secret: str
    url: str
    events: frozenset[str]

    def wants(self, name: str) -> bool:
        return name in self.events


@dataclass(frozen=True, slots=True)
class WebhookTiming:
    """How the sender posts: events per POST, the retries' backoff and horizon, the timeout."""

    batch_size: int = 100
    backoff_seconds: float = 1.0
    backoff_cap_seconds: float = 300.0
    retry_horizon_seconds: float = 86_400.0
    timeout_seconds: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookTiming:
        return cls(
            batch_size=settings.webhook_batch_size,
            backoff_seconds=settings.webhook_backoff_seconds,
            backoff_cap_seconds=settings.webhook_backoff_cap_seconds,
            retry_horizon_seconds=settings.webhook_retry_horizon_seconds,
            timeout_seconds=settings.webhook_timeout_seconds,
        )


def webhook_apps(settings: Settings) -> tuple[WebhookApp, ...]:
    """The apps whose webhooks are on: the default app (``NOTIFLOW_PUSHER_APP_*``) when
    ``NOTIFLOW_WEBHOOK_URL`` is set, and each app of ``NOTIFLOW_PUSHER_APPS`` with a
    ``webhook_url``. Everything downstream (the nodes' records, the outbox, one sender per app)
    is keyed by the app id."""
    apps: list[WebhookApp] = []
    if settings.webhook_url:
        apps.append(
            WebhookApp(
                app_id=settings.pusher_app_id,
                key=settings.pusher_app_key,
                secret=settings.pusher_app_secret,
                url=settings.webhook_url,
                events=parse_webhook_events(settings.webhook_events),
            )
        )
    apps.extend(
        WebhookApp(
            app_id=app.id,
            key=app.key,
            secret=app.secret,
            url=app.webhook_url,
            events=parse_webhook_events(app.webhook_events),
        )
        for app in settings.pusher_apps
        if app.webhook_url
    )
    return tuple(apps)


# ---------------------------------------------------------------------------- the events


def channel_occupied(channel: str) -> dict[str, Any]:
    return {"name": WebhookName.CHANNEL_OCCUPIED.value, "channel": channel}


def channel_vacated(channel: str) -> dict[str, Any]:
    return {"name": WebhookName.CHANNEL_VACATED.value, "channel": channel}


def member_added(channel: str, user_id: Any) -> dict[str, Any]:
    return {"name": WebhookName.MEMBER_ADDED.value, "channel": channel, "user_id": user_id}


def member_removed(channel: str, user_id: Any) -> dict[str, Any]:
    return {"name": WebhookName.MEMBER_REMOVED.value, "channel": channel, "user_id": user_id}


def client_event(
    channel: str, event: str, data: Any, socket_id: str, user_id: Any = None
) -> dict[str, Any]:
    """``user_id`` is there on presence channels only (the sender's member id)."""
    payload: dict[str, Any] = {
        "name": WebhookName.CLIENT_EVENT.value,
        "channel": channel,
        "event": event,
        "data": data,
        "socket_id": socket_id,
    }
    if user_id is not None:
        payload["user_id"] = user_id
    return payload


def cache_miss(channel: str) -> dict[str, Any]:
    return {"name": WebhookName.CACHE_MISS.value, "channel": channel}


# ---------------------------------------------------------------------------- body and signature


def webhook_body(events: Sequence[dict[str, Any]], *, time_ms: int) -> bytes:
    """The POSTed body: compact JSON, as the bytes that are signed."""
    return json.dumps(
        {"time_ms": time_ms, "events": list(events)}, separators=(",", ":"), ensure_ascii=False
    ).encode()


def signature(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the raw body with the app secret, in hex."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_headers(app: WebhookApp, body: bytes) -> dict[str, str]:
    # The Pusher SDKs accept a webhook only with exactly this Content-Type (npm lib/webhook.js).
    return {
        "Content-Type": "application/json",
        "X-Pusher-Key": app.key,
        "X-Pusher-Signature": signature(app.secret, body),
    }


def verify_signature(secret: str, body: bytes, received: str) -> bool:
    """What a receiver does: recompute the signature over the raw body, compare in constant
    time."""
    return hmac.compare_digest(signature(secret, body), received)


# ---------------------------------------------------------------------------- recorded events


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event a node recorded for an app, on its way to the outbox. ``source_id`` names where
    it was read from (a Redis stream entry), so that reading it twice stores it once."""

    app_id: str
    event: dict[str, Any]
    occurred_ms: int
    source_id: str | None = None


# A process that records events faster than its database takes them keeps this many waiting,
# then drops new ones (and says so): memory stays bounded while the database is away.
MAX_WAITING = 100_000


class RecordedEvents:
    """The events of a process that stores them itself (``notiflow serve`` without Redis):
    recorded without waiting, taken by the outbox's writer in the order they happened."""

    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self._waiting: deque[Recorded] = deque()
        self._added = asyncio.Event()
        self.dropped = 0

    def put(self, record: Recorded) -> None:
        if len(self._waiting) >= self.max_waiting:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("webhook_events_dropped", dropped=self.dropped, waiting=self.max_waiting)
            return
        self._waiting.append(record)
        self._added.set()

    def peek(self, limit: int) -> list[Recorded]:
        """Up to ``limit`` of the oldest waiting events, left in place until :meth:`done`."""
        return [self._waiting[index] for index in range(min(limit, len(self._waiting)))]

    def done(self, count: int) -> None:
        for _ in range(count):
            self._waiting.popleft()

    def __len__(self) -> int:
        return len(self._waiting)

    async def wait(self) -> None:
        """Until something is waiting."""
        while not self._waiting:
            self._added.clear()
            await self._added.wait()
