"""What a tenant's admins see of the jobs: the queue's depth, the runs per minute, the schedule
with each job's next run, and "run now" for a job scheduled per workspace.

The queue is the platform's, shared by every tenant: its depth and its total runs per minute are
numbers only (no job of another tenant is named); the runs whose payload names the caller's
tenant are also counted apart. The periodic schedule's global entries (cleanup, the privacy
sweep...) run for every tenant at once and only their next run is shown; the per-workspace jobs
(token refresh, inbox archiving) are listed for each of the tenant's workspaces, and those are
the ones an admin may run now.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import AuthenticatedActor
from notiflow.config import Settings
from notiflow.kit.after_commit import Effect, after_commit
from notiflow.kit.errors import InvalidInput, ServiceUnavailable
from notiflow.kit.ids import utcnow
from notiflow.kit.outages import REDIS_UNAVAILABLE_ERRORS
from notiflow.kit.queue import JobQueue, WorkspacePayload, job_queue_depth
from notiflow.kit.tenant_scope import get_in_tenant, in_tenant
from notiflow.kit.throughput import MinuteCount
from notiflow.models import JobAttempt, NotificationDelivery, Workspace, WorkspaceSchedule
from notiflow.notifications.ledger import DeliveryStatus
from notiflow.schedule import build_schedule, next_run, workspace_jobs

log = structlog.get_logger(__name__)

# Seconds a client waits before asking again while Redis is unreachable.
REDIS_RETRY_AFTER = 5


@dataclass(frozen=True, slots=True)
class QueueDepth:
    backend: str  # "redis" (shared by every worker) or "embedded" (in the API's process)
    # Jobs waiting: in the Redis stream (not handed out, or handed out and not acknowledged),
    # or in this process waiting for a free slot.
    waiting: int
    running: int | None  # the embedded queue's runs in progress (Redis: counted in waiting)
    retries_scheduled: int  # failed tries waiting for their next attempt (job_attempts)
    # The tenant's own deliveries in the outbox: waiting for a worker, and being sent.
    tenant_deliveries_pending: int
    tenant_deliveries_sending: int


async def queue_depth(
    session: AsyncSession, queue: JobQueue | None, redis: Redis | None, tenant_id: uuid.UUID
) -> QueueDepth:
    if redis is not None:
        try:
            waiting = await job_queue_depth(redis)
        except REDIS_UNAVAILABLE_ERRORS as error:
            raise ServiceUnavailable(
                "the job queue (Redis) is unreachable; try again shortly",
                code="queue_unavailable",
                retry_after=REDIS_RETRY_AFTER,
            ) from error
        backend, running = "redis", None
    else:
        backend = "embedded"
        waiting = queue.waiting if queue is not None else 0
        running = queue.running if queue is not None else 0
    retries = await session.scalar(select(func.count()).select_from(JobAttempt))
    outbox: dict[str, int] = {
        status: count
        for status, count in (
            await session.execute(
                select(NotificationDelivery.status, func.count())
                .where(
                    in_tenant(NotificationDelivery, tenant_id),
                    NotificationDelivery.status.in_(
                        [DeliveryStatus.PENDING, DeliveryStatus.SENDING]
                    ),
                )
                .group_by(NotificationDelivery.status)
            )
        ).all()
    }
    return QueueDepth(
        backend=backend,
        waiting=waiting,
        running=running,
        retries_scheduled=int(retries or 0),
        tenant_deliveries_pending=int(outbox.get(DeliveryStatus.PENDING, 0)),
        tenant_deliveries_sending=int(outbox.get(DeliveryStatus.SENDING, 0)),
    )


async def throughput(
    queue: JobQueue | None, tenant_id: uuid.UUID, minutes: int = 60
) -> list[MinuteCount] | None:
    """Runs per minute over the last ``minutes``; None where this process counts none."""
    if queue is None or queue.throughput is None:
        return None
    try:
        return await queue.throughput.last_minutes(minutes, tenant_id)
    except REDIS_UNAVAILABLE_ERRORS as error:
        raise ServiceUnavailable(
            "the job counts (Redis) are unreachable; try again shortly",
            code="queue_unavailable",
            retry_after=REDIS_RETRY_AFTER,
        ) from error


@dataclass(frozen=True, slots=True)
class PlatformEntry:
    job: str
    when: str
    description: str
    next_run_at: datetime | None  # None: a continuous loop


@dataclass(frozen=True, slots=True)
class WorkspaceEntry:
    job: str
    workspace_id: uuid.UUID
    workspace_name: str
    timezone: str
    when: str
    description: str
    next_run_at: datetime
    last_run_at: datetime | None


@dataclass(frozen=True, slots=True)
class TenantSchedule:
    platform: list[PlatformEntry]
    workspaces: list[WorkspaceEntry]


def _platform_entries(settings: Settings, now: datetime) -> list[PlatformEntry]:
    entries = [
        PlatformEntry(
            job="delivery.sweep",
            when=f"every {settings.sweep_interval_seconds:g} s",
            description="Hand out due retries and deliveries a crash left behind",
            next_run_at=None,
        ),
        PlatformEntry(
            job="content.scan_due_posts",
            when=f"every {settings.publish_scan_interval_seconds:g} s",
            description="Claim post targets whose time came and publish them",
            next_run_at=None,
        ),
    ]
    entries += [
        PlatformEntry(
            job=entry.job,
            when=f"{entry.cron} ({entry.timezone})",
            description=entry.description,
            next_run_at=entry.next_run(now),
        )
        for entry in build_schedule(settings)
    ]
    return entries


async def tenant_schedule(
    session: AsyncSession, settings: Settings, tenant_id: uuid.UUID
) -> TenantSchedule:
    """The platform's periodic jobs and, for each of the tenant's workspaces, its own runs
    (the next one as the scheduler keeps it, or as it will be computed when it has none yet)."""
    now = utcnow()
    workspaces = (
        await session.scalars(
            select(Workspace).where(in_tenant(Workspace, tenant_id)).order_by(Workspace.name)
        )
    ).all()
    rows = {
        (row.workspace_id, row.job_name): row
        for row in (
            await session.scalars(
                select(WorkspaceSchedule)
                .join(Workspace, Workspace.id == WorkspaceSchedule.workspace_id)
                .where(in_tenant(Workspace, tenant_id))
            )
        ).all()
    }
    entries: list[WorkspaceEntry] = []
    for workspace in workspaces:
        for job in workspace_jobs(settings):
            row = rows.get((workspace.id, job.job))
            entries.append(
                WorkspaceEntry(
                    job=job.job,
                    workspace_id=workspace.id,
                    workspace_name=workspace.name,
                    timezone=workspace.timezone,
                    when=f"{job.cron} ({workspace.timezone})",
                    description=job.description,
                    next_run_at=(
                        row.next_run_at
                        if row is not None
                        else next_run(job.cron, workspace.timezone, now)
                    ),
                    last_run_at=row.last_run_at if row is not None else None,
                )
            )
    return TenantSchedule(platform=_platform_entries(settings, now), workspaces=entries)


async def run_now(
    session: AsyncSession,
    queue: JobQueue | None,
    settings: Settings,
    actor: AuthenticatedActor,
    job: str,
    workspace_id: uuid.UUID,
) -> Workspace:
    """Enqueue one of the tenant's per-workspace jobs now, as the scheduler does when its time
    comes (its payload: the workspace and its tenant), once the transaction has committed; the
    schedule's own next run is unchanged. Audited (``scheduled_job.run_now``)."""
    names = [entry.job for entry in workspace_jobs(settings)]
    if job not in names:
        raise InvalidInput(
            f"{job!r} is not a job a tenant may run; known: {', '.join(names)}",
            code="unknown_job",
            details=[{"loc": ["body", "job"], "msg": "unknown job"}],
        )
    workspace = await get_in_tenant(
        session, Workspace, workspace_id, actor.tenant_id, what="workspace"
    )
    if queue is None:
        raise ServiceUnavailable("this process has no job queue", code="queue_unavailable")
    await audit.record(
        session,
        action="scheduled_job.run_now",
        subject_type="workspace",
        subject_id=workspace.id,
        before=None,
        after={"job": job},
        actor_id=actor.user_id,
        tenant_id=actor.tenant_id,
        ip_address=actor.ip_address,
    )
    payload = WorkspacePayload(workspace_id=workspace.id, tenant_id=actor.tenant_id)
    after_commit(session, _enqueue(queue, job, payload))
    return workspace


def _enqueue(queue: JobQueue, job: str, payload: WorkspacePayload) -> Effect:
    async def enqueue() -> None:
        await queue.enqueue(job, payload)
        log.info("scheduled_job_enqueued", job=job, run_now=True, **payload.model_dump(mode="json"))

    return enqueue
