"""Social account routes under /api/v1/workspaces/{workspace_id}/social-accounts."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from notiflow.auth.deps import TenantAdmin
from notiflow.kit.deps import SessionDep, app_context
from notiflow.kit.openapi import error_response
from notiflow.kit.pagination import page_meta
from notiflow.models.platform import AccountStatus
from notiflow.notifications.schemas import DataEnvelope
from notiflow.social import service
from notiflow.social.ports import PlatformContext
from notiflow.social.schemas import ConnectAccountRequest, SocialAccountData, SocialAccountPage
from notiflow.tenancy.deps import CurrentWorkspace

PlatformContextDep = Annotated[PlatformContext, Depends(app_context)]

router = APIRouter(
    prefix="/api/v1/workspaces/{workspace_id}/social-accounts", tags=["social accounts"]
)


@router.post(
    "",
    status_code=201,
    response_model=DataEnvelope[SocialAccountData],
    responses={
        200: {
            "model": DataEnvelope[SocialAccountData],
            "description": "Reconnected: the account was connected already (new tokens)",
        },
        502: error_response(
            "The network could not be asked to check the token (provider_unavailable); "
            "nothing was saved, try again later"
        ),
    },
)
async def connect(
    body: ConnectAccountRequest,
    workspace: CurrentWorkspace,
    auth: TenantAdmin,
    context: PlatformContextDep,
    session: SessionDep,
    response: Response,
) -> DataEnvelope[SocialAccountData]:
    """Connect an account (201), or reconnect one already connected (200: new tokens, active
    again). The network checks the token first; tokens are stored encrypted, never returned."""
    connected = await service.connect_account(
        context,
        session,
        workspace,
        service.ConnectRequest(
            provider=body.provider,
            access_token=body.access_token,
            refresh_token=body.refresh_token,
            token_expires_at=body.token_expires_at,
            instance_url=str(body.instance_url) if body.instance_url is not None else None,
            options=body.options,
        ),
        auth,
    )
    response.status_code = 201 if connected.created else 200
    return DataEnvelope(data=SocialAccountData.from_model(connected.account))


@router.get("", response_model=SocialAccountPage)
async def index(
    workspace: CurrentWorkspace,
    session: SessionDep,
    status: AccountStatus | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
) -> SocialAccountPage:
    """The workspace's accounts (any member of the tenant), oldest first, without tokens."""
    result = await service.list_accounts(
        session, workspace, status=status, page=page, per_page=per_page
    )
    return SocialAccountPage(
        data=[SocialAccountData.from_model(account) for account in result.items],
        meta=page_meta(result),
    )


@router.get("/{account_id}", response_model=DataEnvelope[SocialAccountData])
async def show(
    account_id: uuid.UUID, workspace: CurrentWorkspace, session: SessionDep
) -> DataEnvelope[SocialAccountData]:
    account = await service.get_account(session, workspace, account_id)
    return DataEnvelope(data=SocialAccountData.from_model(account))


@router.delete("/{account_id}", response_model=DataEnvelope[SocialAccountData])
async def disconnect(
    account_id: uuid.UUID,
    workspace: CurrentWorkspace,
    auth: TenantAdmin,
    context: PlatformContextDep,
    session: SessionDep,
) -> DataEnvelope[SocialAccountData]:
    """Disconnect: the account is disabled and its tokens deleted (again: no change)."""
    account = await service.disconnect_account(context, session, workspace, account_id, auth)
    return DataEnvelope(data=SocialAccountData.from_model(account))
