"""``notiflow_notifications_created_total{type}``: counted after each commit, by type."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from notiflow.kit.metrics import record_notifications_created
from notiflow.notifications.events import NotificationRecord
from notiflow.notifications.unread import UserTenant


class CountCreated:
    """A listener of :class:`~notiflow.notifications.events.NotificationEvents`: one counter
    increment per type and commit, however many recipients a send had."""

    async def notifications_created(self, records: Sequence[NotificationRecord]) -> None:
        for notification_type, count in Counter(record.type for record in records).items():
            record_notifications_created(notification_type, count)

    async def unread_counts_changed(self, keys: Sequence[UserTenant]) -> None:
        return None
