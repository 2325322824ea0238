"""The authenticated user's resource (it carries both notification switches)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from notiflow.auth.actor import AuthenticatedActor


class UserData(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    locale: str
    timezone: str
    tenant_id: uuid.UUID
    role: str
    email_notifications_enabled: bool
    push_notifications_enabled: bool
    created_at: str

    @classmethod
    def from_auth(cls, auth: AuthenticatedActor) -> UserData:
        user = auth.user
        return cls(
            id=user.id,
            email=user.email,
            name=user.name,
            locale=user.locale,
            timezone=user.timezone,
            tenant_id=auth.tenant_id,
            role=auth.role.value,
            email_notifications_enabled=user.email_notifications_enabled,
            push_notifications_enabled=user.push_notifications_enabled,
            created_at=user.created_at.isoformat().replace("+00:00", "Z"),
        )
