"""Delivery jobs: ``delivery.send`` (a batch of ledger rows) and ``delivery.sweep``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import structlog

from notiflow.delivery.service import DeliveryWorker
from notiflow.kit.metrics import set_queue_depth
from notiflow.kit.outages import REDIS, told_as_outage
from notiflow.kit.queue import (
    Job,
    JobContext,
    JobPayload,
    JobQueue,
    NoPayload,
    enqueue_due_retries,
    repeat_forever,
)
from notiflow.notifications.events import NotificationRecord
from notiflow.notifications.unread import UserTenant

log = structlog.get_logger(__name__)

# Delivery ids per wake-up message: one queue round trip per 500 deliveries.
BATCH = 500


class SendPayload(JobPayload):
    """A wake-up for up to :data:`BATCH` deliveries of one tenant."""

    delivery_ids: tuple[uuid.UUID, ...] = ()
    tenant_id: uuid.UUID | None = None


class DeliveryContext(JobContext, Protocol):
    """What the delivery jobs need from the process they run in."""

    def delivery_worker(self) -> DeliveryWorker:
        """The process's one delivery worker (its senders, their connections, the alerter)."""
        ...


async def send_deliveries(context: DeliveryContext, payload: SendPayload) -> None:
    await context.delivery_worker().process(payload.delivery_ids)


async def sweep(context: DeliveryContext, payload: NoPayload) -> None:
    """Hand out again what is due: retries whose time came, rows a crash left behind, rows
    whose wake-up message was lost. Emails an SMTP outage held back become due as soon as the
    mail server answers a probe again."""
    worker = context.delivery_worker()
    await worker.probe_mail_server()
    due = await worker.due_by_tenant()
    set_queue_depth("outbox", sum(len(ids) for ids in due.values()))
    for tenant_id, delivery_ids in due.items():
        await enqueue_in_batches(context, delivery_ids, tenant_id)


async def enqueue_in_batches(
    context: JobContext, delivery_ids: Sequence[uuid.UUID], tenant_id: uuid.UUID
) -> None:
    """Wake-up messages of up to BATCH deliveries of one tenant (jobs carry their tenant)."""
    queue = context.queue
    if queue is None or not delivery_ids:
        return
    for start in range(0, len(delivery_ids), BATCH):
        batch = tuple(delivery_ids[start : start + BATCH])
        await queue.enqueue("delivery.send", SendPayload(delivery_ids=batch, tenant_id=tenant_id))


class DeliveryDispatcher:
    """After commit, wake a worker for every pending delivery of the new notifications."""

    def __init__(self, context: JobContext) -> None:
        self.context = context

    async def notifications_created(self, records: Sequence[NotificationRecord]) -> None:
        by_tenant: dict[uuid.UUID, list[uuid.UUID]] = {}
        for record in records:
            by_tenant.setdefault(record.tenant_id, []).extend(record.pending_delivery_ids)
        if not any(by_tenant.values()):
            return
        began = time.monotonic()
        try:
            for tenant_id, pending in by_tenant.items():
                await enqueue_in_batches(self.context, pending, tenant_id)
        except Exception as error:  # the sweeper finds them in the outbox anyway
            # While Redis is down every send would fail here: the outage is told once.
            if not told_as_outage(error, component="delivery_dispatch"):
                log.exception("delivery_enqueue_failed", tenants=len(by_tenant))
            return
        REDIS.recovered(component="delivery_dispatch", started=began)

    async def unread_counts_changed(self, keys: Sequence[UserTenant]) -> None:
        return None


async def sweep_forever(context: DeliveryContext, interval: float) -> None:
    async def sweep_and_retry() -> None:
        await sweep(context, NoPayload())
        await enqueue_due_retries(context)

    await repeat_forever(interval, sweep_and_retry, failure_event="delivery_sweep_failed")


JOBS: list[Job[DeliveryContext, Any]] = [
    Job("delivery.send", send_deliveries, SendPayload),
    Job("delivery.sweep", sweep, NoPayload),
]

__all__ = ["JOBS", "DeliveryDispatcher", "JobQueue", "enqueue_in_batches", "sweep_forever"]
