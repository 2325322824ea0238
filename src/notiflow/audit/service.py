"""Writing audit entries. Called inside the transaction that makes the change it records."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.models import AuditLog


async def record(
    session: AsyncSession,
    *,
    action: str,
    subject_type: str,
    subject_id: str | uuid.UUID | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    actor_id: uuid.UUID | None,
    tenant_id: uuid.UUID | None,
    ip_address: str | None = None,
) -> AuditLog:
    entry = AuditLog(
        tenant_id=tenant_id,
        actor_id=actor_id,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id) if subject_id is not None else None,
        before=before,
        after=after,
        ip_address=ip_address,
    )
    session.add(entry)
    await session.flush()
    return entry
