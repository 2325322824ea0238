"""The dead-letter table: list, retry and forget jobs that gave up.

The CLI works on every failed job (``tenant_id`` None); the API narrows each function to the
caller's tenant (``tenant_id`` given): another tenant's job is then not found, and a job of no
tenant (a platform-wide one, such as ``notifications.cleanup``) belongs to no tenant's admins.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, Select, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import AuthenticatedActor
from notiflow.kit.after_commit import Effect, after_commit
from notiflow.kit.errors import NotFound
from notiflow.kit.ids import utcnow
from notiflow.kit.pagination import Cursor, Page, paginate
from notiflow.kit.queue import JobQueue
from notiflow.kit.tenant_scope import in_owning_tenant
from notiflow.models import FailedJob, NotificationDelivery, WebhookEvent
from notiflow.models.webhooks import WebhookStatus
from notiflow.notifications.ledger import DeliveryStatus
from notiflow.realtime.webhooks.sender import FAILED_JOB_NAME as WEBHOOK_JOB


def describe(job: FailedJob) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "job": job.job_name,
        "args": job.args,
        "tenant_id": str(job.tenant_id) if job.tenant_id else None,
        "exception": job.exception,
        "attempts": job.attempts,
        "failed_at": job.failed_at.isoformat(),
        "retried_at": job.retried_at.isoformat() if job.retried_at else None,
    }


def _scope(tenant_id: uuid.UUID | None) -> ColumnElement[bool]:
    """Every failed job (``tenant_id`` None), or only those of one tenant."""
    return true() if tenant_id is None else in_owning_tenant(FailedJob, tenant_id)


def _listing(
    tenant_id: uuid.UUID | None, include_retried: bool, job_name: str | None = None
) -> Select[FailedJob]:
    query = (
        select(FailedJob)
        .where(_scope(tenant_id))
        .order_by(FailedJob.failed_at.desc(), FailedJob.id.desc())
    )
    if not include_retried:
        query = query.where(FailedJob.retried_at.is_(None))
    if job_name is not None:
        query = query.where(FailedJob.job_name == job_name)
    return query


async def list_failed(
    session: AsyncSession, *, include_retried: bool = False, tenant_id: uuid.UUID | None = None
) -> list[FailedJob]:
    return list((await session.scalars(_listing(tenant_id, include_retried))).all())


async def page_failed(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    *,
    include_retried: bool = False,
    job_name: str | None = None,
    page: int = 1,
    per_page: int = 50,
    cursor: Cursor | None = None,
) -> Page[FailedJob]:
    """One page of a tenant's failed jobs (of one job, with ``job_name``), newest first (by
    page number or by ``cursor``)."""
    return await paginate(
        session,
        _listing(tenant_id, include_retried, job_name),
        key=(FailedJob.failed_at, FailedJob.id),
        position=lambda job: (job.failed_at, job.id),
        page=page,
        per_page=per_page,
        cursor=cursor,
    )


async def retry(
    session: AsyncSession, ids: list[uuid.UUID] | None, *, tenant_id: uuid.UUID | None = None
) -> list[tuple[FailedJob, dict[str, Any] | None]]:
    """Make failed jobs run again. A failed delivery goes back to the outbox with fresh attempts
    (the sweeper or the returned wake-up picks it up); webhook events go back to the webhook
    outbox with a fresh horizon (payload None: nothing to enqueue, the app's sender posts them);
    any other job is returned with the payload to enqueue. ``ids=None`` retries every job not
    retried yet; with ``tenant_id``, only that tenant's jobs (another's id is not found)."""
    query = select(FailedJob).where(FailedJob.retried_at.is_(None), _scope(tenant_id))
    if ids is not None:
        query = select(FailedJob).where(FailedJob.id.in_(ids), _scope(tenant_id))
    jobs = list((await session.scalars(query)).all())
    if ids is not None and len(jobs) != len(set(ids)):
        missing = set(ids) - {job.id for job in jobs}
        raise NotFound(f"no failed job {', '.join(str(value) for value in missing)}")
    now = utcnow()
    retried: list[tuple[FailedJob, dict[str, Any] | None]] = []
    for job in jobs:
        job.retried_at = now
        if job.job_name == "delivery.send" and "delivery_id" in job.args:
            await session.execute(
                update(NotificationDelivery)
                .where(
                    NotificationDelivery.id == uuid.UUID(job.args["delivery_id"]),
                    NotificationDelivery.status == DeliveryStatus.FAILED,
                )
                .values(
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    updated_at=now,
                )
            )
            payload: dict[str, Any] = {"delivery_ids": [job.args["delivery_id"]]}
            if job.tenant_id is not None:
                payload["tenant_id"] = str(job.tenant_id)
            retried.append((job, payload))
        elif job.job_name == WEBHOOK_JOB and isinstance(job.args.get("event_ids"), list):
            await _webhooks_back_to_outbox(session, job.args["event_ids"])
            retried.append((job, None))
        else:
            retried.append((job, job.args))
    await session.flush()
    return retried


async def _webhooks_back_to_outbox(session: AsyncSession, event_ids: list[int]) -> None:
    """Given-up webhook events wait again, each for as long as its first horizon was."""
    now = utcnow()
    events = (
        await session.scalars(
            select(WebhookEvent).where(
                WebhookEvent.id.in_(event_ids), WebhookEvent.status == WebhookStatus.FAILED
            )
        )
    ).all()
    for event in events:
        event.expires_at = now + (event.expires_at - event.occurred_at)
        event.status = WebhookStatus.PENDING
        event.attempts = 0
        event.next_attempt_at = now


async def forget(
    session: AsyncSession, job_id: uuid.UUID, *, tenant_id: uuid.UUID | None = None
) -> FailedJob:
    """Delete a failed job without running it; returns the row as it was."""
    job = await session.scalar(select(FailedJob).where(FailedJob.id == job_id, _scope(tenant_id)))
    if job is None:
        raise NotFound(f"no failed job {job_id}")
    await session.delete(job)
    await session.flush()
    return job


async def retry_in_tenant(
    session: AsyncSession,
    queue: JobQueue | None,
    actor: AuthenticatedActor,
    ids: list[uuid.UUID] | None,
) -> list[FailedJob]:
    """Retry the actor's tenant's failed jobs (``ids``, or all not retried yet): the same
    :func:`retry`, audited, with each job's payload enqueued once the transaction has
    committed (deliveries also wait in the outbox, where the sweeper finds them if the wake-up
    is lost)."""
    retried = await retry(session, ids, tenant_id=actor.tenant_id)
    for job, _ in retried:
        await audit.record(
            session,
            action="failed_job.retried",
            subject_type="failed_job",
            subject_id=job.id,
            before={"job": job.job_name, "exception": job.exception},
            after={"retried_at": job.retried_at.isoformat() if job.retried_at else None},
            actor_id=actor.user_id,
            tenant_id=actor.tenant_id,
            ip_address=actor.ip_address,
        )
    if queue is not None:
        wake = [(job.job_name, payload) for job, payload in retried if payload is not None]
        if wake:
            after_commit(session, _enqueue_all(queue, wake))
    return [job for job, _ in retried]


def _enqueue_all(queue: JobQueue, jobs: list[tuple[str, dict[str, Any]]]) -> Effect:
    async def enqueue() -> None:
        for name, payload in jobs:
            await queue.enqueue(name, payload)

    return enqueue


async def forget_in_tenant(
    session: AsyncSession, actor: AuthenticatedActor, job_id: uuid.UUID
) -> None:
    """Forget one of the actor's tenant's failed jobs (audited)."""
    job = await forget(session, job_id, tenant_id=actor.tenant_id)
    await audit.record(
        session,
        action="failed_job.forgotten",
        subject_type="failed_job",
        subject_id=job.id,
        before={"job": job.job_name, "exception": job.exception, "attempts": job.attempts},
        after=None,
        actor_id=actor.user_id,
        tenant_id=actor.tenant_id,
        ip_address=actor.ip_address,
    )
