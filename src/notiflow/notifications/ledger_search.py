"""The delivery ledger of a whole tenant, filtered and paged: what tenant admins look through.

One row per notification and channel (``notification_deliveries``), newest first, with the
notification's type and title alongside::

    page = await search_ledger(session, tenant_id, LedgerFilters(channel="email", status="failed"))
    page.items      # [LedgerEntry(delivery=..., notification_type=..., title=...), ...]
    page.next_cursor

Paged by keyset (``cursor``: a page deep in a large ledger costs as much as the first) or by page
number with the total. Always within the tenant: another tenant's rows are never found.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.pagination import Cursor, Page, paginate
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Notification, NotificationDelivery
from notiflow.notifications.ledger import DeliveryStatus
from notiflow.notifications.types import NotificationChannel, NotificationType


class LedgerStatus(StrEnum):
    PENDING = DeliveryStatus.PENDING
    SENDING = DeliveryStatus.SENDING
    SENT = DeliveryStatus.SENT
    FAILED = DeliveryStatus.FAILED
    SUPPRESSED = DeliveryStatus.SUPPRESSED
    OUTCOME_UNKNOWN = "outcome_unknown"


@dataclass(frozen=True, slots=True)
class LedgerFilters:
    user_id: uuid.UUID | None = None
    channel: NotificationChannel | None = None
    status: LedgerStatus | None = None
    reason: str | None = None
    type: NotificationType | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    delivery: NotificationDelivery
    notification_type: str
    title: str


def ledger_query(
    tenant_id: uuid.UUID, filters: LedgerFilters
) -> Select[NotificationDelivery, str, str]:
    """The search, newest first: served by ``ix_notification_deliveries_tenant_ledger``
    (tenant_id, created_at, id), read backwards."""
    query = (
        select(NotificationDelivery, Notification.type, Notification.title)
        .join(Notification, Notification.id == NotificationDelivery.notification_id)
        .where(in_tenant(NotificationDelivery, tenant_id))
        .order_by(NotificationDelivery.created_at.desc(), NotificationDelivery.id.desc())
    )
    if filters.user_id is not None:
        query = query.where(NotificationDelivery.user_id == filters.user_id)
    if filters.channel is not None:
        query = query.where(NotificationDelivery.channel == filters.channel.value)
    if filters.status is not None:
        query = query.where(NotificationDelivery.status == filters.status.value)
    if filters.reason is not None:
        query = query.where(NotificationDelivery.reason == filters.reason)
    if filters.type is not None:
        query = query.where(Notification.type == filters.type.value)
    if filters.since is not None:
        query = query.where(NotificationDelivery.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(NotificationDelivery.created_at < filters.until)
    return query


async def search_ledger(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    filters: LedgerFilters,
    *,
    page: int = 1,
    per_page: int = 50,
    cursor: Cursor | None = None,
) -> Page[LedgerEntry]:
    query = ledger_query(tenant_id, filters)
    # Whole rows of three columns (rows=True), typed as one tuple per item.
    rows: Page[tuple[NotificationDelivery, str, str]] = await paginate(
        session,
        cast("Select[tuple[NotificationDelivery, str, str]]", query),
        key=(NotificationDelivery.created_at, NotificationDelivery.id),
        position=lambda row: (row[0].created_at, row[0].id),
        page=page,
        per_page=per_page,
        cursor=cursor,
        rows=True,
    )
    return Page(
        items=[LedgerEntry(row[0], row[1], row[2]) for row in rows.items],
        per_page=rows.per_page,
        next_cursor=rows.next_cursor,
        page=rows.page,
        total=rows.total,
    )
