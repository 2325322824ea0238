"""What the notification services share: the session, the unread-count cache, the live events.

Each job of the notification core (sending, the feed, preferences, retention) is a class of its
own module built on :class:`NotificationContext`; :class:`~notiflow.notifications.service.
NotificationService` joins them into the one service routes and jobs are handed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.after_commit import after_commit
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.unread import UnreadCountCache, UserTenant


class NotificationContext:
    def __init__(
        self,
        session: AsyncSession,
        *,
        cache: UnreadCountCache,
        events: NotificationEvents,
        push_rollout: str | int = "all",
        web_push_configured: bool | None = None,
    ) -> None:
        self.session = session
        self.cache = cache
        self.events = events
        self.push_rollout = push_rollout
        # Whether Web Push can be sent at all (VAPID keys set). When known, a push delivery with
        # nothing to deliver to (no keys, or a user without a subscribed browser) is recorded
        # as suppressed at once, instead of waking a worker to find that out. None: unknown,
        # every allowed push delivery goes to the worker.
        self.web_push_configured = web_push_configured

    def _after_unread_change(self, keys: Iterable[UserTenant]) -> None:
        """After commit: drop the cached unread counts of ``keys`` and tell their clients."""
        changed = list(keys)

        async def invalidate() -> None:
            await self._unread_changed(changed)

        after_commit(self.session, invalidate)

    async def _unread_changed(self, keys: Sequence[UserTenant]) -> None:
        if not keys:
            return
        await self.cache.invalidate(keys)
        await self.events.unread_counts_changed(keys)


__all__ = ["NotificationContext"]
