"""Live event sequences: each pushed notification's per-user number, taken in the send."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select

from notiflow.kit.uow import unit_of_work
from notiflow.main.runtime import Runtime
from notiflow.models import Notification
from notiflow.models.tenancy import Role
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.types import NotificationChannel, NotificationType
from tests.conftest import MakeMember

PAYLOAD = NotificationPayload(type=NotificationType.NEW_COMMENT, title="New", message="Hi")


async def send_to(runtime: Runtime, tenant_id: uuid.UUID, user_ids: list[uuid.UUID]) -> None:
    async with unit_of_work(runtime.sessionmaker) as session:
        sender = runtime.notification_service(session)
        await sender.send_to_users(user_ids, PAYLOAD, tenant_id=tenant_id)


async def sequences_of(runtime: Runtime, user_id: uuid.UUID) -> list[int | None]:
    async with runtime.sessionmaker() as session:
        rows = await session.scalars(
            select(Notification.sequence)
            .where(Notification.user_id == user_id)
            .order_by(Notification.created_at, Notification.sequence)
        )
        return list(rows)


async def test_concurrent_sends_give_each_user_distinct_increasing_sequences(
    runtime: Runtime, make_member: MakeMember, backend: str
) -> None:
    ada = await make_member("acme", role=Role.OWNER)
    grace = await make_member("acme")
    linus = await make_member("acme")
    # Overlapping recipient sets in every order: the sends wait for each other's counter rows
    # (locked in id order, so never in a cycle) and none fails.
    groups = [
        [ada.id, grace.id],
        [grace.id, ada.id, linus.id],
        [linus.id, ada.id],
        [ada.id],
        [grace.id, linus.id],
        [linus.id, grace.id, ada.id],
    ] * 3
    if backend == "postgresql":
        await asyncio.gather(*(send_to(runtime, ada.tenant_id, group) for group in groups))
    else:  # SQLite has one writer at a time: the sends run one after another
        for group in groups:
            await send_to(runtime, ada.tenant_id, group)

    for member in (ada, grace, linus):
        received = sum(member.id in group for group in groups)
        sequences = await sequences_of(runtime, member.id)
        assert sorted(s for s in sequences if s is not None) == list(range(1, received + 1))


async def test_a_notification_without_push_takes_no_sequence(
    runtime: Runtime, make_member: MakeMember
) -> None:
    ada = await make_member("acme", role=Role.OWNER)
    async with unit_of_work(runtime.sessionmaker) as session:
        sender = runtime.notification_service(session)
        result = await sender.send_to_users(
            [ada.id], PAYLOAD, tenant_id=ada.tenant_id, channels=[NotificationChannel.IN_APP]
        )
        assert result.notifications[0].sequence is None
    await send_to(runtime, ada.tenant_id, [ada.id])
    assert await sequences_of(runtime, ada.id) == [None, 1]


async def test_a_tenant_wide_send_numbers_every_member(
    runtime: Runtime, make_member: MakeMember
) -> None:
    members = [await make_member("acme", role=Role.OWNER)]
    members += [await make_member("acme") for _ in range(4)]
    await send_to(runtime, members[0].tenant_id, [members[0].id])
    async with unit_of_work(runtime.sessionmaker) as session:
        result = await runtime.notification_service(session).send_to_tenant(
            members[0].tenant_id, PAYLOAD
        )
    by_user = {record.user_id: record.sequence for record in result.notifications}
    assert by_user == {member.id: 2 if member is members[0] else 1 for member in members}
