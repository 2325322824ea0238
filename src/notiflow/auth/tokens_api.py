"""Routes of one's own tokens: ``GET /api/v1/tokens`` and ``DELETE /api/v1/tokens/{id}``."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel

from notiflow.auth import tokens
from notiflow.auth.deps import CurrentAuth
from notiflow.kit.deps import SessionDep
from notiflow.models import PersonalAccessToken
from notiflow.notifications.schemas import DataEnvelope

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


class TokenData(BaseModel):
    id: uuid.UUID
    name: str
    tenant_id: uuid.UUID
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    # True for the token that signs this request.
    current: bool

    @classmethod
    def from_model(cls, token: PersonalAccessToken, current_id: uuid.UUID) -> TokenData:
        return cls(
            id=token.id,
            name=token.name,
            tenant_id=token.tenant_id,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            expires_at=token.expires_at,
            current=token.id == current_id,
        )


@router.get("", response_model=DataEnvelope[list[TokenData]])
async def list_own_tokens(auth: CurrentAuth, session: SessionDep) -> DataEnvelope[list[TokenData]]:
    """The caller's own tokens in every tenant, newest first (never the secret)."""
    found = await tokens.list_tokens(session, auth.user_id)
    return DataEnvelope(data=[TokenData.from_model(item, auth.token_id) for item in found])


@router.delete("/{token_id}", status_code=204)
async def revoke_own_token(token_id: uuid.UUID, auth: CurrentAuth, session: SessionDep) -> Response:
    """Revoke one of the caller's tokens (it gets 401 at once); someone else's is a 404."""
    await tokens.revoke_token(session, auth.user_id, token_id, auth)
    return Response(status_code=204)
