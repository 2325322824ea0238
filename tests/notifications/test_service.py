"""NotificationService, method by method, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.auth.actor import Actor
from notiflow.delivery.webpush import generate_vapid_keys
from notiflow.kit.errors import InvalidInput
from notiflow.kit.ids import utcnow
from notiflow.kit.pagination import Cursor
from notiflow.main.runtime import Runtime
from notiflow.models import (
    AuditLog,
    Notification,
    NotificationDelivery,
    PushSubscription,
    Tenant,
)
from notiflow.models.tenancy import Role
from notiflow.notifications.events import NotificationRecord
from notiflow.notifications.feed import NotificationFilters
from notiflow.notifications.preferences import PreferenceUpdate
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationChannel, NotificationType
from notiflow.notifications.unread import UserTenant
from tests.conftest import MakeMember, commit

PUBLISHED = NotificationType.POST_PUBLISHED
PAYMENT_FAILED = NotificationType.PAYMENT_FAILED


def payload(type_: NotificationType = PUBLISHED, **fields: object) -> NotificationPayload:
    values: dict[str, object] = {"title": "Post published", "message": "Your post is live."}
    values.update(fields)
    return NotificationPayload(type=type_, **values)  # type: ignore[arg-type]


async def ledger(session: AsyncSession, notification_id) -> dict[str, tuple[str, str | None]]:
    rows = await session.scalars(
        select(NotificationDelivery).where(NotificationDelivery.notification_id == notification_id)
    )
    return {row.channel: (row.status, row.reason) for row in rows}


async def count(session: AsyncSession, model) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


class RecordingListener:
    def __init__(self) -> None:
        self.created: list[NotificationRecord] = []
        self.unread_changes: list[UserTenant] = []

    async def notifications_created(self, records: Sequence[NotificationRecord]) -> None:
        self.created.extend(records)

    async def unread_counts_changed(self, keys: Sequence[UserTenant]) -> None:
        self.unread_changes.extend(keys)


# ---------------------------------------------------------------------------- send


async def test_send_stores_the_feed_row_and_records_every_channel(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    notification = await service.send(
        member.user,
        PAYMENT_FAILED,
        "Payment failed",
        "Update your card.",
        {"invoice": "INV-1"},
        "/billing",
    )
    await commit(session)

    assert notification.channel == "in_app"
    assert notification.read_at is None
    assert notification.data == {"invoice": "INV-1"}
    assert notification.icon == "billing"
    assert notification.tenant_id == member.tenant_id
    assert await ledger(session, notification.id) == {
        "email": ("pending", None),
        # The live event goes out; Web Push has no keys in these tests, known at send time.
        "push": ("suppressed", "webpush_not_configured"),
        "sms": ("suppressed", "no_verified_phone"),
    }


async def test_spec_000_send_with_payload_and_channels(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member(email_notifications_enabled=False)
    notification = await service.send(
        member.id, payload(), channels=[NotificationChannel.EMAIL, NotificationChannel.PUSH]
    )
    await commit(session)
    # external-only: still stored, but raises no badge
    assert notification.channel == "email"
    assert notification.read_at is not None
    assert await ledger(session, notification.id) == {
        "email": ("suppressed", "user_global_off"),
        "push": ("suppressed", "webpush_not_configured"),
    }
    assert await service.get_unread_count(member.id, member.tenant_id) == 0


async def test_in_app_turned_off_stores_the_row_already_read(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    actor = Actor(user_id=member.id, tenant_id=member.tenant_id)
    await service.update_preference(member.id, PUBLISHED, False, True, True, actor=actor)
    notification = await service.send(member.user, payload())
    await commit(session)

    assert notification.read_at == notification.created_at
    assert await service.get_unread_count(member.id, member.tenant_id) == 0
    page = await service.list_for_user(member.id, member.tenant_id)
    assert [item.id for item in page.items] == [notification.id], "kept in history"
    assert (await ledger(session, notification.id))["in_app"] == ("suppressed", "user_type_off")


async def test_dedupe_key_creates_nothing_the_second_time(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    first = await service.send(member.user, payload(dedupe_key="post-42-published"))
    await commit(session)
    second = await service.send(member.user, payload(dedupe_key="post-42-published"))
    await commit(session)

    assert second.id == first.id
    assert await count(session, Notification) == 1
    assert await count(session, NotificationDelivery) == 2  # email (off by default) + push


async def test_send_needs_a_tenant_when_the_user_has_several(
    service: NotificationService, make_member: MakeMember, runtime
) -> None:
    member = await make_member("acme")
    await make_member("globex", email=member.user.email)
    with pytest.raises(InvalidInput, match="tenant_id is required"):
        await service.send(member.user, payload())
    notification = await service.send(member.user, payload(), tenant_id=member.tenant_id)
    assert notification.tenant_id == member.tenant_id


async def test_send_to_users_refuses_non_members_and_writes_nothing(
    runtime, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    outsider = await make_member("globex")
    async with runtime.sessionmaker() as session:
        service = runtime.notification_service(session)
        with pytest.raises(InvalidInput) as raised:
            await service.send_to_users(
                [member.id, outsider.id], payload(), tenant_id=member.tenant_id
            )
        await session.rollback()
        assert raised.value.details[0]["ids"] == [str(outsider.id)]
        assert await count(session, Notification) == 0


async def test_send_to_tenant_reaches_every_member_in_one_event(
    runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    listener = RecordingListener()
    runtime.events.subscribe(listener)
    owner = await make_member("acme", role=Role.OWNER)
    members = [owner] + [await make_member("acme") for _ in range(4)]
    await make_member("globex")  # another tenant hears nothing

    result = await service.send_to_tenant(owner.tenant_id, payload())
    assert listener.created == [], "nothing is announced before commit"
    await commit(session)

    assert {record.user_id for record in result.notifications} == {m.id for m in members}
    assert len({record.event_id for record in result.notifications}) == 1
    assert {record.user_id for record in listener.created} == {m.id for m in members}
    assert all(record.push_allowed for record in listener.created)
    assert set(listener.unread_changes) == {(m.id, owner.tenant_id) for m in members}
    assert await count(session, Notification) == 5


async def test_nothing_is_announced_when_the_transaction_rolls_back(
    runtime, make_member: MakeMember
) -> None:
    listener = RecordingListener()
    runtime.events.subscribe(listener)
    member = await make_member()
    async with runtime.sessionmaker() as session:
        service = runtime.notification_service(session)
        await service.send(member.user, payload())
        await session.rollback()
        assert await count(session, Notification) == 0
    assert listener.created == []
    assert listener.unread_changes == []


async def test_push_off_means_no_push_allowed_in_the_event(
    runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    listener = RecordingListener()
    runtime.events.subscribe(listener)
    member = await make_member(push_notifications_enabled=False)
    notification = await service.send(member.user, payload())
    await commit(session)
    assert [record.push_allowed for record in listener.created] == [False]
    assert (await ledger(session, notification.id))["push"] == ("suppressed", "user_global_off")


async def test_push_rollout_to_admins_suppresses_members(
    runtime, session: AsyncSession, make_member: MakeMember
) -> None:
    owner = await make_member(role=Role.OWNER)
    member = await make_member()
    service = NotificationService(
        session, cache=runtime.cache, events=runtime.events, push_rollout="admins"
    )
    result = await service.send_to_tenant(owner.tenant_id, payload())
    await commit(session)
    push_by_user = {
        record.user_id: (await ledger(session, record.id))["push"]
        for record in result.notifications
    }
    assert push_by_user == {owner.id: ("pending", None), member.id: ("suppressed", "rollout")}


async def test_tenant_policy_forbids_and_enforces(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member(email_notifications_enabled=False)
    tenant = await session.get(Tenant, member.tenant_id)
    assert tenant is not None
    tenant.settings = {
        "notifications": {"policy": {"payment_failed": {"email": "enforced", "push": "forbidden"}}}
    }
    notification = await service.send(member.user, PAYMENT_FAILED, "Payment failed", "Card.")
    await commit(session)
    entries = await ledger(session, notification.id)
    assert entries["email"] == ("pending", "tenant_enforced")
    assert entries["push"] == ("suppressed", "tenant_policy")


# ---------------------------------------------------------------------------- read state


async def test_mark_as_read_and_unread_count(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    first = await service.send(member.user, payload())
    await service.send(member.user, payload())
    await commit(session)
    assert await service.get_unread_count(member.id, member.tenant_id) == 2

    await service.mark_as_read(first)
    await commit(session)
    assert first.read_at is not None
    assert await service.get_unread_count(member.id, member.tenant_id) == 1

    read_at = first.read_at
    await service.mark_as_read(first)  # a second read changes nothing
    assert first.read_at == read_at


async def test_mark_all_and_multiple_as_read_only_touch_my_rows(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    me = await make_member()
    other = await make_member()
    mine = [await service.send(me.user, payload()) for _ in range(3)]
    theirs = await service.send(other.user, payload())
    await commit(session)

    updated = await service.mark_multiple_as_read(
        me.id, me.tenant_id, [mine[0].id, mine[0].id, theirs.id]
    )
    await commit(session)
    assert updated == 1
    assert await service.get_unread_count(me.id, me.tenant_id) == 2
    assert await service.get_unread_count(other.id, other.tenant_id) == 1

    assert await service.mark_all_as_read(me.id, me.tenant_id) == 2
    await commit(session)
    assert await service.get_unread_count(me.id, me.tenant_id) == 0
    assert await service.mark_all_as_read(me.id, me.tenant_id) == 0
    assert await service.get_unread_count(other.id, other.tenant_id) == 1


async def test_unread_count_is_served_from_cache_and_invalidated_on_change(
    runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    await service.send(member.user, payload())
    await commit(session)
    assert await service.get_unread_count(member.id, member.tenant_id) == 1

    # A write behind the service's back is not seen: the count comes from the cache ...
    await session.execute(update(Notification).values(read_at=utcnow()))
    await commit(session)
    assert await service.get_unread_count(member.id, member.tenant_id) == 1
    # ... until the service changes something, which invalidates it.
    await service.send(member.user, payload())
    await commit(session)
    assert await service.get_unread_count(member.id, member.tenant_id) == 1
    assert await service.count_unread(member.id, member.tenant_id) == 1


# ---------------------------------------------------------------------------- retrieval


async def test_list_for_user_filters_and_pages(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    sent = []
    for index in range(7):
        kind = PAYMENT_FAILED if index % 2 else PUBLISHED
        sent.append(await service.send(member.user, kind, f"n{index}", "m"))
    await service.mark_as_read(sent[0])
    await commit(session)

    page = await service.list_for_user(member.id, member.tenant_id, page=1, per_page=3)
    assert [item.title for item in page.items] == ["n6", "n5", "n4"]
    assert (page.total, page.page) == (7, 1)
    last = await service.list_for_user(member.id, member.tenant_id, page=3, per_page=3)
    assert [item.title for item in last.items] == ["n0"]
    assert last.next_cursor is None

    only_failed = await service.list_for_user(
        member.id, member.tenant_id, NotificationFilters(type=PAYMENT_FAILED)
    )
    assert [item.title for item in only_failed.items] == ["n5", "n3", "n1"]
    read = await service.list_for_user(
        member.id, member.tenant_id, NotificationFilters(is_read=True)
    )
    assert [item.title for item in read.items] == ["n0"]
    unread = await service.list_for_user(
        member.id, member.tenant_id, NotificationFilters(is_read=False)
    )
    assert len(unread.items) == 6
    by_channel = await service.list_for_user(
        member.id, member.tenant_id, NotificationFilters(channel=NotificationChannel.EMAIL)
    )
    assert by_channel.items == []


async def test_cursor_paging_visits_each_item_once_newest_first(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    # one bulk send per member makes rows with identical created_at: the id breaks ties
    for _ in range(5):
        await service.send_to_users([member.id], payload(), tenant_id=member.tenant_id)
    await commit(session)

    seen = []
    cursor = None
    while True:
        page = await service.list_for_user(
            member.id,
            member.tenant_id,
            per_page=2,
            cursor=Cursor.decode(cursor) if cursor else None,
        )
        seen.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 5
    assert len({item.id for item in seen}) == 5
    keys = [(item.created_at, item.id) for item in seen]
    assert keys == sorted(keys, reverse=True)


async def test_get_recent_is_limited_and_newest_first(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    for index in range(4):
        await service.send(member.user, PUBLISHED, f"n{index}", "m")
    await commit(session)
    recent = await service.get_recent(member.id, member.tenant_id, limit=2)
    assert [item.title for item in recent] == ["n3", "n2"]


# ---------------------------------------------------------------------------- preferences


async def test_preferences_default_to_the_type_registry(
    service: NotificationService, make_member: MakeMember
) -> None:
    member = await make_member()
    preferences = {p.notification_type: p for p in await service.get_preferences(member.id)}
    assert len(preferences) == 32
    assert preferences[PUBLISHED] == PreferenceUpdate(PUBLISHED, True, False, True)
    assert preferences[PAYMENT_FAILED] == PreferenceUpdate(PAYMENT_FAILED, True, True, True)


async def test_update_preference_upserts_and_audits_real_changes(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    actor = Actor(user_id=member.id, tenant_id=member.tenant_id, ip_address="127.0.0.1")
    saved = await service.update_preference(member.id, PUBLISHED, True, True, False, actor=actor)
    await commit(session)
    again = await service.update_preference(member.id, PUBLISHED, True, True, False, actor=actor)
    await commit(session)
    assert again.id == saved.id

    entries = (await session.scalars(select(AuditLog))).all()
    assert len(entries) == 1, "an unchanged preference is not audited again"
    [entry] = entries
    assert entry.action == "notification_preference.updated"
    assert entry.before == {
        "in_app_enabled": True,
        "email_enabled": False,
        "push_enabled": True,
        "default": True,
    }
    assert entry.after == {"in_app_enabled": True, "email_enabled": True, "push_enabled": False}
    assert (entry.actor_id, entry.tenant_id, entry.ip_address) == (
        member.id,
        member.tenant_id,
        "127.0.0.1",
    )


async def test_global_switches_are_audited(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    actor = Actor(user_id=member.id, tenant_id=member.tenant_id)
    user = await service.update_global_settings(
        member.user, email_enabled=False, push_enabled=None, actor=actor
    )
    await commit(session)
    assert (user.email_notifications_enabled, user.push_notifications_enabled) == (False, True)
    [entry] = (await session.scalars(select(AuditLog))).all()
    assert entry.before["email_notifications_enabled"] is True
    assert entry.after["email_notifications_enabled"] is False


# ---------------------------------------------------------------------------- cleanup


async def test_delete_old_applies_the_90_and_30_day_rules(
    service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    titles = ["fresh unread", "old unread", "read long ago", "read recently", "old read"]
    rows = {title: await service.send(member.user, PUBLISHED, title, "m") for title in titles}
    await commit(session)
    now = utcnow()
    ages = {
        "old unread": (now - timedelta(days=91), None),
        "read long ago": (now - timedelta(days=40), now - timedelta(days=31)),
        "read recently": (now - timedelta(days=40), now - timedelta(days=29)),
        "old read": (now - timedelta(days=95), now - timedelta(days=1)),
    }
    for title, (created_at, read_at) in ages.items():
        await session.execute(
            update(Notification)
            .where(Notification.id == rows[title].id)
            .values(created_at=created_at, read_at=read_at)
        )
    await commit(session)
    assert await service.get_unread_count(member.id, member.tenant_id) == 2

    deleted = await service.delete_old(90)
    await commit(session)
    assert deleted == 3
    remaining = await service.list_for_user(member.id, member.tenant_id)
    assert sorted(item.title for item in remaining.items) == ["fresh unread", "read recently"]
    assert await service.get_unread_count(member.id, member.tenant_id) == 1
    # two ledger rows (email, push) per remaining notification: the others went with their rows
    assert await count(session, NotificationDelivery) == 4


async def test_delete_old_refuses_nonsense_periods(service: NotificationService) -> None:
    with pytest.raises(InvalidInput):
        await service.delete_old(0)


async def test_web_push_with_nothing_to_deliver_to_is_decided_at_send_time(
    runtime: Runtime, make_member: MakeMember
) -> None:
    """With Web Push configured, only users with a subscribed browser get a pending push
    delivery (a job); the others are recorded at once, and still get the live event."""
    keys = generate_vapid_keys()
    runtime.settings = runtime.settings.model_copy(
        update={"vapid_public_key": keys.public_key, "vapid_private_key": keys.private_key}
    )
    subscribed = await make_member()
    unsubscribed = await make_member()
    heard: list[NotificationRecord] = []

    class Listener:
        async def notifications_created(self, records: Sequence[NotificationRecord]) -> None:
            heard.extend(records)

        async def unread_counts_changed(self, keys: Sequence[UserTenant]) -> None:
            return None

    runtime.events.subscribe(Listener())
    async with runtime.sessionmaker() as session:
        session.add(
            PushSubscription(
                user_id=subscribed.id,
                endpoint="https://push.example.test/device-1",
                p256dh="key",
                auth="secret",
            )
        )
        await session.commit()
        service = runtime.notification_service(session)
        result = await service.send_to_users(
            [subscribed.id, unsubscribed.id], payload(), tenant_id=subscribed.tenant_id
        )
        await commit(session)
        pushes = {
            row.user_id: (row.status, row.reason)
            for row in await session.scalars(
                select(NotificationDelivery).where(NotificationDelivery.channel == "push")
            )
        }
    assert pushes == {
        subscribed.id: ("pending", None),
        unsubscribed.id: ("suppressed", "no_push_subscription"),
    }
    pending = {record.user_id: record.pending_delivery_ids for record in result.notifications}
    assert len(pending[subscribed.id]) == 1
    assert pending[unsubscribed.id] == ()  # no job is woken for them
    assert {record.user_id: record.push_allowed for record in heard} == {
        subscribed.id: True,
        unsubscribed.id: True,
    }
