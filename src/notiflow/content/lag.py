"""Publish lag over time: how late a tenant's scheduled posts went out, per bucket.

The lag of a post on one account is ``post_targets.published_at - posts.scheduled_at`` (a post
published at once, with no schedule, has none). A target counts in the bucket of its
publication::

    buckets = await publish_lag(session, tenant_id, BucketWindow.last(hours=24, bucket_minutes=60))
    buckets[-1].published, buckets[-1].average_seconds, buckets[-1].max_seconds

Only targets published within the window are read (a handful per hour, not the whole history).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.tenant_scope import in_tenant
from notiflow.kit.timebuckets import BucketWindow
from notiflow.models import Post, PostTarget
from notiflow.models.platform import TargetStatus


@dataclass(frozen=True, slots=True)
class LagBucket:
    start: datetime
    published: int  # scheduled targets published in the bucket
    average_seconds: float | None  # None: nothing published
    max_seconds: float | None


async def publish_lag(
    session: AsyncSession, tenant_id: uuid.UUID, window: BucketWindow
) -> list[LagBucket]:
    """Every bucket of ``window``, oldest first, with the lag of the targets published in it."""
    rows = await session.execute(
        select(PostTarget.published_at, Post.scheduled_at)
        .join(Post, Post.id == PostTarget.post_id)
        .where(
            in_tenant(Post, tenant_id),
            PostTarget.status == TargetStatus.PUBLISHED.value,
            PostTarget.published_at >= window.since,
            Post.scheduled_at.is_not(None),
        )
    )
    lags: dict[datetime, list[float]] = {moment: [] for moment in window.starts()}
    for published_at, scheduled_at in rows:
        if published_at is None or scheduled_at is None:  # excluded by the query
            continue
        bucket = lags.get(window.start_of(published_at.timestamp()))
        if bucket is not None:
            # Published early (a clock a little ahead) is no lag, not a negative one.
            bucket.append(max(0.0, (published_at - scheduled_at).total_seconds()))
    return [
        LagBucket(
            start=moment,
            published=len(seconds),
            average_seconds=sum(seconds) / len(seconds) if seconds else None,
            max_seconds=max(seconds) if seconds else None,
        )
        for moment, seconds in lags.items()
    ]
