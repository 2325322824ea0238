"""Who is acting: one name for it everywhere (routes, services, the audit trail).

An :class:`Actor` is whoever makes a change: a user, or the system (a job, a CLI command:
``user_id`` None). A request signed with a bearer token acts as an :class:`AuthenticatedActor`:
the same, plus the user row and the token, within the token's tenant.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from notiflow.models import User
from notiflow.models.tenancy import Role


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    user_id: uuid.UUID | None
    tenant_id: uuid.UUID | None
    role: Role | None = None
    ip_address: str | None = None

    @property
    def is_admin(self) -> bool:
        """A tenant owner or admin (they may review posts, change settings, manage members)."""
        return self.role is not None and self.role.is_admin


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticatedActor(Actor):
    """A user acting through the API with one of their tokens, within the token's tenant."""

    user: User
    token_id: uuid.UUID
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role
