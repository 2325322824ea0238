"""``Idempotency-Key`` for the send API: the same key within 24 h replays the first response."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import Conflict, InvalidInput
from notiflow.kit.ids import utcnow
from notiflow.models import IdempotencyKey

MAX_KEY_LENGTH = 255


def request_fingerprint(body: Any) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
            details=[{"loc": ["header", "Idempotency-Key"], "msg": "invalid"}],
        )
    return key


async def find_replay(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    ttl: timedelta,
) -> IdempotencyKey | None:
    """The stored first response for this key, or None when the request is new.

    A key reused with a different body is refused (409) rather than silently replayed.
    """
    stored = await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant_id,
            IdempotencyKey.user_id == user_id,
            IdempotencyKey.key == key,
        )
    )
    if stored is None:
        return None
    if stored.created_at <= utcnow() - ttl:
        await session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == stored.id))
        return None
    if stored.request_hash != fingerprint:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return stored


async def remember(
    session: AsyncSession,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    key: str,
    fingerprint: str,
    status_code: int,
    response: dict[str, Any],
) -> None:
    session.add(
        IdempotencyKey(
            tenant_id=tenant_id,
            user_id=user_id,
            key=key,
            request_hash=fingerprint,
            status_code=status_code,
            response=response,
        )
    )
    try:
        await session.flush()
    except IntegrityError:
        # A concurrent request with the same key won the race; this one's work is rolled back.
        raise Conflict(
            "a request with this Idempotency-Key is already being processed; retry shortly",
            code="idempotency_key_in_use",
        ) from None


async def delete_expired(session: AsyncSession, ttl: timedelta) -> int:
    result: Any = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at <= utcnow() - ttl)
    )
    return int(result.rowcount or 0)
