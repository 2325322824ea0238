"""Typed FastAPI dependencies shared by every router: the session, the caller, the services."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit.service import Actor
from notiflow.auth.service import AuthContext, authenticate_token
from notiflow.kit.errors import Forbidden, NotFound, Unauthorized
from notiflow.kit.uow import session_scope
from notiflow.models import Workspace
from notiflow.notifications.service import NotificationService
from notiflow.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async for session in session_scope(runtime.sessionmaker):
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_auth(request: Request, session: SessionDep) -> AuthContext:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <token>'")
    return await authenticate_token(session, token.strip())


CurrentAuth = Annotated[AuthContext, Depends(get_auth)]


async def require_tenant_admin(auth: CurrentAuth) -> AuthContext:
    if not auth.role.is_admin:
        raise Forbidden("only tenant owners and admins may do this")
    return auth


TenantAdmin = Annotated[AuthContext, Depends(require_tenant_admin)]


async def get_workspace(
    workspace_id: uuid.UUID, auth: CurrentAuth, session: SessionDep
) -> Workspace:
    """The workspace of the path, if it belongs to the caller's tenant (else 404, as if it did
    not exist: tenant data never leaks)."""
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None or workspace.tenant_id != auth.tenant_id:
        raise NotFound("workspace not found")
    return workspace


CurrentWorkspace = Annotated[Workspace, Depends(get_workspace)]


async def get_notification_service(runtime: RuntimeDep, session: SessionDep) -> NotificationService:
    return runtime.notification_service(session)


NotificationServiceDep = Annotated[NotificationService, Depends(get_notification_service)]


def actor_of(auth: AuthContext, request: Request) -> Actor:
    return Actor(
        user_id=auth.user.id,
        tenant_id=auth.tenant_id,
        ip_address=request.client.host if request.client else None,
    )
