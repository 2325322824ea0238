"""Analytics routes: ``GET /api/v1/workspaces/{workspace_id}/analytics/summary``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from notiflow.analytics.service import TargetMetrics, workspace_summary
from notiflow.kit.deps import SessionDep
from notiflow.notifications.schemas import DataEnvelope
from notiflow.tenancy.deps import CurrentWorkspace

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/analytics", tags=["analytics"])


class TargetMetricsData(BaseModel):
    post_id: uuid.UUID
    post_target_id: uuid.UUID
    social_account_id: uuid.UUID
    likes: int
    reposts: int
    replies: int
    impressions: int | None
    captured_at: datetime

    @classmethod
    def from_metrics(cls, item: TargetMetrics) -> TargetMetricsData:
        return cls(
            post_id=item.post_id,
            post_target_id=item.post_target_id,
            social_account_id=item.social_account_id,
            likes=item.likes,
            reposts=item.reposts,
            replies=item.replies,
            impressions=item.impressions,
            captured_at=item.captured_at,
        )


class SummaryData(BaseModel):
    days: int
    # Published targets (one post on one account) with at least one snapshot.
    posts: int
    likes: int
    reposts: int
    replies: int
    impressions: int
    last_captured_at: datetime | None
    top_posts: list[TargetMetricsData]


@router.get("/summary", response_model=DataEnvelope[SummaryData])
async def summary(
    workspace: CurrentWorkspace,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=90)] = 30,
) -> DataEnvelope[SummaryData]:
    """Totals of the latest counts of the posts published in the last ``days`` days (from the
    snapshots taken every 6 hours), and the five with the most likes + reposts + replies."""
    result = await workspace_summary(session, workspace.id, days=days)
    return DataEnvelope(
        data=SummaryData(
            days=result.days,
            posts=result.posts,
            likes=result.likes,
            reposts=result.reposts,
            replies=result.replies,
            impressions=result.impressions,
            last_captured_at=result.last_captured_at,
            top_posts=[TargetMetricsData.from_metrics(item) for item in result.top_posts],
        )
    )
