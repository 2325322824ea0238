"""Notification retention: deleting old notifications."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, or_

from notiflow.kit.errors import InvalidInput
from notiflow.kit.ids import utcnow
from notiflow.models import Notification
from notiflow.notifications.context import NotificationContext


class NotificationRetention(NotificationContext):
    """Deletes what is past its retention period, dropping the unread counts it changes."""

    async def delete_old(self, days_old: int = 90, *, read_days_old: int = 30) -> int:
        """Delete notifications older than ``days_old`` days, and read ones whose ``read_at`` is
        older than ``read_days_old`` days. Returns how many were deleted."""
        if days_old < 1 or read_days_old < 1:
            raise InvalidInput("retention periods must be at least one day")
        now = utcnow()
        cutoff = now - timedelta(days=days_old)
        read_cutoff = now - timedelta(days=read_days_old)
        read_result: Any = await self.session.execute(
            delete(Notification).where(
                or_(
                    and_(Notification.read_at.is_not(None), Notification.read_at < read_cutoff),
                    and_(Notification.read_at.is_not(None), Notification.created_at < cutoff),
                )
            )
        )
        unread_deleted = (
            await self.session.execute(
                delete(Notification)
                .where(Notification.read_at.is_(None), Notification.created_at < cutoff)
                .returning(Notification.user_id, Notification.tenant_id)
            )
        ).all()
        if unread_deleted:
            self._after_unread_change({(row.user_id, row.tenant_id) for row in unread_deleted})
        return int(read_result.rowcount or 0) + len(unread_deleted)


__all__ = ["NotificationRetention"]
