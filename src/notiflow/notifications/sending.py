"""Sending notifications: one user, several members or a whole tenant.

A send decides every requested channel for every recipient (:mod:`notiflow.notifications.policy`),
writes the notification rows and the delivery ledger in bulk, and queues the after-commit
effects: cache invalidation, the live events, and (through the events' listeners) the delivery
jobs. It flushes and never commits::

    payload = NotificationPayload(type=..., title=..., message=...)
    result = await sender.send_to_tenant(tenant_id, payload)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, overload

from sqlalchemy import Table, select

from notiflow.kit.after_commit import after_commit
from notiflow.kit.bulk import bulk_insert, chunks, insert_new_rows
from notiflow.kit.errors import InvalidInput, NotFound
from notiflow.kit.ids import new_id, utcnow
from notiflow.models import (
    Membership,
    Notification,
    NotificationDelivery,
    PushSubscription,
    Tenant,
    User,
)
from notiflow.notifications.context import NotificationContext
from notiflow.notifications.events import NotificationRecord
from notiflow.notifications.ledger import (
    NO_PUSH_SUBSCRIPTION,
    WEB_PUSH_NOT_CONFIGURED,
    DeliveryStatus,
)
from notiflow.notifications.policy import (
    Decision,
    TenantNotificationSettings,
    resolve,
)
from notiflow.notifications.recipients import load_recipients
from notiflow.notifications.sequences import next_sequences
from notiflow.notifications.types import (
    EXTERNAL_CHANNELS,
    NotificationChannel,
    NotificationType,
    type_spec,
)


@dataclass(frozen=True, slots=True)
class NotificationPayload:
    """What to tell: a ``payload``, or the arguments of ``send``."""

    type: NotificationType
    title: str
    message: str
    data: dict[str, Any] | None = None
    action_url: str | None = None
    icon: str | None = None
    # The same key for the same user and channel creates nothing the second time.
    dedupe_key: str | None = None


@dataclass(slots=True)
class SendResult:
    event_id: uuid.UUID
    notifications: list[NotificationRecord] = field(default_factory=list)
    deduplicated_user_ids: list[uuid.UUID] = field(default_factory=list)


class NotificationSender(NotificationContext):
    """Writes notifications and their delivery ledger; decides each channel per recipient."""

    @overload
    async def send(
        self,
        user: User | uuid.UUID,
        what: NotificationPayload,
        *,
        channels: Sequence[NotificationChannel] | None = None,
        tenant_id: uuid.UUID | None = None,
    ) -> Notification: ...

    @overload
    async def send(
        self,
        user: User | uuid.UUID,
        what: NotificationType,
        title: str,
        message: str,
        data: dict[str, Any] | None = None,
        action_url: str | None = None,
        *,
        icon: str | None = None,
        channels: Sequence[NotificationChannel] | None = None,
        tenant_id: uuid.UUID | None = None,
        dedupe_key: str | None = None,
    ) -> Notification: ...

    async def send(
        self,
        user: User | uuid.UUID,
        what: NotificationPayload | NotificationType,
        title: str | None = None,
        message: str | None = None,
        data: dict[str, Any] | None = None,
        action_url: str | None = None,
        *,
        icon: str | None = None,
        channels: Sequence[NotificationChannel] | None = None,
        tenant_id: uuid.UUID | None = None,
        dedupe_key: str | None = None,
    ) -> Notification:
        """Notify one user. Either the form ``send(user, type, title, message, data,
        action_url)`` or ``send(user, payload, channels=[...])``.

        ``tenant_id`` may be omitted when the user belongs to exactly one tenant. Returns the
        stored notification; with a ``dedupe_key`` already used, the first one.
        """
        payload = _as_payload(what, title, message, data, action_url, icon, dedupe_key)
        user_id = user.id if isinstance(user, User) else user
        tenant_id = tenant_id or await self._only_tenant_of(user_id)
        result = await self._send(tenant_id, [user_id], payload, channels)
        if result.notifications:
            notification = await self.session.get(Notification, result.notifications[0].id)
        else:
            notification = await self._find_deduplicated(user_id, payload, channels)
        if notification is None:  # pragma: no cover - the row was just written or found
            raise NotFound("notification not found")
        return notification

    async def send_to_users(
        self,
        users: Iterable[User | uuid.UUID],
        payload: NotificationPayload,
        *,
        tenant_id: uuid.UUID,
        channels: Sequence[NotificationChannel] | None = None,
    ) -> SendResult:
        """Notify several members of one tenant; ids that are not members are refused (422)."""
        user_ids = list(dict.fromkeys(u.id if isinstance(u, User) else u for u in users))
        if not user_ids:
            raise InvalidInput("no recipients given")
        return await self._send(tenant_id, user_ids, payload, channels)

    async def send_to_tenant(
        self,
        tenant: Tenant | uuid.UUID,
        payload: NotificationPayload,
        *,
        channels: Sequence[NotificationChannel] | None = None,
    ) -> SendResult:
        """Notify every member of a tenant, as one bulk write."""
        tenant_id = tenant.id if isinstance(tenant, Tenant) else tenant
        return await self._send(tenant_id, None, payload, channels)

    async def _send(
        self,
        tenant_id: uuid.UUID,
        user_ids: list[uuid.UUID] | None,
        payload: NotificationPayload,
        channels: Sequence[NotificationChannel] | None,
    ) -> SendResult:
        tenant = await self.session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        tenant_settings = TenantNotificationSettings.from_tenant_settings(tenant.settings)
        requested = _requested_channels(payload.type, channels, tenant_settings)
        recipients = await load_recipients(self.session, tenant_id, payload.type, user_ids)
        if user_ids is not None and len(recipients) != len(user_ids):
            known = {recipient.user_id for recipient in recipients}
            unknown = [str(user_id) for user_id in user_ids if user_id not in known]
            raise InvalidInput(
                "some recipients are not members of this tenant",
                details=[{"loc": ["body", "user_ids"], "msg": "not a member", "ids": unknown}],
            )

        now = utcnow()
        event_id = new_id()
        primary_channel = (
            NotificationChannel.IN_APP
            if NotificationChannel.IN_APP in requested
            else next(c for c in requested)
        )
        icon = payload.icon or type_spec(payload.type).icon
        notification_rows: list[dict[str, Any]] = []
        decisions_by_id: dict[uuid.UUID, dict[NotificationChannel, Decision]] = {}
        for recipient in recipients:
            decisions = {
                channel: resolve(
                    payload.type, channel, recipient, tenant_settings, self.push_rollout
                )
                for channel in requested
            }
            visible = (
                NotificationChannel.IN_APP in decisions
                and decisions[NotificationChannel.IN_APP].allowed
            )
            notification_id = new_id()
            decisions_by_id[notification_id] = decisions
            notification_rows.append(
                {
                    "id": notification_id,
                    "tenant_id": tenant_id,
                    "user_id": recipient.user_id,
                    "type": payload.type.value,
                    "channel": primary_channel.value,
                    "title": payload.title,
                    "message": payload.message,
                    "data": payload.data,
                    "action_url": payload.action_url,
                    "icon": icon,
                    # Stored either way; without in-app it raises no badge.
                    "read_at": None if visible else now,
                    "event_id": event_id,
                    "dedupe_key": payload.dedupe_key,
                    "sequence": None,
                    "created_at": now,
                    "updated_at": now,
                }
            )

        result = SendResult(event_id=event_id)
        if not notification_rows:
            return result
        await self._assign_sequences(notification_rows, decisions_by_id)
        inserted_rows = await self._insert_notifications(notification_rows, payload.dedupe_key)
        if len(inserted_rows) != len(notification_rows):
            inserted_users = {row["user_id"] for row in inserted_rows}
            result.deduplicated_user_ids = [
                row["user_id"] for row in notification_rows if row["user_id"] not in inserted_users
            ]

        no_web_push = await self._without_web_push(
            [
                row["user_id"]
                for row in inserted_rows
                if (push := decisions_by_id[row["id"]].get(NotificationChannel.PUSH)) is not None
                and push.allowed
            ]
        )
        delivery_rows: list[dict[str, Any]] = []
        pending_by_notification: dict[uuid.UUID, list[uuid.UUID]] = {}
        for row in inserted_rows:
            for channel, decision in decisions_by_id[row["id"]].items():
                if channel is NotificationChannel.IN_APP and decision.allowed:
                    continue  # the feed row itself is the in-app delivery
                delivery_id = new_id()
                reason = decision.reason.value if decision.reason else None
                pending = decision.allowed
                unreachable = no_web_push.get(row["user_id"])
                if pending and channel is NotificationChannel.PUSH and unreachable is not None:
                    # Nothing to deliver to: the live event still goes out (push_allowed).
                    pending, reason = False, unreachable
                if pending:
                    pending_by_notification.setdefault(row["id"], []).append(delivery_id)
                delivery_rows.append(
                    {
                        "id": delivery_id,
                        "notification_id": row["id"],
                        "tenant_id": tenant_id,
                        "user_id": row["user_id"],
                        "channel": channel.value,
                        "status": DeliveryStatus.PENDING if pending else DeliveryStatus.SUPPRESSED,
                        "reason": reason,
                        "attempts": 0,
                        "next_attempt_at": now if pending else None,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        await bulk_insert(self.session, cast(Table, NotificationDelivery.__table__), delivery_rows)

        for row in inserted_rows:
            decisions = decisions_by_id[row["id"]]
            push = decisions.get(NotificationChannel.PUSH)
            result.notifications.append(
                NotificationRecord(
                    id=row["id"],
                    tenant_id=tenant_id,
                    user_id=row["user_id"],
                    event_id=event_id,
                    type=row["type"],
                    channel=row["channel"],
                    title=row["title"],
                    message=row["message"],
                    data=row["data"],
                    action_url=row["action_url"],
                    icon=row["icon"],
                    read_at=row["read_at"],
                    created_at=now,
                    push_allowed=push is not None and push.allowed,
                    pending_delivery_ids=tuple(pending_by_notification.get(row["id"], ())),
                    sequence=row["sequence"],
                )
            )
        unread_keys = [
            (record.user_id, tenant_id) for record in result.notifications if record.read_at is None
        ]
        records = list(result.notifications)

        async def announce() -> None:
            # Cache first (a client reacting to the event must read the new count), then the
            # notification itself, then the badge.
            if unread_keys:
                await self.cache.invalidate(unread_keys)
            await self.events.notifications_created(records)
            if unread_keys:
                await self.events.unread_counts_changed(unread_keys)

        after_commit(self.session, announce)
        return result

    async def _assign_sequences(
        self,
        rows: list[dict[str, Any]],
        decisions_by_id: dict[uuid.UUID, dict[NotificationChannel, Decision]],
    ) -> None:
        """Give each notification that will raise a live event its user's next sequence (a
        deduplicated one leaves a gap: sequences increase, they are not consecutive)."""
        pushed = [
            row
            for row in rows
            if (push := decisions_by_id[row["id"]].get(NotificationChannel.PUSH)) is not None
            and push.allowed
        ]
        sequences = await next_sequences(self.session, [row["user_id"] for row in pushed])
        for row in pushed:
            row["sequence"] = sequences[row["user_id"]]

    async def _without_web_push(self, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Of these users, those Web Push cannot reach, with the ledger reason (the same the
        push worker records when it finds nothing to send to)."""
        if self.web_push_configured is None or not user_ids:
            return {}
        if not self.web_push_configured:
            return dict.fromkeys(user_ids, WEB_PUSH_NOT_CONFIGURED)
        subscribed: set[uuid.UUID] = set()
        for chunk in chunks(list(dict.fromkeys(user_ids))):
            subscribed.update(
                await self.session.scalars(
                    select(PushSubscription.user_id)
                    .where(PushSubscription.user_id.in_(chunk))
                    .distinct()
                )
            )
        return {user_id: NO_PUSH_SUBSCRIPTION for user_id in user_ids if user_id not in subscribed}

    async def _insert_notifications(
        self, rows: list[dict[str, Any]], dedupe_key: str | None
    ) -> list[dict[str, Any]]:
        table = cast(Table, Notification.__table__)
        if dedupe_key is None:
            await bulk_insert(self.session, table, rows)
            return rows
        inserted_ids = await insert_new_rows(
            self.session, table, rows, unique_on=["user_id", "channel", "dedupe_key"]
        )
        return [row for row in rows if row["id"] in inserted_ids]

    async def _only_tenant_of(self, user_id: uuid.UUID) -> uuid.UUID:
        tenant_ids = (
            await self.session.scalars(
                select(Membership.tenant_id).where(Membership.user_id == user_id).limit(2)
            )
        ).all()
        if len(tenant_ids) != 1:
            raise InvalidInput(
                "tenant_id is required: the user belongs to "
                + ("no tenant" if not tenant_ids else "several tenants")
            )
        return tenant_ids[0]

    async def _find_deduplicated(
        self,
        user_id: uuid.UUID,
        payload: NotificationPayload,
        channels: Sequence[NotificationChannel] | None,
    ) -> Notification | None:
        found: Notification | None = await self.session.scalar(
            select(Notification).where(
                Notification.user_id == user_id,
                Notification.dedupe_key == payload.dedupe_key,
            )
        )
        return found


