"""The outbox worker: claim, re-check, send, record; retries, final failure, leases, crashes.

The channel here is a recording sender implementing notiflow's own ChannelSender contract; the
real channels (SMTP, Web Push, SMS) have their own tests against real or protocol-level servers.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.delivery.channels import DeliveryContext, SendResult
from notiflow.delivery.service import DeliveryWorker
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime, wire_jobs
from notiflow.models import FailedJob, NotificationDelivery
from notiflow.models.tenancy import Role
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationChannel, NotificationType
from tests.conftest import MakeMember, commit


class RecordingSender:
    channel = NotificationChannel.EMAIL

    def __init__(self, *results: SendResult) -> None:
        self.results = list(results)
        self.calls: list[DeliveryContext] = []

    async def send(self, context: DeliveryContext) -> SendResult:
        self.calls.append(context)
        if len(self.results) > 1:
            return self.results.pop(0)
        return self.results[0] if self.results else SendResult.sent("id-1")

    async def close(self) -> None:
        return None


PAYMENT_FAILED = NotificationPayload(
    NotificationType.PAYMENT_FAILED, "Payment failed", "Please update your card."
)


async def email_delivery(session: AsyncSession, notification_id) -> NotificationDelivery:
    delivery = await session.scalar(
        select(NotificationDelivery).where(
            NotificationDelivery.notification_id == notification_id,
            NotificationDelivery.channel == "email",
        )
    )
    assert delivery is not None
    await session.refresh(delivery)
    return delivery


def make_worker(runtime: Runtime, sender: RecordingSender) -> DeliveryWorker:
    return DeliveryWorker(
        runtime.sessionmaker, runtime.settings, {"email": sender}, backoff_base=0.01
    )


async def test_a_pending_email_is_sent_and_recorded(
    runtime: Runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    notification = await service.send(member.user, PAYMENT_FAILED)
    await commit(session)
    delivery = await email_delivery(session, notification.id)
    sender = RecordingSender(SendResult.sent("<abc@notiflow>"))

    outcomes = await make_worker(runtime, sender).process([delivery.id])

    assert outcomes == {"sent": 1}
    [context] = sender.calls
    assert (context.notification.id, context.user.email, context.attempt) == (
        notification.id,
        member.user.email,
        1,
    )
    delivery = await email_delivery(session, notification.id)
    assert (delivery.status, delivery.provider_message_id, delivery.attempts) == (
        "sent",
        "<abc@notiflow>",
        1,
    )
    await session.refresh(notification)
    assert notification.sent_at is not None, "sent_at records the email"
    # doing it again changes nothing and sends nothing
    assert await make_worker(runtime, sender).process([delivery.id]) == {}
    assert len(sender.calls) == 1


async def test_transient_failures_are_retried_then_fail_with_a_reason(
    runtime: Runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    notification = await service.send(member.user, PAYMENT_FAILED)
    await commit(session)
    delivery = await email_delivery(session, notification.id)
    sender = RecordingSender(SendResult.retry("connection refused"))
    worker = make_worker(runtime, sender)

    delays = []
    for attempt in (1, 2):
        assert await worker.process([delivery.id]) == {"retry": 1}
        delivery = await email_delivery(session, notification.id)
        assert (delivery.status, delivery.attempts) == ("pending", attempt)
        assert delivery.last_error == "connection refused"
        assert delivery.next_attempt_at is not None
        delays.append(delivery.next_attempt_at - delivery.updated_at)
        # not due yet: nothing is claimed before next_attempt_at
        await session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery.id)
            .values(next_attempt_at=utcnow() + timedelta(hours=1))
        )
        await commit(session)
        assert await worker.process([delivery.id]) == {}
        await session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery.id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        await commit(session)
    assert delays[1] > delays[0] * 0.9, "the backoff grows"

    assert await worker.process([delivery.id]) == {"failed": 1}
    delivery = await email_delivery(session, notification.id)
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    await session.refresh(notification)
    assert notification.failed_at is not None
    assert notification.failure_reason == "connection refused"
    [failed] = (await session.scalars(select(FailedJob))).all()
    assert failed.job_name == "delivery.send"
    assert failed.args["delivery_id"] == str(delivery.id)
    assert failed.tenant_id == member.tenant_id
    assert len(sender.calls) == 3


async def test_a_permanent_failure_is_not_retried(
    runtime: Runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    notification = await service.send(member.user, PAYMENT_FAILED)
    await commit(session)
    delivery = await email_delivery(session, notification.id)
    sender = RecordingSender(SendResult.failed("550 5.1.1 mailbox unavailable"))
    assert await make_worker(runtime, sender).process([delivery.id]) == {"failed": 1}
    delivery = await email_delivery(session, notification.id)
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    await session.refresh(notification)
    assert notification.failure_reason == "550 5.1.1 mailbox unavailable"


async def test_settings_are_checked_again_at_send_time(
    runtime: Runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    turned_off = await make_member()
    reader = await make_member()
    first = await service.send(turned_off.user, PAYMENT_FAILED)
    second = await service.send(reader.user, PAYMENT_FAILED)
    await commit(session)
    turned_off.user.email_notifications_enabled = False
    await session.merge(turned_off.user)
    await service.mark_as_read(second)  # read in the app before the email went out
    await commit(session)
    sender = RecordingSender()
    ids = [(await email_delivery(session, n.id)).id for n in (first, second)]

    assert await make_worker(runtime, sender).process(ids) == {"suppressed": 2}
    assert sender.calls == []
    assert ((await email_delivery(session, first.id)).reason) == "user_global_off"
    assert ((await email_delivery(session, second.id)).reason) == "already_read"


async def test_two_workers_never_claim_the_same_delivery(
    runtime: Runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    owner = await make_member(role=Role.OWNER)
    for _ in range(9):
        await make_member()
    result = await service.send_to_tenant(owner.tenant_id, PAYMENT_FAILED)
    await commit(session)
    ids = [delivery for record in result.notifications for delivery in record.pending_delivery_ids]
    one, two = make_worker(runtime, RecordingSender()), make_worker(runtime, RecordingSender())
    claims = await asyncio.gather(one.claim(ids), two.claim(ids), one.claim(ids))
    claimed = [c.delivery.id for batch in claims for c in batch]
    assert sorted(claimed) == sorted(ids)


async def test_a_crashed_workers_delivery_is_taken_over_after_its_lease(
    runtime: Runtime, service: NotificationService, session: AsyncSession, make_member: MakeMember
) -> None:
    member = await make_member()
    notification = await service.send(member.user, PAYMENT_FAILED)
    await commit(session)
    delivery = await email_delivery(session, notification.id)
    crashed = make_worker(runtime, RecordingSender())
    [held] = await crashed.claim([delivery.id])  # ... and the process dies here
    survivor_sender = RecordingSender(SendResult.sent("second"))
    survivor = make_worker(runtime, survivor_sender)
    assert delivery.id not in await survivor.due()
    assert await survivor.process([delivery.id]) == {}, "the lease protects it"

    await session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.id == delivery.id)
        .values(lease_until=utcnow() - timedelta(seconds=1))
    )
    await commit(session)
    assert delivery.id in await survivor.due()
    assert await survivor.process([delivery.id]) == {"sent": 1}
    # the first worker wakes up late and tries to record: it no longer owns the row
    assert await crashed._record(held, SendResult.sent("first")) == "lost_lease"
    delivery = await email_delivery(session, notification.id)
    assert (delivery.status, delivery.provider_message_id, delivery.attempts) == (
        "sent",
        "second",
        2,
    )


async def test_embedded_queue_delivers_right_after_commit(
    runtime: Runtime, session: AsyncSession, make_member: MakeMember
) -> None:
    sender = RecordingSender(SendResult.sent("x"))
    runtime.senders = {"email": sender}
    wire_jobs(runtime)
    assert runtime.queue is not None
    await runtime.queue.start(runtime)
    try:
        member = await make_member()
        service = runtime.notification_service(session)
        notification = await service.send(member.user, PAYMENT_FAILED)
        assert sender.calls == [], "nothing before commit"
        await commit(session)
        for _ in range(200):
            if sender.calls:
                break
            await asyncio.sleep(0.01)
        assert [c.notification.id for c in sender.calls] == [notification.id]
        await asyncio.sleep(0.05)
        assert (await email_delivery(session, notification.id)).status == "sent"
    finally:
        await runtime.queue.close()
