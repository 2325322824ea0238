"""The one-click unsubscribe rule: a valid token turns off one notification type's emails for
its user, leaving the type's other channels as they are.

The token is the permission, so no login is involved; the change is audited like any preference
change, with the user as the actor::

    target, user = await unsubscribe(settings, session, notifications, token, ip_address=ip)
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.auth.actor import Actor
from notiflow.config import Settings
from notiflow.delivery.unsubscribe import UnsubscribeTarget, read_unsubscribe_token
from notiflow.kit.errors import NotFound
from notiflow.models import Membership, User
from notiflow.notifications.service import NotificationService


async def resolve(
    settings: Settings, session: AsyncSession, token: str
) -> tuple[UnsubscribeTarget, User]:
    """What the token unsubscribes from and whom; 404 for a forged or damaged token or a user
    who no longer exists (one answer for all, so a token reveals nothing)."""
    target = read_unsubscribe_token(settings, token)
    if target is None:
        raise NotFound("this unsubscribe link is not valid")
    user = await session.get(User, target.user_id)
    if user is None:
        raise NotFound("this unsubscribe link is not valid")
    return target, user


async def unsubscribe(
    settings: Settings,
    session: AsyncSession,
    notifications: NotificationService,
    token: str,
    *,
    ip_address: str | None,
) -> tuple[UnsubscribeTarget, User]:
    """Turn off the token's notification type by email for its user (other flags unchanged).
    Repeating it is harmless: an unchanged preference is not audited again."""
    target, user = await resolve(settings, session, token)
    current = next(
        preference
        for preference in await notifications.get_preferences(user.id)
        if preference.notification_type is target.notification_type
    )
    await notifications.update_preference(
        user.id,
        target.notification_type,
        in_app=current.in_app_enabled,
        email=False,
        push=current.push_enabled,
        actor=Actor(
            user_id=user.id,
            tenant_id=await only_tenant_of(session, user.id),
            ip_address=ip_address,
        ),
    )
    return target, user


async def only_tenant_of(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID | None:
    """The tenant to file the audit entry under. Preferences belong to the user, not to one
    membership, so a user of several tenants gets an entry under none of them."""
    tenant_ids = (
        await session.scalars(
            select(Membership.tenant_id).where(Membership.user_id == user_id).limit(2)
        )
    ).all()
    return tenant_ids[0] if len(tenant_ids) == 1 else None
