"""Bootstrapping tenants and users (the CLI and the demo use this)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.auth.service import hash_password
from notiflow.kit.errors import Conflict
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Membership, Tenant, User
from notiflow.models.tenancy import Role


@dataclass(frozen=True, slots=True)
class CreatedUser:
    user: User
    tenant: Tenant
    membership: Membership
    tenant_created: bool


async def get_or_create_tenant(session: AsyncSession, name: str) -> tuple[Tenant, bool]:
    tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is not None:
        return tenant, False
    tenant = Tenant(name=name, settings={})
    session.add(tenant)
    await session.flush()
    return tenant, True


async def create_user(
    session: AsyncSession,
    *,
    tenant_name: str,
    email: str,
    name: str | None = None,
    role: Role = Role.MEMBER,
    password: str | None = None,
    locale: str = "en",
    timezone: str = "UTC",
) -> CreatedUser:
    """Create the tenant if needed and the user in it. An existing user (same email) is added to
    the tenant; one who is already a member is refused (409)."""
    tenant, tenant_created = await get_or_create_tenant(session, tenant_name)
    email = email.strip().lower()
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(
            email=email,
            name=name or email.split("@")[0],
            password_hash=hash_password(password) if password else None,
            locale=locale,
            timezone=timezone,
        )
        session.add(user)
        await session.flush()
    else:
        existing = await session.scalar(
            select(Membership).where(
                Membership.user_id == user.id, in_tenant(Membership, tenant.id)
            )
        )
        if existing is not None:
            raise Conflict(f"{email} is already a member of {tenant_name}", code="already_member")
        if password:
            user.password_hash = hash_password(password)
    membership = Membership(tenant_id=tenant.id, user_id=user.id, role=role.value)
    session.add(membership)
    await session.flush()
    return CreatedUser(
        user=user, tenant=tenant, membership=membership, tenant_created=tenant_created
    )


async def admin_user_ids(session: AsyncSession, tenant_id: uuid.UUID) -> list[uuid.UUID]:
    """The tenant's owners and admins: who hears about accounts, approvals and failures."""
    return list(
        (
            await session.scalars(
                select(Membership.user_id)
                .where(
                    in_tenant(Membership, tenant_id),
                    Membership.role.in_([Role.OWNER.value, Role.ADMIN.value]),
                )
                .order_by(Membership.created_at)
            )
        ).all()
    )


async def is_member(session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(Membership.id).where(in_tenant(Membership, tenant_id), Membership.user_id == user_id)
    )
    return found is not None
