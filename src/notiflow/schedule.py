"""The schedule of periodic jobs, in one place, and the loops that run it.

Exactly one scheduler runs it: ``notiflow serve`` in the embedded deployment, ``notiflow
scheduler`` in a scale-out one. Three kinds of entries:

- global cron entries (:func:`build_schedule`): inbox sync every 15 minutes, metrics every
  6 hours, the privacy and invitation sweeps every minute, notification cleanup daily;
- per-workspace entries (:func:`workspace_jobs`): daily token refresh and weekly inbox
  archiving at the maintenance hour *in each workspace's own timezone*. Their
  next run is kept per workspace in ``workspace_schedules``, so a restart neither skips nor
  repeats one, and DST changes move the UTC instant with the wall clock;
- continuous loops: the due-post scanner (every few seconds, so posts go out within seconds of
  their time) and the outbox sweeper.

Entries only enqueue their job; jobs are idempotent, so a run that happens twice does no harm.
While the queue (Redis) is unreachable an entry that comes due stays due: it is enqueued once,
however many of its times went by, as soon as the queue answers again (retried with jittered
backoff, at most ``QUEUE_RETRY_CAP_SECONDS`` apart); a per-workspace run claimed in the database
is handed back there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from croniter import croniter
from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.config import Settings
from notiflow.kit.db import database_unavailable
from notiflow.kit.ids import utcnow
from notiflow.kit.outages import DATABASE, REDIS, Backoff, redis_unavailable, told_as_outage
from notiflow.kit.queue import JobContext, JobPayload, WorkspacePayload, payload_json
from notiflow.kit.uow import unit_of_work
from notiflow.models import Workspace, WorkspaceSchedule

log = structlog.get_logger(__name__)

UTC_ZONE = "UTC"
# How often the per-workspace table is looked at (a daily job is at most this late).
WORKSPACE_CHECK_SECONDS = 30.0
# While the queue is unreachable, due entries are tried again at most this far apart (with
# jitter): a missed run goes out within seconds of the queue's return.
QUEUE_RETRY_CAP_SECONDS = 5.0


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
    # None: an empty payload (the job's payload model with its defaults).
    payload: JobPayload | None = None

    def next_run(self, after: datetime) -> datetime:
        return next_run(self.cron, self.timezone, after)


class WorkspaceJobName(StrEnum):
    """The jobs that run for each workspace (and that a tenant's admins may run now)."""

    REFRESH_TOKENS = "social.refresh_tokens"
    ARCHIVE_INBOX = "inbox.archive_old"


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
            "more than 30 days ago",
        ),
        ScheduleEntry(
            job="inbox.sync_all",
            cron=f"*/{sync_minutes} * * * *",
            timezone=UTC_ZONE,
            description=f"Every {sync_minutes} minutes: sync comments and mentions of every "
            "workspace with connected accounts",
        ),
        ScheduleEntry(
            job="analytics.fetch_all_metrics",
            cron=f"0 */{metric_hours} * * *",
            timezone=UTC_ZONE,
            description=f"Every {metric_hours} hours: metric snapshots of published posts ",
        ),
        ScheduleEntry(
            job="privacy.sweep",
            cron="* * * * *",
            timezone=UTC_ZONE,
            description="Every minute: run deletions whose grace period ended, pick up "
            "exports whose wake-up was lost, expire old export files",
        ),
        ScheduleEntry(
            job="tenancy.sweep_invitations",
            cron="* * * * *",
            timezone=UTC_ZONE,
            description="Every minute: email the invitations whose wake-up was lost or whose "
            "run died",
        ),
    ]


def workspace_jobs(settings: Settings) -> list[WorkspaceJob]:
    hour = settings.maintenance_hour
    return [
        WorkspaceJob(
            job=WorkspaceJobName.REFRESH_TOKENS.value,
            cron=f"0 {hour} * * *",
            description=f"Daily at {hour:02d}:00 workspace time: refresh tokens expiring "
            f"within {settings.token_refresh_window_days} days",
        ),
        WorkspaceJob(
            job=WorkspaceJobName.ARCHIVE_INBOX.value,
            cron=f"0 {hour} * * 0",
            description=f"Weekly, Sunday {hour:02d}:00 workspace time: archive inbox items "
            f"older than {settings.inbox_archive_days} days",
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
            "per post",
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
    context: JobContext, now: datetime | None = None
) -> list[tuple[str, WorkspacePayload]]:
    """Create the missing per-workspace rows, then claim the due ones (moving each to its next
    local run) and return the jobs to enqueue: ``(job name, payload)``."""
    now = now or utcnow()
    jobs = {job.job: job for job in workspace_jobs(context.settings)}
    due: list[tuple[str, WorkspacePayload]] = []
    async with unit_of_work(context.sessionmaker) as session:
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
                        WorkspacePayload(workspace_id=row.workspace_id, tenant_id=tenant_id),
                    )
                )
    return due


