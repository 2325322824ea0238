"""The schedule: next runs in local time across DST, and runs that come due while Redis is down."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis
from sqlalchemy import select, update

from notiflow.kit.ids import utcnow
from notiflow.kit.queue import JobQueue, build_broker
from notiflow.main.jobs import ALL_JOBS
from notiflow.main.runtime import Runtime
from notiflow.models import WorkspaceSchedule
from notiflow.models.tenancy import Role
from notiflow.schedule import (
    ScheduleEntry,
    build_schedule,
    describe,
    due_workspace_jobs,
    run_schedule,
)
from tests.conftest import MakeMember, make_settings
from tests.delivery.processes import eventually
from tests.fault_servers import OwnRedis


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
        "tenancy.sweep_invitations",
        "social.refresh_tokens",
        "inbox.archive_old",
    ]
    by_job = {row["job"]: row for row in rows}
    assert by_job["notifications.cleanup"]["next_run"] == "2026-11-22T03:00:00+00:00"
    assert by_job["inbox.sync_all"]["next_run"] == "2026-11-21T12:15:00+00:00"
    assert by_job["analytics.fetch_all_metrics"]["next_run"] == "2026-11-21T18:00:00+00:00"
    assert by_job["privacy.sweep"]["next_run"] == "2026-11-21T12:01:00+00:00"
    assert "each workspace's timezone" in by_job["social.refresh_tokens"]["when"]


async def _queued_jobs(redis_url: str, stream: str) -> Counter[str]:
    """The jobs waiting in the queue's Redis stream, by name."""
    client = Redis.from_url(redis_url)
    try:
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    return Counter(json.loads(fields[b"data"])["task_name"] for _, fields in entries)


async def test_runs_due_while_redis_is_down_go_out_once_when_it_is_back(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    created = await client.post(
        "/api/v1/workspaces", json={"name": "Brand", "timezone": "UTC"}, headers=admin.headers
    )
    assert created.status_code == 201
    with OwnRedis() as redis:
        queue = JobQueue(build_broker(redis.url), ALL_JOBS)
        runtime.queue = queue
        stream = queue.broker.queue_name  # type: ignore[attr-defined]  # the Redis broker's
        await due_workspace_jobs(runtime)  # the workspace's rows, next run tomorrow
        async with runtime.sessionmaker() as session:  # its daily run has come
            await session.execute(
                update(WorkspaceSchedule)
                .where(WorkspaceSchedule.job_name == "social.refresh_tokens")
                .values(next_run_at=utcnow() - timedelta(hours=1))
            )
            await session.commit()
        # A global entry that comes due during the outage, then not for a minute.
        due_at = utcnow() + timedelta(seconds=2)
        entry = ScheduleEntry("privacy.sweep", f"* * * * * {due_at.second}", "UTC", "test")

        redis.stop()
        loop = asyncio.create_task(run_schedule(runtime, [entry]))
        try:
            await asyncio.sleep(max(0.0, (due_at - utcnow()).total_seconds()) + 2.0)
            async with runtime.sessionmaker() as session:
                still_due = await session.scalar(
                    select(WorkspaceSchedule.next_run_at).where(
                        WorkspaceSchedule.job_name == "social.refresh_tokens"
                    )
                )
            assert still_due is not None
            assert still_due <= utcnow(), "the run was skipped"
            redis.start()  # empty

            async def both_queued() -> bool:
                jobs = await _queued_jobs(redis.url, stream)
                return jobs["privacy.sweep"] >= 1 and jobs["social.refresh_tokens"] >= 1

            await eventually(both_queued, timeout=20)
            await asyncio.sleep(1.0)  # time for a second copy to show up, if there were one
            jobs = await _queued_jobs(redis.url, stream)
            assert (jobs["privacy.sweep"], jobs["social.refresh_tokens"]) == (1, 1), jobs
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            await queue.close()
            runtime.queue = None
        async with runtime.sessionmaker() as session:
            moved = await session.scalar(
                select(WorkspaceSchedule.next_run_at).where(
                    WorkspaceSchedule.job_name == "social.refresh_tokens"
                )
            )
        assert moved is not None
        assert moved > utcnow(), "the next run is its next local time"
