"""The daily cleanup job (``notifications.cleanup``) deletes what is due and keeps the rest."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import Notification
from notiflow.notifications.jobs import CleanupPayload, cleanup
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationType
from tests.conftest import MakeMember, commit


async def test_the_cleanup_job_deletes_what_is_due(
    runtime: Runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    payload = NotificationPayload(NotificationType.NEW_COMMENT, "Comment", "Nice")
    old = await service.send(member.user, payload)
    fresh = await service.send(member.user, payload)
    await commit(session)
    await session.execute(
        update(Notification)
        .where(Notification.id == old.id)
        .values(created_at=utcnow() - timedelta(days=100))
    )
    await commit(session)
    await cleanup(runtime, CleanupPayload())
    remaining = await service.list_for_user(member.id, member.tenant_id)
    assert [item.id for item in remaining.items] == [fresh.id]
