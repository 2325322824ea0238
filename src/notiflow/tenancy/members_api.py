"""Member routes: ``/api/v1/tenant/members`` (owners and admins)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict

from notiflow.auth.deps import TenantAdmin
from notiflow.kit.deps import SessionDep
from notiflow.kit.pagination import PageMeta, page_meta
from notiflow.models.tenancy import Role
from notiflow.notifications.deps import NotificationServiceDep
from notiflow.notifications.schemas import DataEnvelope
from notiflow.tenancy import members

router = APIRouter(prefix="/api/v1/tenant/members", tags=["members"])


class MemberData(BaseModel):
    user_id: uuid.UUID
    email: str
    name: str
    role: Role
    joined_at: datetime

    @classmethod
    def from_view(cls, view: members.MemberView) -> MemberData:
        return cls(
            user_id=view.user_id,
            email=view.email,
            name=view.name,
            role=view.role,
            joined_at=view.joined_at,
        )


class MemberPage(BaseModel):
    data: list[MemberData]
    meta: PageMeta


class ChangeRoleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


@router.get("", response_model=MemberPage)
async def list_members(
    auth: TenantAdmin,
    session: SessionDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
) -> MemberPage:
    """The tenant's members with their roles, oldest first (owners and admins)."""
    result = await members.list_members(session, auth.tenant_id, page=page, per_page=per_page)
    return MemberPage(
        data=[MemberData.from_view(view) for view in result.items], meta=page_meta(result)
    )


@router.patch("/{user_id}", response_model=DataEnvelope[MemberData])
async def change_member_role(
    user_id: uuid.UUID,
    body: ChangeRoleRequest,
    auth: TenantAdmin,
    session: SessionDep,
    notifications: NotificationServiceDep,
) -> DataEnvelope[MemberData]:
    """Change a member's role (they get ``role_changed``). Admins cannot make or touch owners;
    the last owner cannot be demoted."""
    view = await members.change_role(session, notifications, auth, user_id, body.role)
    return DataEnvelope(data=MemberData.from_view(view))


@router.delete("/{user_id}", status_code=204)
async def remove_member(
    user_id: uuid.UUID,
    auth: TenantAdmin,
    session: SessionDep,
    notifications: NotificationServiceDep,
) -> Response:
    """Remove a member (they get ``member_removed``; their tokens for this tenant stop working
    at once). Admins cannot remove owners; the last owner cannot be removed."""
    await members.remove_member(session, notifications, auth, user_id)
    return Response(status_code=204)
