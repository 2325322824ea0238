"""The tenant's audit log: ``GET /api/v1/admin/audit-log`` (owners and admins)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from notiflow.audit import service as audit
from notiflow.auth.deps import TenantAdmin
from notiflow.kit.deps import SessionDep
from notiflow.kit.pagination import Cursor, CursorQuery, PageMeta, page_meta
from notiflow.kit.timezones import Rfc3339Datetime
from notiflow.notifications.schemas import DataEnvelope

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class AuditActor(BaseModel):
    """Who made the change: a user (``id``, with their current email and name while they
    exist), or the system (``id`` null: a job, a CLI command, an erased user)."""

    id: uuid.UUID | None
    email: str | None
    name: str | None


class AuditTarget(BaseModel):
    """What was changed: a kind (``user``, ``workspace``, ``failed_job``...) and its id."""

    type: str
    id: str | None


class AuditEntryData(BaseModel):
    id: uuid.UUID
    action: str
    actor: AuditActor
    target: AuditTarget
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    ip_address: str | None
    created_at: datetime

    @classmethod
    def from_entry(cls, found: audit.AuditEntry) -> AuditEntryData:
        entry = found.entry
        return cls(
            id=entry.id,
            action=entry.action,
            actor=AuditActor(id=entry.actor_id, email=found.actor_email, name=found.actor_name),
            target=AuditTarget(type=entry.subject_type, id=entry.subject_id),
            before=entry.before,
            after=entry.after,
            ip_address=entry.ip_address,
            created_at=entry.created_at,
        )


class AuditPage(BaseModel):
    data: list[AuditEntryData]
    meta: PageMeta


@router.get("/audit-log", response_model=AuditPage, summary="Search the tenant's audit log")
async def audit_log(
    auth: TenantAdmin,
    session: SessionDep,
    action: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    actor_id: uuid.UUID | None = None,
    since: Rfc3339Datetime | None = None,
    until: Rfc3339Datetime | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: CursorQuery = None,
) -> AuditPage:
    """Changes made in the caller's tenant, newest first: who (``actor``), what (``action``,
    e.g. ``member.role_changed``, ``notification_preference.updated``,
    ``tenant.notification_settings.updated``, ``failed_job.retried``), to which ``target``,
    and the state ``before`` and ``after``. Filter by ``action``, by ``actor_id`` and by time
    (``since`` inclusive, ``until`` exclusive, ISO-8601 with a time zone). Page with
    page/per_page (totals included) or with ``cursor`` from ``meta.next_cursor``. Entries of
    no tenant (the platform's own) are never shown. Owners and admins only."""
    result = await audit.search(
        session,
        auth.tenant_id,
        audit.AuditFilters(action=action, actor_id=actor_id, since=since, until=until),
        page=page,
        per_page=per_page,
        cursor=Cursor.from_query(cursor),
    )
    return AuditPage(
        data=[AuditEntryData.from_entry(found) for found in result.items], meta=page_meta(result)
    )


@router.get(
    "/audit-log/actions",
    response_model=DataEnvelope[list[str]],
    summary="The actions in the tenant's audit log",
)
async def audit_actions(auth: TenantAdmin, session: SessionDep) -> DataEnvelope[list[str]]:
    """Every ``action`` found in the caller's tenant's audit log, alphabetically: the choices
    of the ``action`` filter of ``GET /api/v1/admin/audit-log``. Owners and admins only."""
    return DataEnvelope(data=await audit.actions(session, auth.tenant_id))
