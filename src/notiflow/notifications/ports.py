"""What a job or service that notifies people needs from the process it runs in.

A Protocol, so that jobs depend on exactly this and never on the process's composition root
(:mod:`notiflow.main.runtime`), which satisfies it.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.queue import JobContext
from notiflow.notifications.service import NotificationService


class NotifyingContext(JobContext, Protocol):
    def notification_service(self, session: AsyncSession) -> NotificationService:
        """The notification service working in ``session`` (its unit of work)."""
        ...
