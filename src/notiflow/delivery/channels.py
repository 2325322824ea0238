"""The contract between the delivery worker and each channel.

The worker claims a ledger row (``notification_deliveries``), re-checks that it should still be
sent, then hands a :class:`DeliveryContext` to the channel's :class:`ChannelSender`, outside any
database transaction. The sender does the network I/O and answers with a :class:`SendResult`;
the worker records it (sent, retry later, or failed) in a new transaction.

A sender never raises for a delivery problem: it classifies it. ``retry`` is for what may work
later (connection refused, 4xx SMTP replies, HTTP 429/5xx); ``failed`` is for what never will
(an address the server rejects with 5xx, a push endpoint answering 404/410, a user without a
verified phone). An exception escaping ``send`` is treated as ``retry`` and logged.
``outcome_unknown`` is for a message the provider may or may not have taken (an SMTP server that
hung up after the whole message, before its reply): it is recorded as such and not sent again.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.config import Settings
from notiflow.models import Notification, User
from notiflow.notifications.types import NotificationChannel


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    # Nothing to deliver to, and nothing wrong: e.g. no browser subscribed to Web Push. Recorded
    # as ``suppressed`` with the reason, without a failed job or an alert.
    SKIPPED = "skipped"
    # Handed over after the commit point, but the provider's answer never came: it may have been
    # delivered. Sending again could make two copies, so it is recorded and left alone.
    UNKNOWN = "outcome_unknown"


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    provider_message_id: str | None = None
    # What went wrong, for people: stored as the ledger's last_error and, when final, as the
    # notification's failure_reason.
    error: str | None = None

    @classmethod
    def sent(cls, provider_message_id: str | None = None) -> SendResult:
        return cls(Outcome.SENT, provider_message_id=provider_message_id)

    @classmethod
    def retry(cls, error: str) -> SendResult:
        return cls(Outcome.RETRY, error=error)

    @classmethod
    def failed(cls, error: str) -> SendResult:
        return cls(Outcome.FAILED, error=error)

    @classmethod
    def skipped(cls, reason: str) -> SendResult:
        return cls(Outcome.SKIPPED, error=reason)

    @classmethod
    def unknown(cls, error: str, provider_message_id: str | None = None) -> SendResult:
        return cls(Outcome.UNKNOWN, provider_message_id=provider_message_id, error=error)


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    delivery_id: uuid.UUID
    attempt: int  # 1 for the first try
    notification: Notification  # detached, fully loaded
    user: User  # detached, fully loaded
    settings: Settings
    # For senders that must read or change data of their own (Web Push deletes dead
    # subscriptions); each use is a short transaction of its own.
    sessionmaker: async_sessionmaker[AsyncSession]
    # Called by a sender right before the step that cannot be taken back (the end of an SMTP
    # DATA): it records the delivery as sent, so a crash after the provider accepted it cannot
    # cause a second copy. Raises LeaseLost when another worker took the delivery over; the
    # sender must then abandon the message.
    commit_point: Callable[[], Awaitable[None]] | None = None


class LeaseLost(Exception):
    """This worker no longer owns the delivery."""


class ChannelSender(Protocol):
    channel: NotificationChannel

    async def send(self, context: DeliveryContext) -> SendResult: ...

    async def close(self) -> None: ...
