"""``GET /api/v1/admin/publishing/lag``: how late the tenant's scheduled posts went out, over
time (owners and admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from notiflow.auth.deps import TenantAdmin
from notiflow.content.lag import publish_lag
from notiflow.kit.deps import SessionDep
from notiflow.kit.timebuckets import MAX_HOURS, BucketMinutes, BucketWindow
from notiflow.notifications.schemas import DataEnvelope

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class LagBucketData(BaseModel):
    start: datetime
    published: int
    average_seconds: float | None
    max_seconds: float | None


class LagData(BaseModel):
    since: datetime
    until: datetime
    bucket_minutes: int
    buckets: list[LagBucketData]


@router.get(
    "/publishing/lag",
    response_model=DataEnvelope[LagData],
    summary="Publish lag of scheduled posts over time",
)
async def lag(
    auth: TenantAdmin,
    session: SessionDep,
    hours: Annotated[int, Query(ge=1, le=MAX_HOURS)] = 24,
    bucket_minutes: BucketMinutes = BucketMinutes.HOUR,
) -> DataEnvelope[LagData]:
    """For the caller's tenant's scheduled posts published in the last ``hours`` (1-168), per
    bucket of ``bucket_minutes`` (5, 15, 60, 360 or 1440; aligned on the clock, UTC; the
    last one still filling): how
    many targets (a post on one account) were published and their lag, the seconds between
    the post's ``scheduled_at`` and the target's ``published_at`` (average and maximum; null
    for a bucket with none). Posts published without a schedule are not counted. Owners and
    admins only."""
    window = BucketWindow.last(hours=hours, bucket_minutes=int(bucket_minutes))
    buckets = await publish_lag(session, auth.tenant_id, window)
    return DataEnvelope(
        data=LagData(
            since=window.since,
            until=window.until,
            bucket_minutes=int(bucket_minutes),
            buckets=[
                LagBucketData(
                    start=b.start,
                    published=b.published,
                    average_seconds=b.average_seconds,
                    max_seconds=b.max_seconds,
                )
                for b in buckets
            ],
        )
    )
