"""NotificationService: the notification core as routes and jobs use it.

It joins the four jobs of the core, each in its own module:

- :mod:`notiflow.notifications.sending`: ``send``, ``send_to_users``, ``send_to_tenant``
- :mod:`notiflow.notifications.feed`: the feed, the unread count, marking read, the ledger view
- :mod:`notiflow.notifications.preferences`: per-type preferences and the master switches
- :mod:`notiflow.notifications.retention`: ``delete_old``

The service takes a session, flushes and never commits: the edge that owns the transaction
(the request, the job, the CLI command) commits once and then runs the after-commit effects
queued here (cache invalidation, live events, delivery jobs).
"""

from __future__ import annotations

from notiflow.notifications.feed import NotificationFeed
from notiflow.notifications.preferences import NotificationPreferences
from notiflow.notifications.retention import NotificationRetention
from notiflow.notifications.sending import NotificationSender


class NotificationService(
    NotificationSender, NotificationFeed, NotificationPreferences, NotificationRetention
):
    """Sending, the feed, preferences and retention over one session (see the module doc)."""


__all__ = ["NotificationService"]