def _as_payload(
    what: NotificationPayload | NotificationType,
    title: str | None,
    message: str | None,
    data: dict[str, Any] | None,
    action_url: str | None,
    icon: str | None,
    dedupe_key: str | None,
) -> NotificationPayload:
    if isinstance(what, NotificationPayload):
        return what
    if title is None or message is None:
        raise InvalidInput("title and message are required")
    return NotificationPayload(
        type=NotificationType(what),
        title=title,
        message=message,
        data=data,
        action_url=action_url,
        icon=icon,
        dedupe_key=dedupe_key,
    )


def _requested_channels(
    notification_type: NotificationType,
    channels: Sequence[NotificationChannel] | None,
    tenant: TenantNotificationSettings,
) -> list[NotificationChannel]:
    """The channels to decide on. Explicit ones as given (in canonical order); otherwise in-app,
    email and push always, and SMS where the type or the tenant's settings use it."""
    if channels is not None:
        wanted = {NotificationChannel(channel) for channel in channels}
        if not wanted:
            raise InvalidInput("channels must name at least one channel")
        return [channel for channel in NotificationChannel if channel in wanted]
    requested = [NotificationChannel.IN_APP, *EXTERNAL_CHANNELS[:2]]
    sms = NotificationChannel.SMS
    if (
        type_spec(notification_type).sms
        or sms in tenant.policy.get(notification_type, {})
        or tenant.defaults.get(notification_type, {}).get(sms)
    ):
        requested.append(sms)
    return requested


__all__ = ["NotificationPayload", "NotificationSender", "SendResult"]
