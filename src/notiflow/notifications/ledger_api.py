"""``GET /api/v1/tenant/deliveries``: the tenant's delivery ledger for its owners and admins."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from notiflow.auth.deps import TenantAdmin
from notiflow.kit.deps import SessionDep
from notiflow.kit.pagination import Cursor, CursorQuery, PageMeta, page_meta
from notiflow.kit.timezones import Rfc3339Datetime
from notiflow.notifications.ledger_search import (
    LedgerEntry,
    LedgerFilters,
    LedgerStatus,
    search_ledger,
)
from notiflow.notifications.schemas import DeliveryData, iso_utc
from notiflow.notifications.types import NotificationChannel, NotificationType

router = APIRouter(prefix="/api/v1/tenant", tags=["tenant"])


class LedgerEntryData(DeliveryData):
    id: uuid.UUID
    notification_id: uuid.UUID
    user_id: uuid.UUID
    type: str
    title: str
    created_at: str

    @classmethod
    def from_entry(cls, entry: LedgerEntry) -> LedgerEntryData:
        delivery = entry.delivery
        return cls(
            **DeliveryData.from_model(delivery).model_dump(),
            id=delivery.id,
            notification_id=delivery.notification_id,
            user_id=delivery.user_id,
            type=entry.notification_type,
            title=entry.title,
            created_at=iso_utc(delivery.created_at) or "",
        )


class LedgerPage(BaseModel):
    data: list[LedgerEntryData]
    meta: PageMeta


@router.get("/deliveries", response_model=LedgerPage)
async def tenant_deliveries(
    auth: TenantAdmin,
    session: SessionDep,
    user_id: uuid.UUID | None = None,
    channel: NotificationChannel | None = None,
    status: LedgerStatus | None = None,
    reason: Annotated[str | None, Query(min_length=1, max_length=50)] = None,
    type: NotificationType | None = None,
    since: Rfc3339Datetime | None = None,
    until: Rfc3339Datetime | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: CursorQuery = None,
) -> LedgerPage:
    """Every delivery of the tenant's notifications, newest first: by user, channel, status
    (including ``outcome_unknown``), reason (e.g. ``user_global_off``), notification type and
    creation time (``since`` inclusive, ``until`` exclusive, ISO-8601 with a time zone). Page
    with page/per_page (totals included) or with ``cursor`` from ``meta.next_cursor``.
    Owners and admins only."""
    result = await search_ledger(
        session,
        auth.tenant_id,
        LedgerFilters(
            user_id=user_id,
            channel=channel,
            status=status,
            reason=reason,
            type=type,
            since=since,
            until=until,
        ),
        page=page,
        per_page=per_page,
        cursor=Cursor.from_query(cursor),
    )
    return LedgerPage(
        data=[LedgerEntryData.from_entry(entry) for entry in result.items],
        meta=page_meta(result),
    )
