"""The jobs as a tenant's admins see them: ``/api/v1/admin/jobs`` (queue depth and runs per
minute), ``/api/v1/admin/schedule`` (each periodic job's next run) and
``/api/v1/admin/schedule/run-now`` (owners and admins)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from notiflow.admin import jobs_overview
from notiflow.auth.deps import TenantAdmin
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.notifications.schemas import DataEnvelope
from notiflow.schedule import WorkspaceJobName

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class QueueData(BaseModel):
    backend: str = Field(description="`redis` (shared by every worker) or `embedded`")
    waiting: int = Field(description="Jobs queued and not finished (Redis: running included)")
    running: int | None = Field(description="Embedded queue only: jobs running now")
    retries_scheduled: int = Field(description="Failed tries waiting for their next attempt")
    tenant_deliveries_pending: int
    tenant_deliveries_sending: int


class MinuteData(BaseModel):
    start: datetime
    finished: int
    retried: int
    failed: int
    tenant_finished: int
    tenant_retried: int
    tenant_failed: int
    queue_depth: int | None = Field(
        description="The queue's depth last sampled in the minute (every 5 s); null: none"
    )


class JobsData(BaseModel):
    queue: QueueData
    throughput: list[MinuteData] | None = Field(
        description="Runs per minute, oldest first; null where runs are not counted"
    )


@router.get(
    "/jobs", response_model=DataEnvelope[JobsData], summary="Job queue depth and throughput"
)
async def jobs(
    auth: TenantAdmin,
    session: SessionDep,
    context: AppContextDep,
    minutes: Annotated[int, Query(ge=1, le=120)] = 60,
) -> DataEnvelope[JobsData]:
    """The job queue, shared by every tenant: how many jobs wait (the Redis stream's, or the
    embedded queue's in the serving process), how many run (embedded), how many failed tries
    wait for a retry, and the caller's tenant's own deliveries waiting in the outbox. Then the
    runs of the last ``minutes`` (1-120, default 60), minute by minute: finished, retried
    (a try failed, another comes) and failed (gave up), for every tenant together and for the
    jobs whose payload names the caller's tenant (``tenant_*``), and the queue's depth as last
    sampled in the minute (``queue_depth``, for a chart). Counts only: no other
    tenant's job is named. 503 while Redis is unreachable. Owners and admins only."""
    queue = await jobs_overview.queue_depth(session, context.queue, context.redis, auth.tenant_id)
    minutes_counted = await jobs_overview.throughput(context.queue, auth.tenant_id, minutes)
    return DataEnvelope(
        data=JobsData(
            queue=QueueData(
                backend=queue.backend,
                waiting=queue.waiting,
                running=queue.running,
                retries_scheduled=queue.retries_scheduled,
                tenant_deliveries_pending=queue.tenant_deliveries_pending,
                tenant_deliveries_sending=queue.tenant_deliveries_sending,
            ),
            throughput=(
                [
                    MinuteData(
                        start=m.start,
                        finished=m.finished,
                        retried=m.retried,
                        failed=m.failed,
                        tenant_finished=m.tenant_finished,
                        tenant_retried=m.tenant_retried,
                        tenant_failed=m.tenant_failed,
                        queue_depth=m.queue_depth,
                    )
                    for m in minutes_counted
                ]
                if minutes_counted is not None
                else None
            ),
        )
    )


class PlatformEntryData(BaseModel):
    job: str
    when: str
    description: str
    next_run_at: datetime | None = Field(description="null: a loop that runs continuously")


class WorkspaceEntryData(BaseModel):
    job: str
    workspace_id: uuid.UUID
    workspace_name: str
    timezone: str
    when: str
    description: str
    next_run_at: datetime
    last_run_at: datetime | None


class ScheduleData(BaseModel):
    platform: list[PlatformEntryData]
    workspaces: list[WorkspaceEntryData]


@router.get(
    "/schedule",
    response_model=DataEnvelope[ScheduleData],
    summary="The periodic jobs and their next runs",
)
async def schedule(
    auth: TenantAdmin, session: SessionDep, context: AppContextDep
) -> DataEnvelope[ScheduleData]:
    """The periodic jobs: ``platform``, the ones that run for every tenant at once (cleanup,
    inbox sync, metrics, the privacy sweep; the sweeper and the due-post scanner, which loop
    continuously, have no next run), each with its cron, time zone and next run; and
    ``workspaces``, the jobs that run for each of the caller's tenant's workspaces at a local
    time of the workspace (token refresh, inbox archiving), with their next and last runs.
    Only the latter can be run now. Owners and admins only."""
    found = await jobs_overview.tenant_schedule(session, context.settings, auth.tenant_id)
    return DataEnvelope(
        data=ScheduleData(
            platform=[
                PlatformEntryData(
                    job=e.job, when=e.when, description=e.description, next_run_at=e.next_run_at
                )
                for e in found.platform
            ],
            workspaces=[
                WorkspaceEntryData(
                    job=e.job,
                    workspace_id=e.workspace_id,
                    workspace_name=e.workspace_name,
                    timezone=e.timezone,
                    when=e.when,
                    description=e.description,
                    next_run_at=e.next_run_at,
                    last_run_at=e.last_run_at,
                )
                for e in found.workspaces
            ],
        )
    )


class RunNowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job: WorkspaceJobName
    workspace_id: uuid.UUID


class RunNowData(BaseModel):
    job: str
    workspace_id: uuid.UUID
    enqueued: bool


@router.post(
    "/schedule/run-now",
    response_model=DataEnvelope[RunNowData],
    status_code=202,
    summary="Run a workspace's scheduled job now",
)
async def run_now(
    body: RunNowRequest, auth: TenantAdmin, session: SessionDep, context: AppContextDep
) -> DataEnvelope[RunNowData]:
    """Queue one of the per-workspace jobs of ``GET /api/v1/admin/schedule`` (``job``) for
    one of the caller's tenant's workspaces now, with the payload the scheduler gives it
    (the job is safe to run twice); its scheduled runs stay as they were. 404 for another
    tenant's workspace, 422 for a job that is not a per-workspace one. Audited
    (``scheduled_job.run_now``). Owners and admins only."""
    workspace = await jobs_overview.run_now(
        session, context.queue, context.settings, auth, body.job.value, body.workspace_id
    )
    return DataEnvelope(
        data=RunNowData(job=body.job.value, workspace_id=workspace.id, enqueued=True)
    )
