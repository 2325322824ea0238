"""Notification jobs: ``notifications.cleanup``."""

from __future__ import annotations

from typing import Any

import structlog

from notiflow.kit.queue import Job, JobPayload
from notiflow.kit.uow import unit_of_work
from notiflow.notifications.ports import NotifyingContext

log = structlog.get_logger(__name__)


class CleanupPayload(JobPayload):
    """Days after which a notification is deleted, read or not."""

    days_old: int = 90


async def cleanup(context: NotifyingContext, payload: CleanupPayload) -> None:
    """Delete notifications older than 90 days and read ones read more than 30 days ago."""
    days = payload.days_old
    async with unit_of_work(context.sessionmaker) as session:
        deleted = await context.notification_service(session).delete_old(days)
    log.info("notifications_cleanup", job="notifications.cleanup", deleted=deleted)


JOBS: list[Job[NotifyingContext, Any]] = [Job("notifications.cleanup", cleanup, CleanupPayload)]
