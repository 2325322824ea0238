"""Loading recipients for preference resolution: the user's switches, role and preference row.

The one loader of :class:`~notiflow.notifications.policy.Recipient`, used when a notification is
sent and again when the delivery worker re-checks a delivery, so both decide on the same facts::

    recipients = await load_recipients(session, tenant_id, NotificationType.POST_PUBLISHED)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.bulk import chunks
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Membership, NotificationPreference, User
from notiflow.models.tenancy import Role
from notiflow.notifications.policy import PreferenceFlags, Recipient
from notiflow.notifications.types import NotificationType


async def load_recipients(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    notification_type: NotificationType,
    user_ids: Sequence[uuid.UUID] | None = None,
) -> list[Recipient]:
    """The members of the tenant among ``user_ids`` (every member when None), ordered by user
    id, each with their preference for ``notification_type``. A user who is not a member of the
    tenant is left out."""
    user_query = (
        select(
            User.id,
            User.email_notifications_enabled,
            User.push_notifications_enabled,
            User.phone_number,
            User.phone_verified_at,
            Membership.role,
        )
        .join(Membership, Membership.user_id == User.id)
        .where(in_tenant(Membership, tenant_id))
        .order_by(User.id)
    )
    preference_query = select(
        NotificationPreference.user_id,
        NotificationPreference.in_app_enabled,
        NotificationPreference.email_enabled,
        NotificationPreference.push_enabled,
    ).where(NotificationPreference.notification_type == notification_type.value)

    user_rows: list[Any] = []
    preference_rows: list[Any] = []
    if user_ids is None:
        user_rows.extend(await session.execute(user_query))
        members = select(Membership.user_id).where(in_tenant(Membership, tenant_id))
        preference_rows.extend(
            await session.execute(
                preference_query.where(NotificationPreference.user_id.in_(members))
            )
        )
    else:
        for chunk in chunks(user_ids):
            user_rows.extend(await session.execute(user_query.where(User.id.in_(chunk))))
            preference_rows.extend(
                await session.execute(
                    preference_query.where(NotificationPreference.user_id.in_(chunk))
                )
            )
    preferences = {
        row.user_id: PreferenceFlags(row.in_app_enabled, row.email_enabled, row.push_enabled)
        for row in preference_rows
    }
    return [
        Recipient(
            user_id=row.id,
            email_enabled=row.email_notifications_enabled,
            push_enabled=row.push_notifications_enabled,
            has_verified_phone=row.phone_number is not None and row.phone_verified_at is not None,
            is_admin=Role(row.role).is_admin,
            preferences=({notification_type: preferences[row.id]} if row.id in preferences else {}),
        )
        for row in user_rows
    ]


__all__ = ["load_recipients"]
