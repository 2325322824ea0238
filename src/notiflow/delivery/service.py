"""The outbox worker: claim ledger rows, re-check, send through the channel, record the outcome.

Every step is safe to repeat. A claim is one conditional UPDATE (pending and due, or sending with
an expired lease), so two workers never hold the same row; a crash leaves the row ``sending``
until its lease expires and the sweeper hands it out again. Retry timing lives in the row
(``next_attempt_at``), not in the queue: an email's 3 tries are spread over
``NOTIFLOW_EMAIL_RETRY_HORIZON_SECONDS`` (an hour), so a mail server down for less than that loses
no email, and the emails its outage held back go out as soon as it answers again (a ``250`` to
another email, or the sweeper's probe), not at their next scheduled try.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.admin.alerts import Alerter
from notiflow.config import Settings, parse_push_rollout
from notiflow.delivery.channels import (
    ChannelSender,
    DeliveryContext,
    LeaseLost,
    Outcome,
    SendResult,
)
from notiflow.delivery.email import MAIL_SERVER_TROUBLE
from notiflow.kit.failures import FinalFailure, give_up
from notiflow.kit.ids import utcnow
from notiflow.kit.metrics import record_delivery
from notiflow.kit.retry import HorizonPolicy, Jitter, RetryPolicy
from notiflow.kit.uow import unit_of_work
from notiflow.models import (
    Notification,
    NotificationDelivery,
    Tenant,
    User,
)
from notiflow.notifications.ledger import DeliveryStatus
from notiflow.notifications.policy import TenantNotificationSettings, resolve
from notiflow.notifications.recipients import load_recipients
from notiflow.notifications.types import NotificationChannel, NotificationType

log = structlog.get_logger(__name__)

# Email is tried 3 times. Web Push and SMS likewise; each retry waits longer.
MAX_ATTEMPTS: Mapping[str, int] = {"email": 3, "push": 3, "sms": 3}
BACKOFF_BASE_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 3600.0
LEASE_SECONDS = 120.0
# Each wait between tries of an email is this many times the one before, and together they make
# the retry horizon. With 3 tries: a sixth of it (10 min of the default hour, by when most relay
# restarts and failovers are over), then the rest. A doubling backoff from 30 s gave up after
# 45-90 s and lost 7 of 200 emails to a 60 s outage.
EMAIL_RETRY_GROWTH = 5.0
# Jitter only lengthens an email's wait (up to 20 %): the horizon stays the outage it survives,
# and the emails an outage held back do not all come back in the same second.
EMAIL_RETRY_JITTER = Jitter(1.0, 1.2)
# The ledger status of a message the provider may or may not have taken (see Outcome.UNKNOWN).
OUTCOME_UNKNOWN = "outcome_unknown"
# Emails held back by a mail server outage are brought forward this many at a time, and the next
# batch only once a worker has sent the previous one: the backlog goes out at the pace the server
# takes it (one SMTP connection per process), and every batch is sent well within its lease.
EMAIL_RELEASE_BATCH = 100
# After a 250 a worker looks for held-back emails at most this often (one UPDATE), so a stream
# of single-email jobs does not add a query each.
EMAIL_RELEASE_CHECK_SECONDS = 1.0


@runtime_checkable
class MailServerProbe(Protocol):
    """An email sender that can tell whether its server answers without sending anything."""

    async def probe(self) -> bool: ...


def email_retry_delay(attempt: int, horizon: float, tries: int = MAX_ATTEMPTS["email"]) -> float:
    """The wait after the ``attempt``-th failed try of an email. The waits grow geometrically and
    add up to ``horizon`` before jitter, so the last try comes 1-1.2 horizons after the first."""
    policy = HorizonPolicy(
        horizon=horizon, tries=tries, growth=EMAIL_RETRY_GROWTH, jitter=EMAIL_RETRY_JITTER
    )
    return policy.delay(attempt)


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery: NotificationDelivery
    notification: Notification
    user: User


class DeliveryWorker:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        senders: Mapping[str, ChannelSender],
        *,
        backoff_base: float = BACKOFF_BASE_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        alerter: Alerter | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.senders = senders
        # Web Push and SMS: 50-100 % of the base, doubling after each failed try, at most 1 h.
        self.retry_policy = RetryPolicy(base=backoff_base, cap=BACKOFF_CAP_SECONDS)
        self.lease_seconds = lease_seconds
        self.alerter = alerter
        # Per process, on the monotonic clock: when a 250 may next release held-back emails,
        # when the sweeper may next probe the mail server, and whether a job is releasing now.
        self._next_release_check = 0.0
        self._next_probe = 0.0
        self._releasing = False

    # ---------------------------------------------------------------- the job

    async def process(self, delivery_ids: Sequence[uuid.UUID]) -> dict[str, int]:
        """Claim what is due among ``delivery_ids`` and deliver it; returns outcome counts.
        When an email went out, the emails an outage of the mail server held back follow it."""
        outcomes: dict[str, int] = {}
        emails_sent, _ = await self._deliver_all(await self.claim(delivery_ids), outcomes)
        if emails_sent:
            await self._send_held_emails(outcomes)
        return outcomes

    async def _deliver_all(
        self, claimed_rows: Sequence[Claimed], outcomes: dict[str, int]
    ) -> tuple[int, int]:
        """Deliver one by one; returns how many emails were sent and how many were tried."""
        sent = tried = 0
        for claimed in claimed_rows:
            outcome = await self._deliver(claimed)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if claimed.delivery.channel == NotificationChannel.EMAIL:
                tried += 1
                sent += outcome == DeliveryStatus.SENT
        return sent, tried

    async def _send_held_emails(self, outcomes: dict[str, int]) -> None:
        """The mail server just took an email: send the ones its outage held back now, in this
        job, a batch at a time, for at most half a lease (the sweeper's probe or the next 250
        goes on from there). Stops as soon as a batch gets nothing through: the server is in
        trouble again, and the rest keep their schedule."""
        started = time.monotonic()
        if self._releasing or started < self._next_release_check:
            return
        self._next_release_check = started + EMAIL_RELEASE_CHECK_SECONDS
        self._releasing = True
        try:
            while time.monotonic() - started < self.lease_seconds / 2:
                released = await self.release_held_emails()
                if not released:
                    return
                log.info("held_emails_released", count=len(released), trigger="email_sent")
                # Claimed here, not handed to the queue: one job sends them one at a time, the
                # pace of this process's SMTP connection. A row someone else claimed first is
                # simply not claimed again.
                sent, tried = await self._deliver_all(await self.claim(released), outcomes)
                if tried and not sent:
                    return
        finally:
            self._releasing = False

    async def probe_mail_server(self) -> int:
        """The sweeper's part in recovery without new email: while emails wait out a mail
        server problem, ask the server (at most every ``NOTIFLOW_EMAIL_PROBE_INTERVAL_SECONDS``)
        whether it answers again; if it does, bring a batch of them forward (the sweep that
        follows hands them out, and their 250s release the rest). Returns how many."""
        now = time.monotonic()
        sender = self.senders.get(NotificationChannel.EMAIL)
        if now < self._next_probe or not isinstance(sender, MailServerProbe):
            return 0
        self._next_probe = now + self.settings.email_probe_interval_seconds
        async with self.sessionmaker() as session:
            held = await session.scalar(
                select(NotificationDelivery.id).where(_held_by_mail_server(utcnow())).limit(1)
            )
        if held is None or not await sender.probe():
            return 0
        released = await self.release_held_emails()
        if released:
            log.info("held_emails_released", count=len(released), trigger="probe")
        return len(released)

    async def release_held_emails(self, limit: int = EMAIL_RELEASE_BATCH) -> list[uuid.UUID]:
        """Make up to ``limit`` emails that wait out a mail server problem due now (the longest
        waiting first). Only ``next_attempt_at`` moves: no try is added, and a row that is not
        ``pending`` any more (claimed, sent) is left alone, so the claim stays the only way to
        send. Returns their ids."""
        now = utcnow()
        async with unit_of_work(self.sessionmaker) as session:
            released = list(
                (
                    await session.scalars(
                        update(NotificationDelivery)
                        .where(
                            NotificationDelivery.id.in_(
                                select(NotificationDelivery.id)
                                .where(_held_by_mail_server(now))
                                .order_by(NotificationDelivery.next_attempt_at)
                                .limit(limit)
                            ),
                            # Again on the row itself: it may have changed since the subquery.
                            _held_by_mail_server(now),
                        )
                        .values(next_attempt_at=now, updated_at=now)
                        .returning(NotificationDelivery.id)
                    )
                ).all()
            )
        return released

    async def claim(self, delivery_ids: Sequence[uuid.UUID]) -> list[Claimed]:
        if not delivery_ids:
            return []
        now = utcnow()
        async with unit_of_work(self.sessionmaker) as session:
            claimed_ids = list(
                (
                    await session.scalars(
                        update(NotificationDelivery)
                        .where(NotificationDelivery.id.in_(list(delivery_ids)), _claimable(now))
                        .values(
                            status=DeliveryStatus.SENDING,
                            lease_until=now + timedelta(seconds=self.lease_seconds),
                            attempts=NotificationDelivery.attempts + 1,
                            updated_at=now,
                        )
                        .returning(NotificationDelivery.id)
                    )
                ).all()
            )
            if not claimed_ids:
                return []
            rows = (
                await session.execute(
                    select(NotificationDelivery, Notification, User)
                    .join(Notification, Notification.id == NotificationDelivery.notification_id)
                    .join(User, User.id == NotificationDelivery.user_id)
                    .where(NotificationDelivery.id.in_(claimed_ids))
                )
            ).all()
        return [Claimed(delivery, notification, user) for delivery, notification, user in rows]

    async def _deliver(self, claimed: Claimed) -> str:
        delivery = claimed.delivery
        started = time.perf_counter()
        suppression = await self._still_wanted(claimed)
        if suppression is not None:
            await self._record(claimed, None, suppressed=suppression)
            outcome = DeliveryStatus.SUPPRESSED
        else:
            sender = self.senders.get(delivery.channel)
            handed_over = False

            async def commit_point() -> None:
                nonlocal handed_over
                await self._mark_handed_over(claimed)
                handed_over = True

            if sender is None:
                result = SendResult.retry(f"no sender configured for {delivery.channel}")
            else:
                try:
                    result = await sender.send(
                        DeliveryContext(
                            delivery_id=delivery.id,
                            attempt=delivery.attempts,
                            notification=claimed.notification,
                            user=claimed.user,
                            settings=self.settings,
                            sessionmaker=self.sessionmaker,
                            commit_point=commit_point,
                        )
                    )
                except Exception as error:  # a sender bug must not lose the delivery
                    if not isinstance(error, LeaseLost):
                        log.exception("channel_sender_crashed", channel=delivery.channel)
                    result = SendResult.retry(f"{type(error).__name__}: {error}")
            outcome = await self._record(claimed, result, handed_over=handed_over)
        record_delivery(
            delivery.channel,
            outcome,
            None if outcome == DeliveryStatus.SUPPRESSED else time.perf_counter() - started,
        )
        log.info(
            "delivery",
            channel=delivery.channel,
            user_id=str(delivery.user_id),
            notification_id=str(delivery.notification_id),
            tenant_id=str(delivery.tenant_id),
            delivery_id=str(delivery.id),
            attempt=delivery.attempts,
            job="delivery.send",
            outcome=outcome,
            seconds=round(time.perf_counter() - started, 4),
        )
        return outcome

    async def _still_wanted(self, claimed: Claimed) -> str | None:
        """Re-check at send time: the user may have changed settings or read it in-app."""
        notification, user, delivery = claimed.notification, claimed.user, claimed.delivery
        if (
            delivery.channel != NotificationChannel.SMS
            and notification.read_at is not None
            and notification.read_at > notification.created_at
        ):
            return "already_read"
        notification_type = NotificationType(notification.type)
        async with self.sessionmaker() as session:
            tenant = await session.get(Tenant, notification.tenant_id)
            recipients = await load_recipients(
                session, notification.tenant_id, notification_type, [user.id]
            )
        if tenant is None or not recipients:
            return "not_a_member"
        [recipient] = recipients
        decision = resolve(
            notification_type,
            NotificationChannel(delivery.channel),
            recipient,
            TenantNotificationSettings.from_tenant_settings(tenant.settings),
            parse_push_rollout(self.settings.push_rollout),
        )
        if decision.allowed:
            return None
        return decision.reason.value if decision.reason else "not_allowed"

    async def _mark_handed_over(self, claimed: Claimed) -> None:
        """The commit point: record the delivery as sent just before the provider can accept it
        (the lease stays set until the outcome is known)."""
        delivery = claimed.delivery
        now = utcnow()
        async with unit_of_work(self.sessionmaker) as session:
            updated: Any = await session.execute(
                update(NotificationDelivery)
                .where(
                    NotificationDelivery.id == delivery.id,
                    NotificationDelivery.status == DeliveryStatus.SENDING,
                    NotificationDelivery.attempts == delivery.attempts,
                )
                .values(status=DeliveryStatus.SENT, sent_at=now, updated_at=now)
            )
            if not updated.rowcount:
                await session.rollback()
                raise LeaseLost(str(delivery.id))
            if delivery.channel == NotificationChannel.EMAIL:
                await session.execute(
                    update(Notification)
                    .where(Notification.id == delivery.notification_id)
                    .values(sent_at=now, failed_at=None, failure_reason=None, updated_at=now)
                )

    async def _record(
        self,
        claimed: Claimed,
        result: SendResult | None,
        *,
        suppressed: str | None = None,
        handed_over: bool = False,
    ) -> str:
        """Write the outcome, but only while this worker still holds the lease."""
        delivery = claimed.delivery
        now = utcnow()
        values: dict[str, Any] = {"lease_until": None, "updated_at": now}
        notification_values: dict[str, Any] = {}
        final_failure = False
        if result is not None and result.outcome is Outcome.SKIPPED:
            suppressed = result.error or "skipped"
        if suppressed is not None:
            values.update(status=DeliveryStatus.SUPPRESSED, reason=suppressed[:50])
            outcome = DeliveryStatus.SUPPRESSED
        elif result is not None and result.outcome is Outcome.SENT:
            values.update(
                status=DeliveryStatus.SENT,
                sent_at=now,
                provider_message_id=result.provider_message_id,
                last_error=None,
            )
            if delivery.channel == NotificationChannel.EMAIL and not handed_over:
                notification_values.update(sent_at=now, failed_at=None, failure_reason=None)
            if handed_over:
                values.pop("sent_at")  # recorded at the commit point
            outcome = DeliveryStatus.SENT
        elif result is not None and result.outcome is Outcome.UNKNOWN:
            # Not sent again (that could make two copies) and not a failure: the ledger says
            # what is known. ``sent_at`` stays the moment the message was handed over.
            values.update(
                status=OUTCOME_UNKNOWN,
                provider_message_id=result.provider_message_id,
                last_error=result.error,
            )
            if not handed_over:
                values["sent_at"] = now
            outcome = OUTCOME_UNKNOWN
        else:
            assert result is not None  # noqa: S101 - suppressed handled above
            retry = result.outcome is Outcome.RETRY and delivery.attempts < MAX_ATTEMPTS.get(
                delivery.channel, 3
            )
            if retry:
                if delivery.channel == NotificationChannel.EMAIL:
                    delay = email_retry_delay(
                        delivery.attempts, self.settings.email_retry_horizon_seconds
                    )
                else:
                    delay = self.retry_policy.delay(delivery.attempts)
                values.update(
                    status=DeliveryStatus.PENDING,
                    next_attempt_at=now + timedelta(seconds=delay),
                    last_error=result.error,
                )
                outcome = "retry"
            else:
                values.update(status=DeliveryStatus.FAILED, last_error=result.error)
                if delivery.channel == NotificationChannel.EMAIL:
                    notification_values.update(
                        failed_at=now, failure_reason=(result.error or "failed")[:255]
                    )
                outcome = DeliveryStatus.FAILED
                final_failure = True
            if handed_over:
                # Recorded as sent at the commit point, but the provider did not confirm: undo.
                values["sent_at"] = None
                if delivery.channel == NotificationChannel.EMAIL:
                    notification_values.setdefault("sent_at", None)
        async with unit_of_work(self.sessionmaker) as session:
            updated: Any = await session.execute(
                update(NotificationDelivery)
                .where(
                    NotificationDelivery.id == delivery.id,
                    NotificationDelivery.status
                    == (DeliveryStatus.SENT if handed_over else DeliveryStatus.SENDING),
                    NotificationDelivery.attempts == delivery.attempts,
                    NotificationDelivery.lease_until.is_not(None),
                )
                .values(**values)
            )
            if not updated.rowcount:
                # The lease expired and someone else owns the row now: leave it to them.
                await session.rollback()
                return "lost_lease"
            if notification_values:
                await session.execute(
                    update(Notification)
                    .where(Notification.id == delivery.notification_id)
                    .values(**notification_values, updated_at=now)
                )
            if final_failure:
                error = result.error if result and result.error else "failed"
                failure = FinalFailure(
                    job_name="delivery.send",
                    args={"delivery_id": str(delivery.id), "channel": delivery.channel},
                    error=error,
                    attempts=delivery.attempts,
                    tenant_id=delivery.tenant_id,
                    alert_error=f"{delivery.channel} to user {delivery.user_id}: {error}",
                )
                await give_up(session, failure, alerter=self.alerter)
        return outcome

    # ---------------------------------------------------------------- the sweeper

    async def due(self, limit: int = 10_000) -> list[uuid.UUID]:
        """Deliveries to hand out again: pending and due, or held by a lease that expired."""
        by_tenant = await self.due_by_tenant(limit)
        return [delivery for ids in by_tenant.values() for delivery in ids]

    async def due_by_tenant(self, limit: int = 10_000) -> dict[uuid.UUID, list[uuid.UUID]]:
        async with self.sessionmaker() as session:
            rows = await session.execute(
                select(NotificationDelivery.id, NotificationDelivery.tenant_id)
                .where(_claimable(utcnow()))
                .order_by(NotificationDelivery.next_attempt_at)
                .limit(limit)
            )
            due: dict[uuid.UUID, list[uuid.UUID]] = {}
            for delivery_id, tenant_id in rows:
                due.setdefault(tenant_id, []).append(delivery_id)
            return due


def _held_by_mail_server(now: datetime) -> Any:
    """Emails waiting for their next try because the mail server failed (not one recipient)."""
    return and_(
        NotificationDelivery.channel == NotificationChannel.EMAIL,
        NotificationDelivery.status == DeliveryStatus.PENDING,
        NotificationDelivery.attempts >= 1,
        NotificationDelivery.next_attempt_at > now,
        or_(
            *(
                NotificationDelivery.last_error.startswith(reason, autoescape=True)
                for reason in MAIL_SERVER_TROUBLE
            )
        ),
    )


def _claimable(now: datetime) -> Any:
    return or_(
        and_(
            NotificationDelivery.status == DeliveryStatus.PENDING,
            or_(
                NotificationDelivery.next_attempt_at.is_(None),
                NotificationDelivery.next_attempt_at <= now,
            ),
        ),
        and_(
            NotificationDelivery.status == DeliveryStatus.SENDING,
            NotificationDelivery.lease_until < now,
        ),
    )
