"""Invitation routes: ``/api/v1/tenant/invitations`` (owners and admins) and
``POST /api/v1/invitations/accept`` (the invitee, with the token from the email)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from notiflow.auth.deps import OptionalAuth, TenantAdmin
from notiflow.kit.after_commit import after_commit
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.kit.pagination import PageMeta, page_meta
from notiflow.models import Invitation
from notiflow.models.tenancy import Role
from notiflow.notifications.deps import NotificationServiceDep
from notiflow.notifications.schemas import DataEnvelope
from notiflow.tenancy import invitations
from notiflow.tenancy.jobs import InvitationPayload

router = APIRouter(prefix="/api/v1/tenant/invitations", tags=["invitations"])
accept_router = APIRouter(prefix="/api/v1/invitations", tags=["invitations"])


class InvitationData(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    role: Role
    status: str
    invited_by_id: uuid.UUID | None
    expires_at: datetime
    emailed_at: datetime | None
    accepted_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime

    @classmethod
    def from_model(cls, invitation: Invitation) -> InvitationData:
        return cls(
            id=invitation.id,
            tenant_id=invitation.tenant_id,
            email=invitation.email,
            role=Role(invitation.role),
            status=invitations.status_of(invitation),
            invited_by_id=invitation.invited_by_id,
            expires_at=invitation.expires_at,
            emailed_at=invitation.emailed_at,
            accepted_at=invitation.accepted_at,
            revoked_at=invitation.revoked_at,
            created_at=invitation.created_at,
        )


class InvitationPage(BaseModel):
    data: list[InvitationData]
    meta: PageMeta


class InviteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    role: Role = Role.MEMBER


class AcceptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=200)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class AcceptedData(BaseModel):
    token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
    user_created: bool


@router.post("", status_code=201, response_model=DataEnvelope[InvitationData])
async def invite(
    body: InviteRequest,
    auth: TenantAdmin,
    session: SessionDep,
    context: AppContextDep,
    notifications: NotificationServiceDep,
) -> DataEnvelope[InvitationData]:
    """Invite someone by email (owners and admins; only owners invite owners). They get an
    email with the accept link, and in-app too when they already have an account. 409 when
    they are a member already or have a pending invitation."""
    invitation = await invitations.create_invitation(
        session,
        context.settings,
        auth,
        auth.tenant_id,
        email=str(body.email),
        role=body.role,
        notifications=notifications,
    )
    queue = context.queue
    if queue is not None:
        payload = InvitationPayload(invitation_id=invitation.id, tenant_id=invitation.tenant_id)

        async def send() -> None:
            await queue.enqueue(invitations.SEND_JOB, payload)

        after_commit(session, send)
    return DataEnvelope(data=InvitationData.from_model(invitation))


@router.get("", response_model=InvitationPage)
async def list_invitations(
    auth: TenantAdmin,
    session: SessionDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
) -> InvitationPage:
    """The tenant's invitations with their status, newest first (owners and admins)."""
    result = await invitations.list_invitations(
        session, auth.tenant_id, page=page, per_page=per_page
    )
    return InvitationPage(
        data=[InvitationData.from_model(item) for item in result.items], meta=page_meta(result)
    )


@router.delete("/{invitation_id}", status_code=204)
async def revoke_invitation(
    invitation_id: uuid.UUID, auth: TenantAdmin, session: SessionDep
) -> Response:
    """Revoke a pending invitation: its link stops working (owners and admins)."""
    await invitations.revoke_invitation(session, auth, invitation_id)
    return Response(status_code=204)


@accept_router.post(
    "/accept",
    response_model=DataEnvelope[AcceptedData],
    # The bearer token is optional here (a new invitee has none): ``{}`` is the
    # no-authentication alternative of OpenAPI's security list.
    openapi_extra={"security": [{}]},
)
async def accept(
    body: AcceptRequest,
    request: Request,
    caller: OptionalAuth,
    session: SessionDep,
    notifications: NotificationServiceDep,
) -> DataEnvelope[AcceptedData]:
    """Accept an invitation with the token from its email; returns a bearer token for the
    tenant. A new email needs a ``password`` (and may give a ``name``); an existing account
    signs in (its bearer token, or its ``password``)."""
    accepted = await invitations.accept_invitation(
        session,
        notifications,
        token=body.token,
        name=body.name,
        password=body.password,
        caller=caller,
        ip_address=request.client.host if request.client else None,
    )
    return DataEnvelope(
        data=AcceptedData(
            token=accepted.token,
            user_id=accepted.user.id,
            tenant_id=accepted.invitation.tenant_id,
            role=Role(accepted.invitation.role),
            user_created=accepted.user_created,
        )
    )
