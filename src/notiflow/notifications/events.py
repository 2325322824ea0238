"""What the notification core tells the rest of the system after a commit.

Real-time broadcasting and delivery jobs subscribe here; the core does not know who listens.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from notiflow.kit.outages import told_as_outage
from notiflow.notifications.unread import UserTenant

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class NotificationRecord:
    """A stored notification as listeners see it, plus the decisions taken when it was sent."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    event_id: uuid.UUID
    type: str
    channel: str
    title: str
    message: str
    data: dict[str, Any] | None
    action_url: str | None
    icon: str | None
    read_at: datetime | None
    created_at: datetime
    push_allowed: bool
    pending_delivery_ids: tuple[uuid.UUID, ...] = ()
    # The user's live event sequence (set exactly when push_allowed).
    sequence: int | None = None


class NotificationListener(Protocol):
    async def notifications_created(self, records: Sequence[NotificationRecord]) -> None: ...

    async def unread_counts_changed(self, keys: Sequence[UserTenant]) -> None: ...


class NotificationEvents:
    """Fans each event out to every registered listener; one failing listener does not stop
    the others (durable work is recovered from the database). A listener failing
    because Redis or the database is down is part of an outage, told once for the process
    (:mod:`notiflow.kit.outages`), not a traceback per send."""

    def __init__(self) -> None:
        self._listeners: list[NotificationListener] = []

    def subscribe(self, listener: NotificationListener) -> None:
        self._listeners.append(listener)

    async def notifications_created(self, records: Sequence[NotificationRecord]) -> None:
        for listener in self._listeners:
            try:
                await listener.notifications_created(records)
            except Exception as error:
                _failed(listener, error)

    async def unread_counts_changed(self, keys: Sequence[UserTenant]) -> None:
        for listener in self._listeners:
            try:
                await listener.unread_counts_changed(keys)
            except Exception as error:
                _failed(listener, error)


def _failed(listener: NotificationListener, error: Exception) -> None:
    name = type(listener).__name__
    if not told_as_outage(error, component="notification_listener", listener=name):
        log.exception("notification_listener_failed", listener=name)
