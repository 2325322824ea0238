"""Live notification events on ``private-notifications.{userId}``.

- ``NotificationCreated`` (payload: the NotificationData resource) when the push channel is
  allowed for that user and type. With push off, nothing is sent.
- ``UnreadCountChanged`` ``{"count", "tenant_id"}`` on every change of a user's unread count, so
  every tab and device keeps the same badge whatever the push setting.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.kit.errors import ServiceUnavailable
from notiflow.kit.ids import utcnow
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Membership, Notification
from notiflow.notifications.events import NotificationRecord
from notiflow.notifications.schemas import NotificationData
from notiflow.notifications.sequences import current_sequence
from notiflow.notifications.unread import UserTenant
from notiflow.realtime.broadcast import Broadcaster, HubBroadcaster, LiveEvent
from notiflow.realtime.replay import (
    NOTIFICATION_CREATED,
    UNREAD_COUNT_CHANGED,
    ReplayBatch,
    ResyncReason,
)

COUNT_CHUNK = 5_000


CHANNEL_PREFIX = "private-notifications."


def user_channel(user_id: uuid.UUID | str) -> str:
    return f"{CHANNEL_PREFIX}{user_id}"


class NotificationEventData(NotificationData):
    """``NotificationCreated``'s data: the NotificationData resource and the user's live event
    sequence (what a client tells ``/broadcasting/auth`` it has seen, to be replayed the rest)."""

    sequence: int | None

    @classmethod
    def of(
        cls, notification: Notification | NotificationRecord, sequence: int | None
    ) -> NotificationEventData:
        return cls(**dict(NotificationData.from_model(notification)), sequence=sequence)


class RealtimeNotifier:
    def __init__(
        self, broadcaster: Broadcaster, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.broadcaster = broadcaster
        self.sessionmaker = sessionmaker

    async def _online(self) -> set[str] | None:
        """The users' channels with a subscriber anywhere (None: unknown, publish to all).

        While the backplane is down only this process's own subscribers can be reached (the
        documented outage mode, docs/realtime.md): the hub answers for them, so a send neither
        fails nor publishes to a whole tenant that nobody here listens to.
        """
        try:
            return await self.broadcaster.occupied(CHANNEL_PREFIX)
        except ServiceUnavailable:
            if not isinstance(self.broadcaster, HubBroadcaster):
                raise
            local = self.broadcaster.hub.channels
            return {name for name in local if name.startswith(CHANNEL_PREFIX)}

    async def notifications_created(self, records: Sequence[NotificationRecord]) -> None:
        online = await self._online()
        events = [
            LiveEvent(
                channel=user_channel(record.user_id),
                name=NOTIFICATION_CREATED,
                data=NotificationEventData.of(record, record.sequence).model_dump_json(),
            )
            for record in records
            if record.push_allowed and (online is None or user_channel(record.user_id) in online)
        ]
        if events:
            await self.broadcaster.publish(events)

    async def unread_counts_changed(self, keys: Sequence[UserTenant]) -> None:
        # Only users with an open connection anywhere need a badge update (a tenant-wide send
        # reaches thousands, of whom few are online); the others read the count when they come.
        online = await self._online()
        if online is not None:
            keys = [key for key in keys if user_channel(key[0]) in online]
        if not keys:
            return
        counts = await self._counts(keys)
        await self.broadcaster.publish(
            [
                LiveEvent(
                    channel=user_channel(user_id),
                    name=UNREAD_COUNT_CHANGED,
                    data=json.dumps(
                        {"count": counts.get((user_id, tenant_id), 0), "tenant_id": str(tenant_id)}
                    ),
                )
                for user_id, tenant_id in dict.fromkeys(keys)
            ]
        )

    async def _counts(self, keys: Sequence[UserTenant]) -> dict[UserTenant, int]:
        """Unread counts of many users in one grouped query per tenant and chunk."""
        users_by_tenant: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        for user_id, tenant_id in dict.fromkeys(keys):
            users_by_tenant[tenant_id].append(user_id)
        counts: dict[UserTenant, int] = {}
        async with self.sessionmaker() as session:
            for tenant_id, user_ids in users_by_tenant.items():
                for start in range(0, len(user_ids), COUNT_CHUNK):
                    rows = await session.execute(
                        select(Notification.user_id, func.count())
                        .where(
                            in_tenant(Notification, tenant_id),
                            Notification.user_id.in_(user_ids[start : start + COUNT_CHUNK]),
                            Notification.read_at.is_(None),
                            Notification.archived_at.is_(None),
                        )
                        .group_by(Notification.user_id)
                    )
                    for user_id, count in rows:
                        counts[(user_id, tenant_id)] = int(count)
        return counts


class DatabaseReplaySource:
    """The replay source of ``notiflow.realtime.replay`` over the database: a user's missed live
    events and unread counts, in the tenants they are a member of (as the feed shows them)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_events: int,
        max_age_seconds: float,
        concurrency: int = 8,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.max_events = max_events
        self.max_age = timedelta(seconds=max_age_seconds)
        # A reconnect storm (a node restarted) queues here rather than for the pool.
        self._slots = asyncio.Semaphore(concurrency)

    async def replay(self, user_id: str, after: int | None) -> ReplayBatch:
        user = uuid.UUID(user_id)
        async with self._slots, self.sessionmaker() as session:
            # The current sequence first: every notification up to it has committed (its
            # counter row was locked until then), so (after, sequence] is complete.
            sequence = await current_sequence(session, user)
            unread = await self._unread(session, user)
            if after is None:
                return ReplayBatch(sequence, unread=unread)
            if after > sequence:
                return ReplayBatch(sequence, resync=ResyncReason.UNKNOWN_SEQUENCE, unread=unread)
            missed = (
                await session.scalars(
                    select(Notification)
                    .join(
                        Membership,
                        and_(
                            Membership.user_id == Notification.user_id,
                            in_tenant(Membership, Notification.tenant_id),
                        ),
                    )
                    .where(
                        Notification.user_id == user,
                        Notification.sequence > after,
                        Notification.sequence <= sequence,
                        Notification.archived_at.is_(None),
                    )
                    .order_by(Notification.sequence)
                    .limit(self.max_events + 1)
                )
            ).all()
        if len(missed) > self.max_events or (
            missed and missed[0].created_at < utcnow() - self.max_age
        ):
            return ReplayBatch(sequence, resync=ResyncReason.WINDOW, unread=unread)
        events = [NotificationEventData.of(row, row.sequence).model_dump_json() for row in missed]
        return ReplayBatch(sequence, events=events, unread=unread)

    @staticmethod
    async def _unread(session: AsyncSession, user: uuid.UUID) -> list[tuple[str, int]]:
        """The unread count of each tenant the user is a member of (0 included)."""
        rows = await session.execute(
            select(Membership.tenant_id, func.count(Notification.id))
            .outerjoin(
                Notification,
                and_(
                    Notification.user_id == Membership.user_id,
                    in_tenant(Notification, Membership.tenant_id),
                    Notification.read_at.is_(None),
                    Notification.archived_at.is_(None),
                ),
            )
            .where(Membership.user_id == user)
            .group_by(Membership.tenant_id)
            .order_by(Membership.tenant_id)
        )
        return [(str(tenant_id), int(count)) for tenant_id, count in rows]