# --------------------------------------------------------------------------------- the loops


async def release_workspace_claims(
    context: JobContext, runs: Sequence[tuple[str, WorkspacePayload]], claimed_at: datetime
) -> None:
    """Make runs claimed at ``claimed_at`` (by :func:`due_workspace_jobs`) due again: their job
    could not be enqueued. The next claim moves each to its next local run from then on, so
    however long the wait, a run happens once."""
    async with unit_of_work(context.sessionmaker) as session:
        for job, payload in runs:
            await session.execute(
                update(WorkspaceSchedule)
                .where(
                    WorkspaceSchedule.workspace_id == payload.workspace_id,
                    WorkspaceSchedule.job_name == job,
                    WorkspaceSchedule.last_run_at == claimed_at,
                )
                .values(next_run_at=claimed_at, last_run_at=None)
                .execution_options(synchronize_session=False)
            )


class _QueueWait:
    """Whether the queue may be tried now: after it was found unreachable, not before a
    jittered, growing delay (so an outage costs a connection attempt every few seconds)."""

    def __init__(self) -> None:
        self._backoff = Backoff(cap=QUEUE_RETRY_CAP_SECONDS)
        self.retry_at: float | None = None  # time.monotonic()

    def ready(self) -> bool:
        return self.retry_at is None or time.monotonic() >= self.retry_at

    def unreachable(self) -> None:
        self.retry_at = time.monotonic() + self._backoff.next_delay()

    def reachable(self) -> None:
        self.retry_at = None
        self._backoff.reset()

    def seconds_left(self) -> float:
        return 0.0 if self.retry_at is None else max(0.0, self.retry_at - time.monotonic())


async def run_schedule(
    context: JobContext, schedule: Sequence[ScheduleEntry] | None = None
) -> None:
    """Enqueue global entries when due and per-workspace jobs when theirs come (forever)."""
    entries = list(schedule if schedule is not None else build_schedule(context.settings))
    upcoming = {entry.job: entry.next_run(utcnow()) for entry in entries}
    next_workspace_check = utcnow()
    queue = _QueueWait()
    while True:
        now = utcnow()
        for entry in entries:
            if upcoming[entry.job] > now or not queue.ready():
                continue
            payload: JobPayload | dict[str, Any] = entry.payload or {}
            if await _enqueue(context, entry.job, payload, queue):
                upcoming[entry.job] = entry.next_run(now)
            # else: still due; tried again once the queue may be back
        if now >= next_workspace_check and queue.ready():
            # Runs handed back (queue unreachable) are checked again once it may be back.
            all_enqueued = await _run_workspace_jobs(context, now, queue)
            if all_enqueued:
                next_workspace_check = now + timedelta(seconds=WORKSPACE_CHECK_SECONDS)
        wake = (min([*upcoming.values(), next_workspace_check]) - utcnow()).total_seconds()
        if not queue.ready():
            wake = max(wake, queue.seconds_left())
        await asyncio.sleep(max(0.05, min(wake, 30.0)))


async def _run_workspace_jobs(context: JobContext, now: datetime, queue: _QueueWait) -> bool:
    """Claim and enqueue the due per-workspace runs; False if some could not be enqueued."""
    try:
        runs = await due_workspace_jobs(context, now)
    except Exception as error:
        if database_unavailable(error):
            # Told once; the claims were not made, the next check finds them again.
            DATABASE.failed(error, component="workspace_schedule")
        else:
            log.exception("workspace_schedule_failed")
        return True
    DATABASE.recovered(component="workspace_schedule")
    for index, (job, payload) in enumerate(runs):
        if await _enqueue(context, job, payload, queue):
            continue
        try:
            await release_workspace_claims(context, runs[index:], now)
        except Exception as error:
            # The database went down too: these runs wait for their next local time.
            if not told_as_outage(error, component="workspace_schedule"):
                log.exception("workspace_schedule_release_failed", runs=len(runs) - index)
        return False
    return True


async def _enqueue(
    context: JobContext, job: str, payload: JobPayload | Mapping[str, Any], queue: _QueueWait
) -> bool:
    """Enqueue ``job``; False if the queue is unreachable (the run stays due). Any other
    failure is logged and the run counts as done: trying a defect again would only repeat it."""
    if context.queue is None:
        return True
    try:
        await context.queue.enqueue(job, payload)
    except Exception as error:
        if not redis_unavailable(error):
            log.exception("scheduled_job_enqueue_failed", job=job)
            return True
        # Told once per outage, not per entry.
        REDIS.failed(error, component="schedule", job=job)
        queue.unreachable()
        return False
    REDIS.recovered(component="schedule")
    queue.reachable()
    log.info("scheduled_job_enqueued", job=job, **payload_json(payload))
    return True
