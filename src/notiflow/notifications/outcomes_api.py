"""``GET /api/v1/admin/deliveries/outcomes``: the tenant's delivery outcomes over time, for a
chart (owners and admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from notiflow.auth.deps import TenantAdmin
from notiflow.kit.deps import SessionDep
from notiflow.kit.timebuckets import MAX_HOURS, BucketMinutes, BucketWindow
from notiflow.notifications.outcomes import delivery_outcomes
from notiflow.notifications.schemas import DataEnvelope

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class OutcomeBucketData(BaseModel):
    start: datetime
    counts: dict[str, dict[str, int]]


class OutcomesData(BaseModel):
    since: datetime
    until: datetime
    bucket_minutes: int
    buckets: list[OutcomeBucketData]


@router.get(
    "/deliveries/outcomes",
    response_model=DataEnvelope[OutcomesData],
    summary="Delivery outcomes by channel and status over time",
)
async def outcomes(
    auth: TenantAdmin,
    session: SessionDep,
    hours: Annotated[int, Query(ge=1, le=MAX_HOURS)] = 24,
    bucket_minutes: BucketMinutes = BucketMinutes.HOUR,
) -> DataEnvelope[OutcomesData]:
    """The caller's tenant's deliveries (the ledger of email, push and SMS) over the last
    ``hours`` (1-168), counted per bucket of ``bucket_minutes`` (5, 15, 60, 360 or 1440;
    aligned on the clock, UTC;
    the last bucket is the current one, still filling) by channel and status:
    ``counts = {"email": {"sent": 12, "failed": 1}, "push": {"suppressed": 4}}``. A delivery
    counts in the bucket of its creation, with its status now. Every bucket is listed, empty
    ones with ``counts = {}``. Owners and admins only."""
    window = BucketWindow.last(hours=hours, bucket_minutes=int(bucket_minutes))
    buckets = await delivery_outcomes(session, auth.tenant_id, window)
    return DataEnvelope(
        data=OutcomesData(
            since=window.since,
            until=window.until,
            bucket_minutes=int(bucket_minutes),
            buckets=[OutcomeBucketData(start=b.start, counts=b.counts) for b in buckets],
        )
    )
