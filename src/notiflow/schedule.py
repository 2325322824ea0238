"""The schedule of periodic jobs (spec 003 §9), in one place, and the loops that run it.

Exactly one scheduler runs it: ``notiflow serve`` in the embedded deployment, ``notiflow
scheduler`` in a scale-out one. Three kinds of entries:

- global cron entries (:func:`build_schedule`): inbox sync every 15 minutes, metrics every
  6 hours, the privacy sweep every minute, notification cleanup daily;
- per-workspace entries (:func:`workspace_jobs`): daily token refresh and weekly inbox
  archiving at the maintenance hour *in each workspace's own timezone* (spec 003 §14). Their
  next run is kept per workspace in ``workspace_schedules``, so a restart neither skips nor
  repeats one, and DST changes move the UTC instant with the wall clock;
- continuous loops: the due-post scanner (every few seconds, so posts go out within seconds of
  their time) and the outbox sweeper.

Entries only enqueue their job; jobs are idempotent, so a run that happens twice does no harm.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog
from croniter import croniter
from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.config import Settings
from notiflow.kit.db import database_unavailable
from notiflow.kit.ids import utcnow
from notiflow.kit.outages import DATABASE, REDIS, redis_unavailable
from notiflow.models import Workspace, WorkspaceSchedule

if TYPE_CHECKING:
    from notiflow.runtime import Runtime

log = structlog.get_logger(__name__)

UTC_ZONE = "UTC"
# How often the per-workspace table is looked at (a daily job is at most this late).
WORKSPACE_CHECK_SECONDS = 30.0


def next_run(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time after ``after`` that ``cron`` (read as wall time in ``timezone``) fires."""
    local = after.astimezone(ZoneInfo(timezone))
    upcoming: datetime = croniter(cron, local).get_next(datetime)
    return upcoming.astimezone(ZoneInfo(UTC_ZONE))


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    job: str
    cron: str  # minute hour day-of-month month day-of-week, in ``timezone``
    timezone: str
    description: str
    payload: dict[str, Any] | None = None

    def next_run(self, after: datetime) -> datetime:
        return next_run(self.cron, self.timezone, after)


@dataclass(frozen=True, slots=True)
class WorkspaceJob:
    """A job that runs for each workspace at a local time of that workspace."""

    job: str
    cron: str  # read in the workspace's timezone
    description: str


def build_schedule(settings: Settings) -> list[ScheduleEntry]:
    hour, zone = settings.maintenance_hour, settings.maintenance_timezone
    sync_minutes, metric_hours = (
        settings.inbox_sync_interval_minutes,
        settings.metrics_interval_hours,
    )
    return [
        ScheduleEntry(
            job="notifications.cleanup",
            cron=f"0 {hour} * * *",
            timezone=zone,
            description="Daily: delete notifications older than 90 days and read ones read "
            "more than 30 days ago (spec 003 §8.8, §14)",
        ),
        ScheduleEntry(
            job="inbox.sync_all",
            cron=f"*/{sync_minutes} * * * *",
            timezone=UTC_ZONE,
            description=f"Every {sync_minutes} minutes: sync comments and mentions of every "
            "workspace with connected accounts (spec 003 §8.3, §11.1)",
        ),
        ScheduleEntry(
            job="analytics.fetch_all_metrics",
            cron=f"0 */{metric_hours} * * *",
            timezone=UTC_ZONE,
            description=f"Every {metric_hours} hours: metric snapshots of published posts "
            "(spec 003 §8.4, §11.2)",
        ),
        ScheduleEntry(
            job="privacy.sweep",
            cron="* * * * *",
            timezone=UTC_ZONE,
            description="Every minute: run deletions whose grace period ended, pick up "
            "exports whose wake-up was lost, expire old export files (spec 003 §8.5, §8.6)",
        ),
    ]


def workspace_jobs(settings: Settings) -> list[WorkspaceJob]:
    hour = settings.maintenance_hour
    return [
        WorkspaceJob(
            job="social.refresh_tokens",
            cron=f"0 {hour} * * *",
            description=f"Daily at {hour:02d}:00 workspace time: refresh tokens expiring "
            f"within {settings.token_refresh_window_days} days (spec 003 §8.9)",
        ),
        WorkspaceJob(
            job="inbox.archive_old",
            cron=f"0 {hour} * * 0",
            description=f"Weekly, Sunday {hour:02d}:00 workspace time: archive inbox items "
            f"older than {settings.inbox_archive_days} days (spec 003 §8.10)",
        ),
    ]


def describe(settings: Settings, now: datetime | None = None) -> list[dict[str, str]]:
    now = now or utcnow()
    rows = [
        {
            "job": "delivery.sweep",
            "when": f"every {settings.sweep_interval_seconds:g} s",
            "next_run": "continuous",
            "description": "Hand out due retries and deliveries a crash left behind",
        },
        {
            "job": "content.scan_due_posts",
            "when": f"every {settings.publish_scan_interval_seconds:g} s",
            "next_run": "continuous",
            "description": "Claim post targets whose time came and dispatch content.publish_post "
            "per post (spec 003 §8.1, §8.2)",
        },
    ]
    for entry in build_schedule(settings):
        rows.append(
            {
                "job": entry.job,
                "when": f"{entry.cron} ({entry.timezone})",
                "next_run": entry.next_run(now).isoformat(),
                "description": entry.description,
            }
        )
    for job in workspace_jobs(settings):
        rows.append(
            {
                "job": job.job,
                "when": f"{job.cron} (each workspace's timezone)",
                "next_run": "per workspace",
                "description": job.description,
            }
        )
    return rows


