"""Members of a tenant: listing them, changing a role, removing someone (owners and admins).

The rules (see ``docs/decisions.md``): only owners and admins manage members; an admin cannot
make anyone an owner, nor change or remove an owner; the last owner can be neither demoted nor
removed. A removed member's tokens for the tenant are deleted in the same transaction, so they
stop working at once. Each change is audited with before/after and the person concerned is
notified (``role_changed``, ``member_removed``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import AuthenticatedActor
from notiflow.kit.errors import Conflict, Forbidden, NotFound
from notiflow.kit.pagination import Page
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Membership, PersonalAccessToken, Tenant, User
from notiflow.models.tenancy import Role
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationType


@dataclass(frozen=True, slots=True)
class MemberView:
    user_id: uuid.UUID
    email: str
    name: str
    role: Role
    joined_at: datetime


async def list_members(
    session: AsyncSession, tenant_id: uuid.UUID, *, page: int = 1, per_page: int = 50
) -> Page[MemberView]:
    """The tenant's members, oldest membership first."""
    query = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(in_tenant(Membership, tenant_id))
    )
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = (
        await session.execute(
            query.order_by(Membership.created_at, Membership.id)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    ).all()
    items = [
        MemberView(
            user_id=user.id,
            email=user.email,
            name=user.name,
            role=Role(membership.role),
            joined_at=membership.created_at,
        )
        for membership, user in rows
    ]
    return Page(items=items, per_page=per_page, next_cursor=None, page=page, total=total or 0)


async def _membership(
    session: AsyncSession, tenant_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[Membership, User]:
    row = (
        await session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(in_tenant(Membership, tenant_id), Membership.user_id == user_id)
            .with_for_update(of=Membership)
        )
    ).first()
    if row is None:  # not a member here: another tenant's user looks the same as nobody
        raise NotFound("member not found")
    return row[0], row[1]


async def _owner_count(session: AsyncSession, tenant_id: uuid.UUID) -> int:
    return (
        await session.scalar(
            select(func.count()).where(
                in_tenant(Membership, tenant_id), Membership.role == Role.OWNER.value
            )
        )
    ) or 0


def _check_may_manage(actor: AuthenticatedActor, target_role: Role) -> None:
    if not actor.is_admin:
        raise Forbidden("only tenant owners and admins may manage members")
    if target_role is Role.OWNER and actor.role is not Role.OWNER:
        raise Forbidden("only an owner may change or remove an owner", code="owner_required")


async def _tenant_name(session: AsyncSession, tenant_id: uuid.UUID) -> str:
    return (await session.scalar(select(Tenant.name).where(Tenant.id == tenant_id))) or ""


async def change_role(
    session: AsyncSession,
    notifications: NotificationService,
    actor: AuthenticatedActor,
    user_id: uuid.UUID,
    role: Role,
) -> MemberView:
    """Give a member another role; ``role_changed`` tells them. The same role changes nothing."""
    membership, user = await _membership(session, actor.tenant_id, user_id)
    before = Role(membership.role)
    _check_may_manage(actor, before)
    if role is Role.OWNER and actor.role is not Role.OWNER:
        raise Forbidden("only an owner may make someone an owner", code="owner_required")
    if before is role:
        return MemberView(user.id, user.email, user.name, role, membership.created_at)
    if before is Role.OWNER and await _owner_count(session, actor.tenant_id) <= 1:
        raise Conflict(
            "this is the tenant's last owner: make someone else owner first", code="last_owner"
        )
    membership.role = role.value
    await session.flush()
    await audit.record(
        session,
        action="member.role_changed",
        subject_type="user",
        subject_id=user.id,
        before={"role": before.value},
        after={"role": role.value},
        actor_id=actor.user_id,
        tenant_id=actor.tenant_id,
        ip_address=actor.ip_address,
    )
    tenant_name = await _tenant_name(session, actor.tenant_id)
    await notifications.send(
        user.id,
        NotificationPayload(
            type=NotificationType.ROLE_CHANGED,
            title=f"Your role in {tenant_name} is now {role.value}",
            message=f"{actor.user.name} changed your role from {before.value} to {role.value}.",
            data={
                "tenant_id": str(actor.tenant_id),
                "old_role": before.value,
                "new_role": role.value,
                "changed_by": str(actor.user_id),
            },
        ),
        tenant_id=actor.tenant_id,
    )
    return MemberView(user.id, user.email, user.name, role, membership.created_at)


async def remove_member(
    session: AsyncSession,
    notifications: NotificationService,
    actor: AuthenticatedActor,
    user_id: uuid.UUID,
) -> None:
    """Remove a member: ``member_removed`` tells them, and their tokens for this tenant are
    deleted (they get 401 at once). Their account and other tenants are untouched."""
    membership, user = await _membership(session, actor.tenant_id, user_id)
    role = Role(membership.role)
    _check_may_manage(actor, role)
    if role is Role.OWNER and await _owner_count(session, actor.tenant_id) <= 1:
        raise Conflict("this is the tenant's last owner: it cannot be removed", code="last_owner")
    tenant_name = await _tenant_name(session, actor.tenant_id)
    # Sent while they are still a member: recipients are members of the tenant.
    await notifications.send(
        user.id,
        NotificationPayload(
            type=NotificationType.MEMBER_REMOVED,
            title=f"You were removed from {tenant_name}",
            message=f"{actor.user.name} removed you from {tenant_name}.",
            data={"tenant_id": str(actor.tenant_id), "removed_by": str(actor.user_id)},
        ),
        tenant_id=actor.tenant_id,
    )
    revoked = await session.execute(
        delete(PersonalAccessToken).where(
            PersonalAccessToken.user_id == user.id, in_tenant(PersonalAccessToken, actor.tenant_id)
        )
    )
    await session.delete(membership)
    await session.flush()
    await audit.record(
        session,
        action="member.removed",
        subject_type="user",
        subject_id=user.id,
        before={"role": role.value, "email": user.email},
        after={"tokens_revoked": getattr(revoked, "rowcount", None)},
        actor_id=actor.user_id,
        tenant_id=actor.tenant_id,
        ip_address=actor.ip_address,
    )
