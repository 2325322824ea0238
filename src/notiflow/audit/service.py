"""The audit trail: writing entries (inside the transaction that makes the change they
record) and reading a tenant's entries back, filtered and paged."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.pagination import Cursor, Page, paginate
from notiflow.kit.tenant_scope import in_owning_tenant
from notiflow.models import AuditLog, User


async def record(
    session: AsyncSession,
    *,
    action: str,
    subject_type: str,
    subject_id: str | uuid.UUID | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    actor_id: uuid.UUID | None,
    tenant_id: uuid.UUID | None,
    ip_address: str | None = None,
) -> AuditLog:
    entry = AuditLog(
        tenant_id=tenant_id,
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id) if subject_id is not None else None,
        before=before,
        after=after,
        ip_address=ip_address,
    )
    session.add(entry)
    await session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class AuditFilters:
    action: str | None = None
    actor_id: uuid.UUID | None = None
    since: datetime | None = None  # at or after
    until: datetime | None = None  # before


@dataclass(frozen=True, slots=True)
class AuditEntry:
    entry: AuditLog
    # The actor's current address and name; None for the system or a user since erased.
    actor_email: str | None
    actor_name: str | None


async def search(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    filters: AuditFilters,
    *,
    page: int = 1,
    per_page: int = 50,
    cursor: Cursor | None = None,
) -> Page[AuditEntry]:
    """A tenant's audit log, newest first, filtered; entries of no tenant are never found."""
    query = (
        select(AuditLog, User.email, User.name)
        .outerjoin(User, User.id == AuditLog.actor_id)
        .where(in_owning_tenant(AuditLog, tenant_id))
        .order_by(AuditLog.created_at.desc(), AuditLog.id.desc())
    )
    if filters.action is not None:
        query = query.where(AuditLog.action == filters.action)
    if filters.actor_id is not None:
        query = query.where(AuditLog.actor_id == filters.actor_id)
    if filters.since is not None:
        query = query.where(AuditLog.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(AuditLog.created_at < filters.until)
    rows: Page[tuple[AuditLog, str | None, str | None]] = await paginate(
        session,
        cast("Select[tuple[AuditLog, str | None, str | None]]", query),
        key=(AuditLog.created_at, AuditLog.id),
        position=lambda row: (row[0].created_at, row[0].id),
        page=page,
        per_page=per_page,
        cursor=cursor,
        rows=True,
    )
    return Page(
        items=[AuditEntry(row[0], row[1], row[2]) for row in rows.items],
        per_page=rows.per_page,
        next_cursor=rows.next_cursor,
        page=rows.page,
        total=rows.total,
    )


async def actions(session: AsyncSession, tenant_id: uuid.UUID) -> list[str]:
    """The actions found in a tenant's audit log, in alphabetical order (a filter's choices)."""
    found = await session.scalars(
        select(AuditLog.action)
        .distinct()
        .where(in_owning_tenant(AuditLog, tenant_id))
        .order_by(AuditLog.action)
    )
    return list(found)