# ---------------------------------------------------------------------- per-workspace entries


async def reschedule_workspace(
    session: AsyncSession, workspace: Workspace, settings: Settings
) -> None:
    """Recompute the workspace's next runs (its timezone changed). Flushes, never commits."""
    now = utcnow()
    jobs = {job.job: job for job in workspace_jobs(settings)}
    rows = (
        await session.scalars(
            select(WorkspaceSchedule).where(WorkspaceSchedule.workspace_id == workspace.id)
        )
    ).all()
    for row in rows:
        job = jobs.get(row.job_name)
        if job is not None:
            row.next_run_at = next_run(job.cron, workspace.timezone, now)
    await session.flush()


async def due_workspace_jobs(
    runtime: Runtime, now: datetime | None = None
) -> list[tuple[str, dict[str, str]]]:
    """Create the missing per-workspace rows, then claim the due ones (moving each to its next
    local run) and return the jobs to enqueue: ``(job name, payload)``."""
    now = now or utcnow()
    jobs = {job.job: job for job in workspace_jobs(runtime.settings)}
    due: list[tuple[str, dict[str, str]]] = []
    async with runtime.sessionmaker() as session:
        for job in jobs.values():
            missing = (
                await session.execute(
                    select(Workspace.id, Workspace.timezone)
                    .outerjoin(
                        WorkspaceSchedule,
                        and_(
                            WorkspaceSchedule.workspace_id == Workspace.id,
                            WorkspaceSchedule.job_name == job.job,
                        ),
                    )
                    .where(WorkspaceSchedule.id.is_(None))
                )
            ).all()
            for workspace_id, timezone in missing:
                session.add(
                    WorkspaceSchedule(
                        workspace_id=workspace_id,
                        job_name=job.job,
                        next_run_at=next_run(job.cron, timezone, now),
                    )
                )
        await session.flush()
        rows = (
            await session.execute(
                select(WorkspaceSchedule, Workspace.tenant_id, Workspace.timezone)
                .join(Workspace, Workspace.id == WorkspaceSchedule.workspace_id)
                .where(WorkspaceSchedule.next_run_at <= now)
                .order_by(WorkspaceSchedule.next_run_at)
                .limit(10_000)
            )
        ).all()
        for row, tenant_id, timezone in rows:
            entry = jobs.get(row.job_name)
            if entry is None:  # a job no longer in the schedule
                await session.delete(row)
                continue
            # Conditional: if another scheduler moved it first, it is theirs to run.
            claimed = await session.execute(
                update(WorkspaceSchedule)
                .where(
                    WorkspaceSchedule.id == row.id,
                    WorkspaceSchedule.next_run_at == row.next_run_at,
                )
                .values(next_run_at=next_run(entry.cron, timezone, now), last_run_at=now)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount == 1:  # type: ignore[attr-defined] # CursorResult has rowcount
                due.append(
                    (
                        entry.job,
                        {"workspace_id": str(row.workspace_id), "tenant_id": str(tenant_id)},
                    )
                )
        await session.commit()
    return due


# --------------------------------------------------------------------------------- the loops


async def run_schedule(runtime: Runtime) -> None:
    """Enqueue global entries when due and per-workspace jobs when theirs come (forever)."""
    schedule = build_schedule(runtime.settings)
    upcoming = {entry.job: entry.next_run(utcnow()) for entry in schedule}
    next_workspace_check = utcnow()
    while True:
        now = utcnow()
        for entry in schedule:
            if upcoming[entry.job] <= now:
                await _enqueue(runtime, entry.job, entry.payload or {})
                upcoming[entry.job] = entry.next_run(now)
        if now >= next_workspace_check:
            try:
                for job, payload in await due_workspace_jobs(runtime, now):
                    await _enqueue(runtime, job, payload)
            except Exception as error:
                if database_unavailable(error):
                    # Told once; the claims were not made, the next check finds them again.
                    DATABASE.failed(error, component="workspace_schedule")
                else:
                    log.exception("workspace_schedule_failed")
            else:
                DATABASE.recovered(component="workspace_schedule")
            next_workspace_check = now + timedelta(seconds=WORKSPACE_CHECK_SECONDS)
        wake = min([*upcoming.values(), next_workspace_check])
        await asyncio.sleep(max(0.05, min((wake - utcnow()).total_seconds(), 30.0)))


async def _enqueue(runtime: Runtime, job: str, payload: dict[str, Any]) -> None:
    if runtime.queue is None:
        return
    try:
        await runtime.queue.enqueue(job, payload)
    except Exception as error:
        if not redis_unavailable(error):
            log.exception("scheduled_job_enqueue_failed", job=job)
            return
        # Told once per outage, not per entry; the entry runs again at its next time.
        REDIS.failed(error, component="schedule", job=job)
        return
    REDIS.recovered(component="schedule")
    log.info("scheduled_job_enqueued", job=job, **payload)


def start_background(runtime: Runtime) -> list[asyncio.Task[None]]:
    """The scheduler's loops: the outbox sweeper, the due-post scanner and the schedule."""
    from notiflow.content.jobs import scan_forever
    from notiflow.delivery.jobs import sweep_forever

    settings = runtime.settings
    return [
        asyncio.create_task(sweep_forever(runtime, settings.sweep_interval_seconds)),
        asyncio.create_task(run_schedule(runtime)),
        asyncio.create_task(scan_forever(runtime, settings.publish_scan_interval_seconds)),
    ]
