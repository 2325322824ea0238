"""NotificationService: sending, reading, preferences and cleanup (spec 003 §5.1, spec 000 §2).

The service takes a session, flushes and never commits: the edge that owns the transaction
(the request, the job, the CLI command) commits once and then runs the after-commit effects
queued here (cache invalidation, live events, delivery jobs).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, cast, overload

from sqlalchemy import (
    JSON,
    Select,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.kit.after_commit import after_commit
from notiflow.kit.errors import InvalidInput, NotFound
from notiflow.kit.ids import new_id, utcnow
from notiflow.kit.pagination import Cursor, Page
from notiflow.models import (
    Membership,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    PushSubscription,
    Tenant,
    User,
)
from notiflow.models.tenancy import Role
from notiflow.notifications.events import NotificationEvents, NotificationRecord
from notiflow.notifications.policy import (
    Decision,
    PreferenceFlags,
    Reason,
    Recipient,
    TenantNotificationSettings,
    resolve,
)
from notiflow.notifications.types import (
    EXTERNAL_CHANNELS,
    TYPE_REGISTRY,
    NotificationChannel,
    NotificationType,
    type_spec,
)
from notiflow.notifications.unread import UnreadCountCache, UserTenant

T = TypeVar("T")

# Bound the number of bind parameters per statement (SQLite allows 32,766, PostgreSQL 32,767).
ID_CHUNK = 5_000


# Ledger reasons of a push delivery with nothing to deliver to (as notiflow.delivery.webpush).
WEB_PUSH_NOT_CONFIGURED = "webpush_not_configured"
NO_PUSH_SUBSCRIPTION = "no_push_subscription"


class DeliveryStatus:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


@dataclass(frozen=True, slots=True)
class NotificationPayload:
    """What to tell: spec 000's ``payload`` and the arguments of spec 003's ``send``."""

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


@dataclass(frozen=True, slots=True)
class PreferenceUpdate:
    notification_type: NotificationType
    in_app_enabled: bool = True
    email_enabled: bool = True
    push_enabled: bool = False


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is making a change, for the audit trail."""

    user_id: uuid.UUID | None
    tenant_id: uuid.UUID | None
    ip_address: str | None = None


@dataclass(frozen=True, slots=True)
class NotificationFilters:
    type: NotificationType | None = None
    is_read: bool | None = None
    channel: NotificationChannel | None = None


