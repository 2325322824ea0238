"""``Idempotency-Key`` for the send API: the same key within 24 h replays the first response.

``send_once`` is the send API's rule in one call::

    outcome = await send_once(session, service, body, tenant_id=..., user_id=..., key=..., ttl=...)
    if isinstance(outcome, Replay):
        ...  # answer outcome.status_code with outcome.response, creating nothing
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import Conflict, InvalidInput
from notiflow.kit.ids import utcnow
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import IdempotencyKey
from notiflow.notifications.schemas import (
    DataEnvelope,
    SendNotificationRequest,
    SendResponseData,
    SentNotification,
)
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.service import NotificationService

MAX_KEY_LENGTH = 255
SEND_STATUS_CODE = 202


@dataclass(frozen=True, slots=True)
class Replay:
    """The first response to a key, answered again instead of sending twice."""

    status_code: int
    response: dict[str, Any]


async def send_once(
    session: AsyncSession,
    service: NotificationService,
    request: SendNotificationRequest,
    *,
    tenant_id: uuid.UUID,
    user_id: uuid.UUID,
    key: str | None,
    ttl: timedelta,
) -> DataEnvelope[SendResponseData] | Replay:
    """Send to some members (``user_ids``) or all (``audience: "tenant"``) of the tenant, at most
    once per ``key`` of the sender within ``ttl``: the same key again answers the first response
    and creates nothing; with another body it is refused (409). Without a key, every call sends."""
    fingerprint = request_fingerprint(request.model_dump(mode="json"))
    if key is not None:
        check_key(key)
        stored = await find_replay(
            session,
            tenant_id=tenant_id,
            user_id=user_id,
            key=key,
            fingerprint=fingerprint,
            ttl=ttl,
        )
        if stored is not None:
            return Replay(status_code=stored.status_code, response=stored.response)
    payload = NotificationPayload(
        type=request.type,
        title=request.title,
        message=request.message,
        data=request.data,
        action_url=request.action_url,
        icon=request.icon,
        dedupe_key=request.dedupe_key,
    )
    if request.audience == "tenant":
        result = await service.send_to_tenant(tenant_id, payload, channels=request.channels)
    else:
        result = await service.send_to_users(
            request.user_ids or [], payload, tenant_id=tenant_id, channels=request.channels
        )
    response: DataEnvelope[SendResponseData] = DataEnvelope(
        data=SendResponseData(
            event_id=result.event_id,
            created=len(result.notifications),
            deduplicated=len(result.deduplicated_user_ids),
            notifications=[
                SentNotification(id=record.id, user_id=record.user_id)
                for record in result.notifications
            ],
        )
    )
    if key is not None:
        await remember(
            session,
            tenant_id=tenant_id,
            user_id=user_id,
            key=key,
            fingerprint=fingerprint,
            status_code=SEND_STATUS_CODE,
            response=response.model_dump(mode="json"),
        )
    return response


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
            in_tenant(IdempotencyKey, tenant_id),
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
