"""The notification feed: reading, paging, counting unread and marking read.

Every read is scoped to one user in one tenant: another user's notification is a 404. A change
to the unread set drops the cached count and tells the user's clients after commit::

    page = await feed.list_for_user(user_id, tenant_id, NotificationFilters(is_read=False))
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Delete, Select, Update, delete, func, select, update

from notiflow.kit.bulk import chunks
from notiflow.kit.errors import NotFound
from notiflow.kit.ids import utcnow
from notiflow.kit.pagination import Cursor, Page, paginate
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Notification, NotificationDelivery
from notiflow.notifications.context import NotificationContext
from notiflow.notifications.types import (
    TYPE_REGISTRY,
    Category,
    NotificationChannel,
    NotificationType,
)


@dataclass(frozen=True, slots=True)
class NotificationFilters:
    type: NotificationType | None = None
    is_read: bool | None = None
    channel: NotificationChannel | None = None
    category: Category | None = None


def types_of(category: Category) -> list[str]:
    return [name.value for name, spec in TYPE_REGISTRY.items() if spec.category is category]


class NotificationFeed(NotificationContext):
    """A user's notifications in one tenant: the feed, the unread count, marking read."""

    async def get_for_user(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, notification_id: uuid.UUID
    ) -> Notification:
        """The user's own notification in this tenant, or 404 (never someone else's)."""
        notification: Notification | None = await self.session.scalar(
            select(Notification).where(
                Notification.id == notification_id,
                Notification.user_id == user_id,
                in_tenant(Notification, tenant_id),
            )
        )
        if notification is None:
            raise NotFound("notification not found")
        return notification

    async def mark_as_read(self, notification: Notification) -> Notification:
        if notification.read_at is None:
            now = utcnow()
            notification.read_at = now
            notification.seen_at = notification.seen_at or now
            await self.session.flush()
            self._after_unread_change([(notification.user_id, notification.tenant_id)])
        return notification

    async def mark_all_as_read(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> int:
        return await self._mark_read(user_id, tenant_id, None)

    async def mark_multiple_as_read(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> int:
        """Mark the given notifications read; ids that are not the user's are ignored."""
        return await self._mark_read(user_id, tenant_id, list(dict.fromkeys(ids)))

    async def _mark_read(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, ids: list[uuid.UUID] | None
    ) -> int:
        now = utcnow()
        statement = (
            update(Notification)
            .where(
                Notification.user_id == user_id,
                in_tenant(Notification, tenant_id),
                Notification.read_at.is_(None),
            )
            .values(read_at=now, seen_at=func.coalesce(Notification.seen_at, now), updated_at=now)
            .execution_options(synchronize_session=False)
        )
        updated = 0
        for chunk in [None] if ids is None else list(chunks(ids)):
            query = statement if chunk is None else statement.where(Notification.id.in_(chunk))
            cursor_result: Any = await self.session.execute(query)
            updated += cursor_result.rowcount or 0
        if updated:
            self._after_unread_change([(user_id, tenant_id)])
        return updated

    async def archive(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> int:
        """Take the user's notifications out of the feed and the unread count (kept, with
        their ledger, until retention removes them); ids not the user's are ignored."""
        now = utcnow()
        statement = (
            update(Notification)
            .where(
                Notification.user_id == user_id,
                in_tenant(Notification, tenant_id),
                Notification.archived_at.is_(None),
            )
            .values(archived_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return await self._change_each(statement, list(dict.fromkeys(ids)), user_id, tenant_id)

    async def delete(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> int:
        """Delete the user's notifications and their ledger rows; ids not the user's are
        ignored."""
        statement = (
            delete(Notification)
            .where(Notification.user_id == user_id, in_tenant(Notification, tenant_id))
            .execution_options(synchronize_session=False)
        )
        return await self._change_each(statement, list(dict.fromkeys(ids)), user_id, tenant_id)

    async def _change_each(
        self,
        statement: Update | Delete,
        ids: list[uuid.UUID],
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
    ) -> int:
        changed = 0
        for chunk in chunks(ids):
            cursor_result: Any = await self.session.execute(
                statement.where(Notification.id.in_(chunk))
            )
            changed += cursor_result.rowcount or 0
        if changed:
            self._after_unread_change([(user_id, tenant_id)])
        return changed

    async def list_for_user(
        self,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        filters: NotificationFilters | None = None,
        *,
        page: int = 1,
        per_page: int = 15,
        cursor: Cursor | None = None,
    ) -> Page[Notification]:
        """The user's feed, newest first. With ``cursor`` it pages by key (no totals);
        otherwise by page number with Laravel's totals. Both return ``next_cursor``."""
        return await paginate(
            self.session,
            self._feed_query(user_id, tenant_id, filters or NotificationFilters()),
            key=(Notification.created_at, Notification.id),
            position=lambda item: (item.created_at, item.id),
            page=page,
            per_page=per_page,
            cursor=cursor,
        )

    def _feed_query(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, filters: NotificationFilters
    ) -> Select[Notification]:
        query = (
            select(Notification)
            .where(
                Notification.user_id == user_id,
                in_tenant(Notification, tenant_id),
                Notification.archived_at.is_(None),
            )
            .order_by(Notification.created_at.desc(), Notification.id.desc())
        )
        if filters.type is not None:
            query = query.where(Notification.type == filters.type.value)
        if filters.channel is not None:
            query = query.where(Notification.channel == filters.channel.value)
        if filters.category is not None:
            query = query.where(Notification.type.in_(types_of(filters.category)))
        if filters.is_read is True:
            query = query.where(Notification.read_at.is_not(None))
        elif filters.is_read is False:
            query = query.where(Notification.read_at.is_(None))
        return query

    async def get_unread_count(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> int:
        cached, generation = await self.cache.get(user_id, tenant_id)
        if cached is not None:
            return cached
        count = await self.count_unread(user_id, tenant_id)
        await self.cache.store(user_id, tenant_id, generation, count)
        return count

    async def count_unread(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> int:
        """The unread count straight from the database (the cache's source of truth)."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(
                Notification.user_id == user_id,
                in_tenant(Notification, tenant_id),
                Notification.read_at.is_(None),
                Notification.archived_at.is_(None),
            )
        )
        return int(count or 0)

    async def get_recent(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, limit: int = 10
    ) -> list[Notification]:
        query = self._feed_query(user_id, tenant_id, NotificationFilters()).limit(limit)
        return list((await self.session.scalars(query)).all())

    async def list_deliveries(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, notification_id: uuid.UUID
    ) -> tuple[Notification, list[NotificationDelivery]]:
        """The ledger of one notification: every channel's status and reason."""
        notification = await self.get_for_user(user_id, tenant_id, notification_id)
        deliveries = (
            await self.session.scalars(
                select(NotificationDelivery)
                .where(NotificationDelivery.notification_id == notification.id)
                .order_by(NotificationDelivery.channel)
            )
        ).all()
        return notification, list(deliveries)


__all__ = ["NotificationFeed", "NotificationFilters"]
