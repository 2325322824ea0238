"""Live notification events on ``private-notifications.{userId}`` (spec 000 §3, DESIGN §5, §7).

- ``NotificationCreated`` (payload: the NotificationData resource) when the push channel is
  allowed for that user and type. With push off, nothing is sent.
- ``UnreadCountChanged`` ``{"count", "tenant_id"}`` on every change of a user's unread count, so
  every tab and device keeps the same badge whatever the push setting.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.kit.errors import ServiceUnavailable
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Notification
from notiflow.notifications.events import NotificationRecord
from notiflow.notifications.schemas import NotificationData
from notiflow.notifications.unread import UserTenant
from notiflow.realtime.broadcast import Broadcaster, HubBroadcaster, LiveEvent

NOTIFICATION_CREATED = "NotificationCreated"
UNREAD_COUNT_CHANGED = "UnreadCountChanged"
COUNT_CHUNK = 5_000


CHANNEL_PREFIX = "private-notifications."


def user_channel(user_id: uuid.UUID | str) -> str:
    return f"{CHANNEL_PREFIX}{user_id}"


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
                data=NotificationData.from_model(record).model_dump_json(),
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
