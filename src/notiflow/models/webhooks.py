"""The webhook outbox: one row per Pusher webhook event of an app, until its receiver took it."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from notiflow.kit.db import Base
from notiflow.kit.ids import utcnow


class WebhookStatus(StrEnum):
    PENDING = "pending"  # waiting for its (next) POST
    SENDING = "sending"  # claimed by a sender until lease_until
    SENT = "sent"  # the receiver answered 2xx: never posted again
    FAILED = "failed"  # still refused at its horizon: a failed_jobs row says so


class WebhookEvent(Base):
    """One event (``{"name": "channel_occupied", "channel": ...}``) waiting to be POSTed.

    ``id`` is the order the events happened in (the order they are sent in): an integer that
    grows with each insert, not a UUID, so that "the oldest" is the primary key's order.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (Index(None, "app_id", "status", "id"),)

    # BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-incrementing rowid.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    app_id: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(32))
    # The event object exactly as it goes into the POSTed body's "events" list.
    event: Mapped[dict[str, Any]] = mapped_column()
    # Where it came from (a Redis stream entry id), so that reading it twice stores it once.
    source_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    status: Mapped[str] = mapped_column(String(16), default=WebhookStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A try that fails after this gives the event up (NOTIFLOW_WEBHOOK_RETRY_HORIZON_SECONDS).
    expires_at: Mapped[datetime] = mapped_column()
    claim_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # When it happened on the node (the order of the rows; the horizon counts from it).
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
