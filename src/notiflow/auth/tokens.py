"""A user's own personal access tokens: listing them (never the secret) and revoking one."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import Actor
from notiflow.kit.errors import NotFound
from notiflow.models import PersonalAccessToken


async def list_tokens(session: AsyncSession, user_id: uuid.UUID) -> list[PersonalAccessToken]:
    """The user's tokens in every tenant, newest first."""
    return list(
        (
            await session.scalars(
                select(PersonalAccessToken)
                .where(PersonalAccessToken.user_id == user_id)
                .order_by(PersonalAccessToken.created_at.desc(), PersonalAccessToken.id)
            )
        ).all()
    )


async def revoke_token(
    session: AsyncSession, user_id: uuid.UUID | None, token_id: uuid.UUID, actor: Actor
) -> PersonalAccessToken:
    """Delete a token so that it gets 401 at once. ``user_id`` None (the CLI) may revoke any
    token; otherwise only the user's own (someone else's is a 404, as if it did not exist)."""
    token = await session.get(PersonalAccessToken, token_id)
    if token is None or (user_id is not None and token.user_id != user_id):
        raise NotFound("token not found")
    await session.delete(token)
    await session.flush()
    await audit.record(
        session,
        action="token.revoked",
        subject_type="personal_access_token",
        subject_id=token.id,
        before={"name": token.name, "user_id": str(token.user_id)},
        after=None,
        actor_id=actor.user_id,
        tenant_id=token.tenant_id,
        ip_address=actor.ip_address,
    )
    return token