class NotificationService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        cache: UnreadCountCache,
        events: NotificationEvents,
        push_rollout: str | int = "all",
        web_push_configured: bool | None = None,
    ) -> None:
        self.session = session
        self.cache = cache
        self.events = events
        self.push_rollout = push_rollout
        # Whether Web Push can be sent at all (VAPID keys set). When known, a push delivery with
        # nothing to deliver to (no keys, or a user without a subscribed browser) is recorded
        # as suppressed at once, instead of waking a worker to find that out. None: unknown,
        # every allowed push delivery goes to the worker.
        self.web_push_configured = web_push_configured

    # ------------------------------------------------------------------ sending

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
        """Notify one user. Either spec 003's form ``send(user, type, title, message, data,
        action_url)`` or spec 000's ``send(user, payload, channels=[...])``.

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
        recipients = await self._load_recipients(tenant_id, user_ids, payload.type)
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
                    # Stored either way (spec 003 §14); without in-app it raises no badge.
                    "read_at": None if visible else now,
                    "event_id": event_id,
                    "dedupe_key": payload.dedupe_key,
                    "created_at": now,
                    "updated_at": now,
                }
            )

        result = SendResult(event_id=event_id)
        if not notification_rows:
            return result
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
        await self._bulk_insert(cast(Table, NotificationDelivery.__table__), delivery_rows)

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

    async def _without_web_push(self, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """Of these users, those Web Push cannot reach, with the ledger reason (the same the
        push worker records when it finds nothing to send to)."""
        if self.web_push_configured is None or not user_ids:
            return {}
        if not self.web_push_configured:
            return dict.fromkeys(user_ids, WEB_PUSH_NOT_CONFIGURED)
        subscribed: set[uuid.UUID] = set()
        for chunk in _chunks(list(dict.fromkeys(user_ids)), ID_CHUNK):
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
            await self._bulk_insert(table, rows)
            return rows
        dialect = self.session.get_bind().dialect.name
        dialect_insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        statement = (
            dialect_insert(table)
            .on_conflict_do_nothing(index_elements=["user_id", "channel", "dedupe_key"])
            .returning(table.c.id)
        )
        inserted_ids: set[uuid.UUID] = set()
        for chunk in _chunks(rows, ID_CHUNK):
            result = await self.session.execute(statement, chunk)
            inserted_ids.update(result.scalars().all())
        return [row for row in rows if row["id"] in inserted_ids]

    async def _bulk_insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert many rows in the session's transaction: COPY on PostgreSQL (the fastest path,
        ~3x an INSERT executemany for fan-out), multi-row INSERTs elsewhere. Every row must have
        the same keys."""
        if not rows:
            return
        connection = await self.session.connection()
        if connection.dialect.name != "postgresql":
            for chunk in _chunks(rows, ID_CHUNK):
                await self.session.execute(insert(table), chunk)
            return
        columns = list(rows[0])
        json_columns = {name for name in columns if isinstance(table.c[name].type, JSON)}
        records = [
            tuple(
                json.dumps(row[name])
                if name in json_columns and row[name] is not None
                else row[name]
                for name in columns
            )
            for row in rows
        ]
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=records, columns=columns
        )

    async def _load_recipients(
        self,
        tenant_id: uuid.UUID,
        user_ids: list[uuid.UUID] | None,
        notification_type: NotificationType,
    ) -> list[Recipient]:
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
            .where(Membership.tenant_id == tenant_id)
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
            user_rows.extend(await self.session.execute(user_query))
            members = select(Membership.user_id).where(Membership.tenant_id == tenant_id)
            preference_rows.extend(
                await self.session.execute(
                    preference_query.where(NotificationPreference.user_id.in_(members))
                )
            )
        else:
            for chunk in _chunks(user_ids, ID_CHUNK):
                user_rows.extend(await self.session.execute(user_query.where(User.id.in_(chunk))))
                preference_rows.extend(
                    await self.session.execute(
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
                has_verified_phone=row.phone_number is not None
                and row.phone_verified_at is not None,
                is_admin=Role(row.role).is_admin,
                preferences=(
                    {notification_type: preferences[row.id]} if row.id in preferences else {}
                ),
            )
            for row in user_rows
        ]

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

    # ------------------------------------------------------------------ reading

    async def get_for_user(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, notification_id: uuid.UUID
    ) -> Notification:
        """The user's own notification in this tenant, or 404 (never someone else's)."""
        notification: Notification | None = await self.session.scalar(
            select(Notification).where(
                Notification.id == notification_id,
                Notification.user_id == user_id,
                Notification.tenant_id == tenant_id,
            )
        )
        if notification is None:
            raise NotFound("notification not found")
        return notification

    async def mark_as_read(self, notification: Notification) -> Notification:
        if notification.read_at is None:
            now = utcnow()
            notification.read_at = now
            notification.seen_at = notification.seen_at or now
            await self.session.flush()
            self._after_unread_change([(notification.user_id, notification.tenant_id)])
        return notification

    async def mark_all_as_read(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> int:
        return await self._mark_read(user_id, tenant_id, None)

    async def mark_multiple_as_read(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
    ) -> int:
        """Mark the given notifications read; ids that are not the user's are ignored."""
        return await self._mark_read(user_id, tenant_id, list(dict.fromkeys(ids)))

    async def _mark_read(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, ids: list[uuid.UUID] | None
    ) -> int:
        now = utcnow()
        statement = (
            update(Notification)
            .where(
                Notification.user_id == user_id,
                Notification.tenant_id == tenant_id,
                Notification.read_at.is_(None),
            )
            .values(read_at=now, seen_at=func.coalesce(Notification.seen_at, now), updated_at=now)
            .execution_options(synchronize_session=False)
        )
        updated = 0
        for chunk in [None] if ids is None else list(_chunks(ids, ID_CHUNK)):
            query = statement if chunk is None else statement.where(Notification.id.in_(chunk))
            cursor_result: Any = await self.session.execute(query)
            updated += cursor_result.rowcount or 0
        if updated:
            self._after_unread_change([(user_id, tenant_id)])
        return updated

    async def list_for_user(
        self,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        filters: NotificationFilters | None = None,
        *,
        page: int = 1,
        per_page: int = 15,
        cursor: Cursor | None = None,
    ) -> Page[Notification]:
        """The user's feed, newest first. With ``cursor`` it pages by key (no totals);
        otherwise by page number with Laravel's totals. Both return ``next_cursor``."""
        query = self._feed_query(user_id, tenant_id, filters or NotificationFilters())
        total: int | None = None
        if cursor is not None:
            # A row comparison is an index bound on (created_at, id): a page deep in the history
            # costs as little as the first one.
            query = query.where(
                tuple_(Notification.created_at, Notification.id)
                < tuple_(cursor.created_at, cursor.id)
            )
        else:
            total = await self.session.scalar(
                select(func.count()).select_from(query.order_by(None).subquery())
            )
            query = query.offset((page - 1) * per_page)
        rows = list((await self.session.scalars(query.limit(per_page + 1))).all())
        has_more = len(rows) > per_page
        items = rows[:per_page]
        next_cursor = (
            Cursor(created_at=items[-1].created_at, id=items[-1].id).encode()
            if has_more and items
            else None
        )
        return Page(
            items=items,
            per_page=per_page,
            next_cursor=next_cursor,
            page=None if cursor is not None else page,
            total=total,
        )

    def _feed_query(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, filters: NotificationFilters
    ) -> Select[Notification]:
        query = (
            select(Notification)
            .where(
                Notification.user_id == user_id,
                Notification.tenant_id == tenant_id,
                Notification.archived_at.is_(None),
            )
            .order_by(Notification.created_at.desc(), Notification.id.desc())
        )
        if filters.type is not None:
            query = query.where(Notification.type == filters.type.value)
        if filters.channel is not None:
            query = query.where(Notification.channel == filters.channel.value)
        if filters.is_read is True:
            query = query.where(Notification.read_at.is_not(None))
        elif filters.is_read is False:
            query = query.where(Notification.read_at.is_(None))
        return query

    async def get_unread_count(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> int:
        cached, generation = await self.cache.get(user_id, tenant_id)
        if cached is not None:
            return cached
        count = await self.count_unread(user_id, tenant_id)
        await self.cache.store(user_id, tenant_id, generation, count)
        return count

    async def count_unread(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> int:
        """The unread count straight from the database (the cache's source of truth)."""
        count = await self.session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(
                Notification.user_id == user_id,
                Notification.tenant_id == tenant_id,
                Notification.read_at.is_(None),
                Notification.archived_at.is_(None),
            )
        )
        return int(count or 0)

    async def get_recent(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, limit: int = 10
    ) -> list[Notification]:
        query = self._feed_query(user_id, tenant_id, NotificationFilters()).limit(limit)
        return list((await self.session.scalars(query)).all())

    async def list_deliveries(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, notification_id: uuid.UUID
    ) -> tuple[Notification, list[NotificationDelivery]]:
        """The ledger of one notification: every channel's status and reason."""
        notification = await self.get_for_user(user_id, tenant_id, notification_id)
        deliveries = (
            await self.session.scalars(
                select(NotificationDelivery)
                .where(NotificationDelivery.notification_id == notification.id)
                .order_by(NotificationDelivery.channel)
            )
        ).all()
        return notification, list(deliveries)

    # ------------------------------------------------------------------ preferences

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
        """Spec 000's master switches for the email and push channels (audited)."""
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

    # ------------------------------------------------------------------ cleanup

    async def delete_old(self, days_old: int = 90, *, read_days_old: int = 30) -> int:
        """Delete notifications older than ``days_old`` days, and read ones whose ``read_at`` is
        older than ``read_days_old`` days (spec 003 §8.8, §14). Returns how many were deleted."""
        if days_old < 1 or read_days_old < 1:
            raise InvalidInput("retention periods must be at least one day")
        now = utcnow()
        cutoff = now - timedelta(days=days_old)
        read_cutoff = now - timedelta(days=read_days_old)
        read_result: Any = await self.session.execute(
            delete(Notification).where(
                or_(
                    and_(Notification.read_at.is_not(None), Notification.read_at < read_cutoff),
                    and_(Notification.read_at.is_not(None), Notification.created_at < cutoff),
                )
            )
        )
        unread_deleted = (
            await self.session.execute(
                delete(Notification)
                .where(Notification.read_at.is_(None), Notification.created_at < cutoff)
                .returning(Notification.user_id, Notification.tenant_id)
            )
        ).all()
        if unread_deleted:
            self._after_unread_change({(row.user_id, row.tenant_id) for row in unread_deleted})
        return int(read_result.rowcount or 0) + len(unread_deleted)

    # ------------------------------------------------------------------ internals

    def _after_unread_change(self, keys: Iterable[UserTenant]) -> None:
        changed = list(keys)

        async def invalidate() -> None:
            await self._unread_changed(changed)

        after_commit(self.session, invalidate)

    async def _unread_changed(self, keys: Sequence[UserTenant]) -> None:
        if not keys:
            return
        await self.cache.invalidate(keys)
        await self.events.unread_counts_changed(keys)


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


def _preference_state(in_app: bool, email: bool, push: bool) -> dict[str, Any]:
    return {"in_app_enabled": in_app, "email_enabled": email, "push_enabled": push}


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


__all__ = [
    "Actor",
    "DeliveryStatus",
    "NotificationFilters",
    "NotificationPayload",
    "NotificationService",
    "PreferenceUpdate",
    "Reason",
    "SendResult",
]
