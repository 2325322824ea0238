"""Who is calling: the FastAPI dependencies that authenticate a request's bearer token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from notiflow.audit.service import Actor
from notiflow.auth.service import AuthContext, authenticate_token
from notiflow.kit.deps import SessionDep
from notiflow.kit.errors import Forbidden, Unauthorized


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


def actor_of(auth: AuthContext, request: Request) -> Actor:
    return Actor(
        user_id=auth.user.id,
        tenant_id=auth.tenant_id,
        ip_address=request.client.host if request.client else None,
    )
