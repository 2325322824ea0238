"""Workspaces of a tenant: each has an IANA timezone its schedules and local times use."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import Actor
from notiflow.config import Settings
from notiflow.kit.errors import Conflict, InvalidInput
from notiflow.kit.tenant_scope import in_tenant
from notiflow.kit.timezones import require_zone_name
from notiflow.models import Workspace
from notiflow.schedule import reschedule_workspace


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise InvalidInput("name must not be blank")
    if "\x00" in cleaned:
        raise InvalidInput("name must not contain NUL characters")
    return cleaned


async def create_workspace(
    session: AsyncSession, tenant_id: uuid.UUID, *, name: str, timezone: str, actor: Actor
) -> Workspace:
    require_zone_name(timezone)  # 422 for a name that is not an IANA zone
    name = _clean_name(name)
    if await _name_taken(session, tenant_id, name):
        raise Conflict(f"a workspace named {name!r} already exists", code="workspace_exists")
    workspace = Workspace(tenant_id=tenant_id, name=name, timezone=timezone)
    session.add(workspace)
    await session.flush()
    await audit.record(
        session,
        action="workspace.created",
        subject_type="workspace",
        subject_id=workspace.id,
        before=None,
        after={"name": name, "timezone": timezone},
        actor_id=actor.user_id,
        tenant_id=tenant_id,
        ip_address=actor.ip_address,
    )
    return workspace


async def update_workspace(
    session: AsyncSession,
    workspace: Workspace,
    *,
    name: str | None,
    timezone: str | None,
    actor: Actor,
    settings: Settings,
) -> Workspace:
    """Rename and/or move to another timezone. Scheduled posts keep their instant; the
    workspace's daily and weekly jobs follow the new zone from their next run."""
    before = {"name": workspace.name, "timezone": workspace.timezone}
    if timezone is not None:
        require_zone_name(timezone)
    if name is not None:
        name = _clean_name(name)
        if name != workspace.name and await _name_taken(session, workspace.tenant_id, name):
            raise Conflict(f"a workspace named {name!r} already exists", code="workspace_exists")
        workspace.name = name
    if timezone is not None and timezone != workspace.timezone:
        workspace.timezone = timezone
        await reschedule_workspace(session, workspace, settings)
    await session.flush()
    await audit.record(
        session,
        action="workspace.updated",
        subject_type="workspace",
        subject_id=workspace.id,
        before=before,
        after={"name": workspace.name, "timezone": workspace.timezone},
        actor_id=actor.user_id,
        tenant_id=workspace.tenant_id,
        ip_address=actor.ip_address,
    )
    return workspace


async def list_workspaces(session: AsyncSession, tenant_id: uuid.UUID) -> list[Workspace]:
    return list(
        (
            await session.scalars(
                select(Workspace)
                .where(in_tenant(Workspace, tenant_id))
                .order_by(Workspace.created_at, Workspace.id)
            )
        ).all()
    )


async def _name_taken(session: AsyncSession, tenant_id: uuid.UUID, name: str) -> bool:
    found = await session.scalar(
        select(Workspace.id).where(in_tenant(Workspace, tenant_id), Workspace.name == name)
    )
    return found is not None
