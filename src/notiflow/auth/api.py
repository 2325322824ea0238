"""``POST /api/v1/auth/login``: email and password in, bearer token out (throttled, logged)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from notiflow.auth.service import (
    LoginGuard,
    LoginRefused,
    PasswordChecker,
    login,
    record_refused_login,
)
from notiflow.auth.throttle import LoginThrottle
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.kit.uow import session_scope
from notiflow.notifications.schemas import DataEnvelope

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    tenant_id: uuid.UUID | None = None


class LoginData(BaseModel):
    token: str
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    user_id: uuid.UUID
    tenant_id: uuid.UUID


async def get_login_guard(request: Request, context: AppContextDep) -> LoginGuard:
    """One guard per application: its memory counters and thread limiter span all requests."""
    guard: LoginGuard | None = getattr(request.app.state, "login_guard", None)
    if guard is None:
        settings = context.settings
        guard = LoginGuard(
            throttle=LoginThrottle.from_settings(settings, context.redis),
            checker=PasswordChecker(settings.password_hash_concurrency),
        )
        request.app.state.login_guard = guard
    return guard


LoginGuardDep = Annotated[LoginGuard, Depends(get_login_guard)]


@router.post(
    "/login",
    response_model=DataEnvelope[LoginData],
    responses={
        401: {"description": "email or password is incorrect (`invalid_credentials`)"},
        429: {"description": "too many failed logins for the account or address (Retry-After)"},
    },
)
async def login_route(
    body: LoginRequest,
    request: Request,
    session: SessionDep,
    context: AppContextDep,
    guard: LoginGuardDep,
) -> DataEnvelope[LoginData]:
    address = request.client.host if request.client else None
    try:
        token, user, tenant_id = await login(
            session, body.email, body.password, body.tenant_id, guard=guard, address=address
        )
    except LoginRefused as refused:
        if refused.entry is not None:
            # Committed on its own: the request's transaction rolls back with the refusal.
            async for own_session in session_scope(context.sessionmaker):
                await record_refused_login(own_session, refused.entry)
        raise refused.error from None
    return DataEnvelope(data=LoginData(token=token, user_id=user.id, tenant_id=tenant_id))
