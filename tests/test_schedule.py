"""The schedule: next runs in local time across DST, and the cleanup job it starts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.ids import utcnow
from notiflow.models import Notification
from notiflow.notifications.jobs import cleanup
from notiflow.notifications.service import NotificationPayload, NotificationService
from notiflow.notifications.types import NotificationType
from notiflow.runtime import Runtime
from notiflow.schedule import build_schedule, describe
from tests.conftest import MakeMember, commit, make_settings


def test_cleanup_runs_daily_at_the_local_maintenance_hour() -> None:
    entry = build_schedule(make_settings(maintenance_hour=3, maintenance_timezone="Asia/Baku"))[0]
    assert entry.job == "notifications.cleanup"
    after = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert entry.next_run(after) == datetime(2026, 11, 21, 23, 0, tzinfo=UTC)  # 03:00 in Baku


def test_local_hour_survives_the_end_of_daylight_saving_time() -> None:
    entry = build_schedule(
        make_settings(maintenance_hour=3, maintenance_timezone="America/New_York")
    )[0]
    # 2026-11-01: New York goes from UTC-4 to UTC-5 at 02:00 local
    before = entry.next_run(datetime(2026, 10, 31, 12, 0, tzinfo=UTC))
    after = entry.next_run(before + timedelta(minutes=1))
    assert before == datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # 03:00 EST
    assert after == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    earlier = entry.next_run(datetime(2026, 10, 30, 12, 0, tzinfo=UTC))
    assert earlier == datetime(2026, 10, 31, 7, 0, tzinfo=UTC)  # 03:00 EDT


def test_schedule_list_names_every_job_with_its_next_run() -> None:
    rows = describe(make_settings(), now=datetime(2026, 11, 21, 12, 0, tzinfo=UTC))
    assert [row["job"] for row in rows] == [
        "delivery.sweep",
        "content.scan_due_posts",
        "notifications.cleanup",
        "inbox.sync_all",
        "analytics.fetch_all_metrics",
        "privacy.sweep",
        "social.refresh_tokens",
        "inbox.archive_old",
    ]
    by_job = {row["job"]: row for row in rows}
    assert by_job["notifications.cleanup"]["next_run"] == "2026-11-22T03:00:00+00:00"
    assert by_job["inbox.sync_all"]["next_run"] == "2026-11-21T12:15:00+00:00"
    assert by_job["analytics.fetch_all_metrics"]["next_run"] == "2026-11-21T18:00:00+00:00"
    assert by_job["privacy.sweep"]["next_run"] == "2026-11-21T12:01:00+00:00"
    assert "each workspace's timezone" in by_job["social.refresh_tokens"]["when"]


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
    await cleanup(runtime, {})
    remaining = await service.list_for_user(member.id, member.tenant_id)
    assert [item.id for item in remaining.items] == [fresh.id]
