"""Workspace routes: ``/api/v1/workspaces`` (tenant admins create and change, members read)."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field
from pydantic.config import JsonDict

from notiflow.auth.deps import CurrentAuth, TenantAdmin
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.kit.ids import utcnow
from notiflow.kit.text import NOT_BLANK_PATTERN
from notiflow.kit.timezones import ZONE_NAMES, zone
from notiflow.models import Workspace
from notiflow.notifications.schemas import DataEnvelope
from notiflow.tenancy import workspaces
from notiflow.tenancy.deps import CurrentWorkspace

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])


# The schema lists what the service accepts: a name that is not blank, a known IANA zone.
_NAME_SCHEMA: JsonDict = {"pattern": NOT_BLANK_PATTERN}
_ZONE_SCHEMA: JsonDict = {"enum": list(ZONE_NAMES)}


class CreateWorkspaceRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, json_schema_extra=_NAME_SCHEMA)
    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        examples=["Asia/Baku"],
        json_schema_extra=_ZONE_SCHEMA,
    )


class UpdateWorkspaceRequest(BaseModel):
    name: str | None = Field(
        default=None, min_length=1, max_length=200, json_schema_extra=_NAME_SCHEMA
    )
    timezone: str | None = Field(
        default=None, min_length=1, max_length=64, json_schema_extra=_ZONE_SCHEMA
    )


class WorkspaceData(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    timezone: str
    # The current UTC offset of the zone, e.g. "+04:00" (changes with DST).
    utc_offset: str
    created_at: datetime

    @classmethod
    def from_model(cls, workspace: Workspace) -> WorkspaceData:
        offset = utcnow().astimezone(zone(workspace.timezone)).strftime("%z")
        return cls(
            id=workspace.id,
            tenant_id=workspace.tenant_id,
            name=workspace.name,
            timezone=workspace.timezone,
            utc_offset=f"{offset[:3]}:{offset[3:]}",
            created_at=workspace.created_at,
        )


@router.post("", status_code=201, response_model=DataEnvelope[WorkspaceData])
async def create(
    body: CreateWorkspaceRequest, auth: TenantAdmin, session: SessionDep
) -> DataEnvelope[WorkspaceData]:
    """Create a workspace with its IANA timezone (owners and admins)."""
    workspace = await workspaces.create_workspace(
        session,
        auth.tenant_id,
        name=body.name,
        timezone=body.timezone,
        actor=auth,
    )
    return DataEnvelope(data=WorkspaceData.from_model(workspace))


@router.get("", response_model=DataEnvelope[list[WorkspaceData]])
async def index(auth: CurrentAuth, session: SessionDep) -> DataEnvelope[list[WorkspaceData]]:
    """The tenant's workspaces, oldest first."""
    found = await workspaces.list_workspaces(session, auth.tenant_id)
    return DataEnvelope(data=[WorkspaceData.from_model(item) for item in found])


@router.get("/{workspace_id}", response_model=DataEnvelope[WorkspaceData])
async def show(workspace: CurrentWorkspace) -> DataEnvelope[WorkspaceData]:
    return DataEnvelope(data=WorkspaceData.from_model(workspace))


@router.patch("/{workspace_id}", response_model=DataEnvelope[WorkspaceData])
async def update(
    body: UpdateWorkspaceRequest,
    workspace: CurrentWorkspace,
    auth: TenantAdmin,
    session: SessionDep,
    context: AppContextDep,
) -> DataEnvelope[WorkspaceData]:
    """Rename or change the timezone (owners and admins). Posts already scheduled keep their
    instant; daily and weekly jobs follow the new zone."""
    updated = await workspaces.update_workspace(
        session,
        workspace,
        name=body.name,
        timezone=body.timezone,
        actor=auth,
        settings=context.settings,
    )
    return DataEnvelope(data=WorkspaceData.from_model(updated))
