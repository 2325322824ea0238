"""``POST /api/v1/auth/login``: email and password in, bearer token out."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from notiflow.auth.service import login
from notiflow.kit.deps import SessionDep
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


@router.post("/login", response_model=DataEnvelope[LoginData])
async def login_route(body: LoginRequest, session: SessionDep) -> DataEnvelope[LoginData]:
    token, user, tenant_id = await login(session, body.email, body.password, body.tenant_id)
    return DataEnvelope(data=LoginData(token=token, user_id=user.id, tenant_id=tenant_id))
