"""Notification preferences: per type and channel, and the user's master switches.

Each real change is written to the audit trail with its before and after, in the transaction
that makes it::

    await preferences.update_preferences(user_id, [PreferenceUpdate(type_, email_enabled=False)],
                                         actor=actor)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from notiflow.audit import service as audit
from notiflow.auth.actor import Actor
from notiflow.kit.errors import InvalidInput
from notiflow.models import NotificationPreference, User
from notiflow.notifications.context import NotificationContext
from notiflow.notifications.types import TYPE_REGISTRY, NotificationType, type_spec


@dataclass(frozen=True, slots=True)
class PreferenceUpdate:
    notification_type: NotificationType
    in_app_enabled: bool = True
    email_enabled: bool = True
    push_enabled: bool = False


class NotificationPreferences(NotificationContext):
    """Reads and changes what a user wants to be told, and where."""

    async def get_preferences(self, user_id: uuid.UUID) -> list[PreferenceUpdate]:
        """One entry per notification type: the user's choice, or the type's default."""
        stored = {
            row.notification_type: row
            for row in (
                await self.session.scalars(
                    select(NotificationPreference).where(NotificationPreference.user_id == user_id)
                )
            ).all()
        }
        preferences: list[PreferenceUpdate] = []
        for notification_type, spec in TYPE_REGISTRY.items():
            row = stored.get(notification_type.value)
            preferences.append(
                PreferenceUpdate(
                    notification_type=notification_type,
                    in_app_enabled=row.in_app_enabled if row else spec.in_app,
                    email_enabled=row.email_enabled if row else spec.email,
                    push_enabled=row.push_enabled if row else spec.push,
                )
            )
        return preferences

    async def update_preference(
        self,
        user_id: uuid.UUID,
        notification_type: NotificationType,
        in_app: bool,
        email: bool,
        push: bool,
        *,
        actor: Actor,
    ) -> NotificationPreference:
        [preference] = await self.update_preferences(
            user_id,
            [PreferenceUpdate(notification_type, in_app, email, push)],
            actor=actor,
        )
        return preference

    async def update_preferences(
        self, user_id: uuid.UUID, updates: Sequence[PreferenceUpdate], *, actor: Actor
    ) -> list[NotificationPreference]:
        """Upsert per-type preferences; each real change is audited with before and after."""
        types = [update.notification_type.value for update in updates]
        if len(set(types)) != len(types):
            raise InvalidInput("each notification_type may appear only once")
        existing = {
            row.notification_type: row
            for row in (
                await self.session.scalars(
                    select(NotificationPreference).where(
                        NotificationPreference.user_id == user_id,
                        NotificationPreference.notification_type.in_(types),
                    )
                )
            ).all()
        }
        saved: list[NotificationPreference] = []
        for change in updates:
            spec = type_spec(change.notification_type)
            row = existing.get(change.notification_type.value)
            before = (
                _preference_state(row.in_app_enabled, row.email_enabled, row.push_enabled)
                if row
                else _preference_state(spec.in_app, spec.email, spec.push) | {"default": True}
            )
            if row is None:
                row = NotificationPreference(
                    user_id=user_id, notification_type=change.notification_type.value
                )
                self.session.add(row)
            row.in_app_enabled = change.in_app_enabled
            row.email_enabled = change.email_enabled
            row.push_enabled = change.push_enabled
            after = _preference_state(
                change.in_app_enabled, change.email_enabled, change.push_enabled
            )
            if before != after:
                await audit.record(
                    self.session,
                    action="notification_preference.updated",
                    subject_type="notification_preference",
                    subject_id=f"{user_id}:{change.notification_type.value}",
                    before=before,
                    after=after,
                    actor_id=actor.user_id,
                    tenant_id=actor.tenant_id,
                    ip_address=actor.ip_address,
                )
            saved.append(row)
        await self.session.flush()
        return saved

    async def update_global_settings(
        self,
        user: User,
        *,
        email_enabled: bool | None,
        push_enabled: bool | None,
        actor: Actor,
    ) -> User:
        """The user's master switches for the email and push channels (audited)."""
        before = {
            "email_notifications_enabled": user.email_notifications_enabled,
            "push_notifications_enabled": user.push_notifications_enabled,
        }
        if email_enabled is not None:
            user.email_notifications_enabled = email_enabled
        if push_enabled is not None:
            user.push_notifications_enabled = push_enabled
        after = {
            "email_notifications_enabled": user.email_notifications_enabled,
            "push_notifications_enabled": user.push_notifications_enabled,
        }
        if before != after:
            await audit.record(
                self.session,
                action="user.notification_settings.updated",
                subject_type="user",
                subject_id=user.id,
                before=before,
                after=after,
                actor_id=actor.user_id,
                tenant_id=actor.tenant_id,
                ip_address=actor.ip_address,
            )
        await self.session.flush()
        return user


def _preference_state(in_app: bool, email: bool, push: bool) -> dict[str, Any]:
    return {"in_app_enabled": in_app, "email_enabled": email, "push_enabled": push}


__all__ = ["NotificationPreferences", "PreferenceUpdate"]
