"""The dead-letter table: list, retry and forget jobs that gave up."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import NotFound
from notiflow.kit.ids import utcnow
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


async def list_failed(session: AsyncSession, *, include_retried: bool = False) -> list[FailedJob]:
    query = select(FailedJob).order_by(FailedJob.failed_at.desc())
    if not include_retried:
        query = query.where(FailedJob.retried_at.is_(None))
    return list((await session.scalars(query)).all())


async def retry(
    session: AsyncSession, ids: list[uuid.UUID] | None
) -> list[tuple[FailedJob, dict[str, Any] | None]]:
    """Make failed jobs run again. A failed delivery goes back to the outbox with fresh attempts
    (the sweeper or the returned wake-up picks it up); webhook events go back to the webhook
    outbox with a fresh horizon (payload None: nothing to enqueue, the app's sender posts them);
    any other job is returned with the payload to enqueue. ``ids=None`` retries every job not
    retried yet."""
    query = select(FailedJob).where(FailedJob.retried_at.is_(None))
    if ids is not None:
        query = select(FailedJob).where(FailedJob.id.in_(ids))
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


async def forget(session: AsyncSession, job_id: uuid.UUID) -> None:
    result: Any = await session.execute(delete(FailedJob).where(FailedJob.id == job_id))
    if not result.rowcount:
        raise NotFound(f"no failed job {job_id}")
