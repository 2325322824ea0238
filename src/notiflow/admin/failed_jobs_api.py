"""Failed jobs of the caller's tenant: ``/api/v1/admin/failed-jobs`` (owners and admins).

The same dead-letter functions as ``notiflow jobs failed|retry|forget``, narrowed to the
caller's tenant: another tenant's job is a 404, and jobs of no tenant (platform-wide ones such
as ``notifications.cleanup``) are shown to no tenant; operators see them with the CLI.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from notiflow.admin import failed_jobs
from notiflow.auth.deps import TenantAdmin
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.kit.pagination import Cursor, CursorQuery, PageMeta, page_meta
from notiflow.models import FailedJob

router = APIRouter(prefix="/api/v1/admin/failed-jobs", tags=["admin"])


class FailedJobData(BaseModel):
    id: uuid.UUID
    job: str
    args: dict[str, Any]
    workspace_id: uuid.UUID | None
    error: str
    attempts: int
    failed_at: datetime
    retried_at: datetime | None

    @classmethod
    def from_model(cls, job: FailedJob) -> FailedJobData:
        return cls(
            id=job.id,
            job=job.job_name,
            args=job.args,
            workspace_id=job.workspace_id,
            error=job.exception,
            attempts=job.attempts,
            failed_at=job.failed_at,
            retried_at=job.retried_at,
        )


class FailedJobPage(BaseModel):
    data: list[FailedJobData]
    meta: PageMeta


class RetriedData(BaseModel):
    retried: list[FailedJobData]


@router.get(
    "",
    response_model=FailedJobPage,
    summary="List the tenant's failed jobs",
)
async def list_failed_jobs(
    auth: TenantAdmin,
    session: SessionDep,
    include_retried: bool = False,
    job: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: CursorQuery = None,
) -> FailedJobPage:
    """Jobs of the caller's tenant that gave up, newest first: the job's name, its payload,
    the error it ended with, how many tries it had and when it failed. Jobs already retried
    are left out unless ``include_retried=true``; ``job`` keeps one job's failures (e.g.
    ``delivery.send``). Page with page/per_page (totals included) or
    with ``cursor`` from ``meta.next_cursor``. Platform-wide jobs (with no tenant) are never
    listed here. Owners and admins only."""
    result = await failed_jobs.page_failed(
        session,
        auth.tenant_id,
        include_retried=include_retried,
        job_name=job,
        page=page,
        per_page=per_page,
        cursor=Cursor.from_query(cursor),
    )
    return FailedJobPage(
        data=[FailedJobData.from_model(job) for job in result.items], meta=page_meta(result)
    )


@router.post(
    "/retry-all",
    response_model=RetriedData,
    summary="Retry every failed job of the tenant",
)
async def retry_all_failed_jobs(
    auth: TenantAdmin, session: SessionDep, context: AppContextDep
) -> RetriedData:
    """Run again every failed job of the caller's tenant not retried yet: a failed delivery
    goes back to the outbox with fresh attempts, any other job is queued with its payload.
    Each retry is in the audit log (``failed_job.retried``). Owners and admins only."""
    retried = await failed_jobs.retry_in_tenant(session, context.queue, auth, None)
    return RetriedData(retried=[FailedJobData.from_model(job) for job in retried])


@router.post(
    # ``:uuid``: only an id matches, so ``/retry-all`` is never read as a job's id (nor its
    # 405 answer told that DELETE is allowed there).
    "/{job_id:uuid}/retry",
    response_model=RetriedData,
    summary="Retry one failed job",
)
async def retry_failed_job(
    job_id: uuid.UUID, auth: TenantAdmin, session: SessionDep, context: AppContextDep
) -> RetriedData:
    """Run one failed job of the caller's tenant again (as ``notiflow jobs retry`` does): a
    failed delivery goes back to the outbox with fresh attempts, any other job is queued with
    its payload. 404 for another tenant's job or a platform-wide one. Audited
    (``failed_job.retried``). Owners and admins only."""
    retried = await failed_jobs.retry_in_tenant(session, context.queue, auth, [job_id])
    return RetriedData(retried=[FailedJobData.from_model(job) for job in retried])


@router.delete(
    "/{job_id:uuid}",
    status_code=204,
    summary="Forget one failed job",
)
async def forget_failed_job(job_id: uuid.UUID, auth: TenantAdmin, session: SessionDep) -> Response:
    """Delete one failed job of the caller's tenant without running it (as ``notiflow jobs
    forget`` does). 404 for another tenant's job or a platform-wide one. Audited
    (``failed_job.forgotten``). Owners and admins only."""
    await failed_jobs.forget_in_tenant(session, auth, job_id)
    return Response(status_code=204)
