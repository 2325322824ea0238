"""Who is calling: the FastAPI dependencies that authenticate a request's bearer token."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from notiflow.auth.actor import AuthenticatedActor
from notiflow.auth.service import authenticate_token
from notiflow.kit.deps import SessionDep
from notiflow.kit.errors import Forbidden, Unauthorized

# Declares the bearer scheme in the OpenAPI document (every route that authenticates shows the
# lock, and /docs's Authorize button works); the header is checked below, in the one error shape.
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    description="A personal access token: `Authorization: Bearer <token>`.",
    auto_error=False,
)


async def get_auth(
    request: Request,
    session: SessionDep,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> AuthenticatedActor:
    """The user of the request's bearer token, acting within its tenant from the request's
    address (401 without a valid token)."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <token>'")
    actor = await authenticate_token(session, token.strip())
    return dataclasses.replace(actor, ip_address=request.client.host if request.client else None)


CurrentAuth = Annotated[AuthenticatedActor, Depends(get_auth)]


async def require_tenant_admin(auth: CurrentAuth) -> AuthenticatedActor:
    if not auth.is_admin:
        raise Forbidden("only tenant owners and admins may do this")
    return auth


TenantAdmin = Annotated[AuthenticatedActor, Depends(require_tenant_admin)]


async def get_optional_auth(
    request: Request,
    session: SessionDep,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> AuthenticatedActor | None:
    """The caller when the request carries a bearer token (checked as strictly: a bad one is a
    401), None when it carries none."""
    if not request.headers.get("authorization"):
        return None
    return await get_auth(request, session, _documented)


OptionalAuth = Annotated[AuthenticatedActor | None, Depends(get_optional_auth)]
