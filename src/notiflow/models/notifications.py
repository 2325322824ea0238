"""Notifications, preferences, the delivery ledger, idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from notiflow.kit.db import Base, IdMixin, TimestampMixin
from notiflow.kit.ids import utcnow


class Notification(IdMixin, TimestampMixin, Base):
    __tablename__ = "notifications"
    __table_args__ = (
        # The feed's three indexes: by user, by user and read state, by time.
        Index(None, "user_id", "read_at"),
        Index(None, "tenant_id", "created_at"),
        Index(None, "user_id", "type"),
        # The feed (newest first, keyset on created_at, id) and the unread badge.
        # Partial: the feed never shows archived rows, so page-1 totals are index-only counts.
        Index(
            "ix_notifications_feed",
            "user_id",
            "tenant_id",
            "created_at",
            "id",
            postgresql_where=text("archived_at IS NULL"),
            sqlite_where=text("archived_at IS NULL"),
        ),
        Index(
            "ix_notifications_unread",
            "user_id",
            "tenant_id",
            postgresql_where=text("read_at IS NULL AND archived_at IS NULL"),
            sqlite_where=text("read_at IS NULL AND archived_at IS NULL"),
        ),
        UniqueConstraint("user_id", "channel", "dedupe_key"),
        # Replay of missed live events: a user's notifications after a sequence, in order.
        Index(
            "ix_notifications_user_sequence",
            "user_id",
            "sequence",
            unique=True,
            postgresql_where=text("sequence IS NOT NULL"),
            sqlite_where=text("sequence IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(50))
    channel: Mapped[str] = mapped_column(String(20), default="in_app", server_default="in_app")
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    action_url: Mapped[str | None] = mapped_column(String(255), default=None)
    icon: Mapped[str | None] = mapped_column(String(255), default=None)
    read_at: Mapped[datetime | None] = mapped_column(default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)
    failure_reason: Mapped[str | None] = mapped_column(String(255), default=None)
    seen_at: Mapped[datetime | None] = mapped_column(default=None)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)
    event_id: Mapped[uuid.UUID] = mapped_column(index=True)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), default=None)
    # The user's live event sequence of its NotificationCreated (docs/realtime.md); None when
    # no live event was sent for it (push was not allowed).
    sequence: Mapped[int | None] = mapped_column(BigInteger, default=None)


class UserSequence(Base):
    """The last live event sequence handed out for a user, across tenants. Its row lock orders
    a user's concurrent sends: sequence order is commit order."""

    __tablename__ = "user_sequences"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    last_sequence: Mapped[int] = mapped_column(BigInteger)


class NotificationPreference(IdMixin, TimestampMixin, Base):
    __tablename__ = "notification_preferences"
    __table_args__ = (UniqueConstraint("user_id", "notification_type"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    notification_type: Mapped[str] = mapped_column(String(50))
    in_app_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    email_enabled: Mapped[bool] = mapped_column(default=True, server_default=true())
    push_enabled: Mapped[bool] = mapped_column(default=False, server_default=false())


class NotificationDelivery(IdMixin, TimestampMixin, Base):
    """One channel of one notification: the ledger entry and the outbox row."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "channel"),
        Index(None, "status", "next_attempt_at"),
        # The tenant's ledger search: one tenant's rows, newest first, keyset on (created_at, id).
        Index("ix_notification_deliveries_tenant_ledger", "tenant_id", "created_at", "id"),
    )

    notification_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notifications.id", ondelete="CASCADE")
    )
    # The notification's tenant and user, copied for scoping and metrics. No foreign keys: the
    # notification's own keys already guarantee them and cascade; two more checks per ledger row
    # cost 40,000 trigger calls per 10,000-member send.
    tenant_id: Mapped[uuid.UUID] = mapped_column()
    user_id: Mapped[uuid.UUID] = mapped_column()
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(50), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)


class IdempotencyKey(IdMixin, Base):
    """The first response to a request carrying an ``Idempotency-Key``, replayed for 24 h."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id", "key"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class PushSubscription(IdMixin, Base):
    """A browser's or device's Web Push subscription (RFC 8030); deleted when the push service
    answers 404/410 for it."""

    __tablename__ = "push_subscriptions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(Text, unique=True)
    p256dh: Mapped[str] = mapped_column(String(255))
    auth: Mapped[str] = mapped_column(String(255))
    user_agent: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
