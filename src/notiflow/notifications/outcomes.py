"""Delivery outcomes over time: a tenant's ledger counted by channel and status per bucket.

What a chart of "what happened to our notifications" draws::

    window = BucketWindow.last(hours=24, bucket_minutes=60)
    buckets = await delivery_outcomes(session, tenant_id, window)
    buckets[-1].counts  # {"email": {"sent": 12, "failed": 1}, "push": {"suppressed": 4}}

A delivery counts in the bucket of its creation (when notiflow decided about the channel), with
its status now (a pending email that was sent since counts as sent).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.tenant_scope import in_tenant
from notiflow.kit.timebuckets import BucketWindow, bucket_start
from notiflow.models import NotificationDelivery


@dataclass(frozen=True, slots=True)
class OutcomeBucket:
    start: datetime
    # channel -> status -> deliveries (only the non-zero ones)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


async def delivery_outcomes(
    session: AsyncSession, tenant_id: uuid.UUID, window: BucketWindow
) -> list[OutcomeBucket]:
    """Every bucket of ``window``, oldest first, with the tenant's deliveries counted in it."""
    start = bucket_start(session, NotificationDelivery.created_at, window.bucket_seconds)
    rows = await session.execute(
        select(
            start.label("bucket"),
            NotificationDelivery.channel,
            NotificationDelivery.status,
            func.count(),
        )
        .where(
            in_tenant(NotificationDelivery, tenant_id),
            NotificationDelivery.created_at >= window.since,
        )
        .group_by(start, NotificationDelivery.channel, NotificationDelivery.status)
    )
    buckets = {moment: OutcomeBucket(moment) for moment in window.starts()}
    for epoch, channel, status, count in rows:
        bucket = buckets.get(window.start_of(int(epoch)))
        if bucket is not None:  # created after "now" by a clock ahead: the next window's
            bucket.counts.setdefault(channel, {})[status] = int(count)
    return list(buckets.values())
