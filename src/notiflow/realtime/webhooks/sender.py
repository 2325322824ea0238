"""Rows out: one app's webhook events POSTed in order, a batch per request, until a 2xx.

The sender takes the app's oldest waiting events (up to ``NOTIFLOW_WEBHOOK_BATCH_SIZE``) once the
oldest is due, claims them with a lease (one conditional UPDATE: two senders never hold the same
row), posts them as one signed body and records the outcome, but only while it still holds the
claim:

- **2xx**: the rows are ``sent`` and never posted again.
- **anything else** (a refused connection, a timeout, a 5xx, a 4xx: Pusher retries every
  non-2xx too): the rows wait ``NOTIFLOW_WEBHOOK_BACKOFF_SECONDS``, doubling with jitter up to
  ``NOTIFLOW_WEBHOOK_BACKOFF_CAP_SECONDS`` (a longer ``Retry-After`` wins), and the events that
  arrive meanwhile queue behind them: the receiver gets every event in the order it happened.
- a try that fails after an event's horizon (``NOTIFLOW_WEBHOOK_RETRY_HORIZON_SECONDS`` after it
  happened) gives that event up: a ``failed_jobs`` row (``realtime.webhook``, ``notiflow jobs
  retry`` puts the events back) and an alert.

The retry timing lives in the rows, so a restart loses nothing and a receiver that is down for
minutes gets everything when it is back. A lease outlives the request's timeout, so a sender that
crashed mid-POST is taken over only after its request could no longer succeed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.kit.failures import FinalFailure, JobAlerter, give_up
from notiflow.kit.ids import utcnow
from notiflow.kit.outages import DATABASE, Backoff, outage_of
from notiflow.kit.retry import RetryPolicy
from notiflow.kit.uow import unit_of_work
from notiflow.models import WebhookEvent
from notiflow.models.webhooks import WebhookStatus
from notiflow.realtime.webhooks.events import (
    WebhookApp,
    WebhookTiming,
    now_ms,
    signed_headers,
    webhook_body,
)

log = structlog.get_logger(__name__)

__all__ = ["FAILED_JOB_NAME", "Outcome", "WebhookSender"]

# The failed_jobs name of events given up (admin/failed_jobs.py puts them back).
FAILED_JOB_NAME = "realtime.webhook"
# A lease is the request's timeout plus this margin.
LEASE_MARGIN_SECONDS = 30.0
# The sender looks at the outbox at least this often even when nothing woke it (rows another
# process put back, a lease that expired).
POLL_SECONDS = 5.0
# How soon to look again when another sender holds the oldest events.
HELD_RECHECK_SECONDS = 1.0
# After a wake-up, events of the next few milliseconds join the same POST (Soketi waits 50 ms).
BATCH_WINDOW_SECONDS = 0.05
# Sent rows are kept this long (what went out, and when), then deleted.
SENT_RETENTION = timedelta(days=1)
PURGE_EVERY_SECONDS = 3600.0
# What a failed try's error keeps.
ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one round did: how many events were posted and whether the receiver took them;
    ``wait`` is the seconds until the next events are due (None: nothing waits)."""

    posted: int = 0
    delivered: bool = False
    wait: float | None = None


@dataclass(frozen=True, slots=True)
class _Claimed:
    claim_id: uuid.UUID
    rows: Sequence[WebhookEvent]


class WebhookSender:
    """Posts one app's outbox. ``await send_due()`` once, or ``run_forever(wake)``."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        app: WebhookApp,
        timing: WebhookTiming,
        *,
        alerter: JobAlerter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.app = app
        self.timing = timing
        self.alerter = alerter
        self.policy = RetryPolicy(
            base=timing.backoff_seconds,
            cap=timing.backoff_cap_seconds,
            retry_after_cap=timing.backoff_cap_seconds,
        )
        self.lease = timedelta(seconds=timing.timeout_seconds + LEASE_MARGIN_SECONDS)
        self.client = httpx.AsyncClient(
            timeout=timing.timeout_seconds, transport=transport, follow_redirects=False
        )
        self._next_purge = 0.0

    async def close(self) -> None:
        await self.client.aclose()

    # ---------------------------------------------------------------- the loop

    async def run_forever(self, wake: asyncio.Event) -> None:
        """Send whatever is due; sleep until the next is due, ``wake`` is set or the poll comes."""
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        while True:
            wait: float | None
            try:
                if loop.time() >= self._next_purge:
                    await self.purge_sent()
                    self._next_purge = loop.time() + PURGE_EVERY_SECONDS
                outcome = await self.send_due()
                wait = outcome.wait
                if backoff.failures:
                    _recovered(backoff)
            except Exception as error:
                outage = outage_of(error)
                if outage is not None:
                    outage.failed(error, component="webhook_sender")
                else:
                    log.exception("webhook_sender_failed", app=self.app.app_id)
                wait = backoff.next_delay()
            if wait is not None and wait <= 0:
                continue
            timeout = POLL_SECONDS if wait is None else min(wait, POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)
            if wake.is_set():
                wake.clear()
                await asyncio.sleep(BATCH_WINDOW_SECONDS)

    # ---------------------------------------------------------------- one round

    async def send_due(self) -> Outcome:
        """Post the oldest waiting events if the oldest is due."""
        claimed = await self._claim()
        if not isinstance(claimed, _Claimed):
            return Outcome(wait=claimed)
        rows = claimed.rows
        # time_ms is this POST's: the Pusher SDKs refuse a webhook whose time_ms is more than
        # 5 minutes from their clock (PyPI pusher's validate_webhook), and a retried one must
        # still pass. When the events happened is their order (and the rows' occurred_at).
        body = webhook_body([row.event for row in rows], time_ms=now_ms())
        error: str | None = None
        retry_after: float | None = None
        try:
            response = await self.client.post(
                self.app.url, content=body, headers=signed_headers(self.app, body)
            )
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            if not response.is_success:
                error = f"HTTP {response.status_code}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
        if error is None:
            await self._delivered(claimed)
            log.info("webhooks_sent", app=self.app.app_id, events=len(rows))
            return Outcome(posted=len(rows), delivered=True, wait=0.0)
        await self._failed(claimed, error[:ERROR_CHARS], retry_after)
        return Outcome(posted=len(rows), delivered=False, wait=0.0)

    async def _claim(self) -> _Claimed | float | None:
        """Claim the oldest events (from the head, while each may be taken), or say how long
        until the head is due (None: nothing waits)."""
        now = utcnow()
        async with unit_of_work(self.sessionmaker) as session:
            head = (
                await session.execute(
                    select(
                        WebhookEvent.id,
                        WebhookEvent.status,
                        WebhookEvent.next_attempt_at,
                        WebhookEvent.lease_until,
                    )
                    .where(
                        WebhookEvent.app_id == self.app.app_id,
                        WebhookEvent.status.in_((WebhookStatus.PENDING, WebhookStatus.SENDING)),
                    )
                    .order_by(WebhookEvent.id)
                    .limit(self.timing.batch_size)
                )
            ).all()
            if not head:
                return None
            first = head[0]
            due: datetime = (
                first.lease_until
                if first.status == WebhookStatus.SENDING
                else first.next_attempt_at
            )
            if due is not None and due > now:
                wait = (due - now).total_seconds()
                if first.status == WebhookStatus.SENDING:
                    # Another sender posts the head: it is done long before its lease ends.
                    return min(wait, HELD_RECHECK_SECONDS)
                return wait  # the head waits for its next try
            ids: list[int] = []
            for row in head:
                if row.status == WebhookStatus.SENDING and row.lease_until > now:
                    break  # keep the order: nothing is posted ahead of a row held elsewhere
                ids.append(row.id)
            claim_id = uuid.uuid4()
            await session.execute(
                update(WebhookEvent)
                .where(WebhookEvent.id.in_(ids), _claimable(now))
                .values(
                    status=WebhookStatus.SENDING,
                    claim_id=claim_id,
                    lease_until=now + self.lease,
                    attempts=WebhookEvent.attempts + 1,
                )
            )
            rows = (
                await session.scalars(
                    select(WebhookEvent)
                    .where(WebhookEvent.claim_id == claim_id)
                    .order_by(WebhookEvent.id)
                )
            ).all()
        if not rows:
            return 0.0  # another sender was quicker: look again
        return _Claimed(claim_id, rows)

    async def _delivered(self, claimed: _Claimed) -> None:
        now = utcnow()
        async with unit_of_work(self.sessionmaker) as session:
            result: Any = await session.execute(
                update(WebhookEvent)
                .where(
                    WebhookEvent.claim_id == claimed.claim_id,
                    WebhookEvent.status == WebhookStatus.SENDING,
                )
                .values(
                    status=WebhookStatus.SENT,
                    sent_at=now,
                    claim_id=None,
                    lease_until=None,
                    last_error=None,
                )
            )
        if result.rowcount != len(claimed.rows):
            # Only possible when the POST outlived the lease and another sender took the rows.
            log.warning(
                "webhook_lease_lost",
                app=self.app.app_id,
                events=len(claimed.rows),
                recorded=result.rowcount,
            )

    async def _failed(self, claimed: _Claimed, error: str, retry_after: float | None) -> None:
        now = utcnow()
        rows = claimed.rows
        attempts = max(row.attempts for row in rows)
        delay = self.policy.delay(attempts, retry_after)
        expired = [row.id for row in rows if row.expires_at <= now]
        async with unit_of_work(self.sessionmaker) as session:
            mine = and_(
                WebhookEvent.claim_id == claimed.claim_id,
                WebhookEvent.status == WebhookStatus.SENDING,
            )
            await session.execute(
                update(WebhookEvent)
                .where(mine, WebhookEvent.id.not_in(expired))
                .values(
                    status=WebhookStatus.PENDING,
                    next_attempt_at=now + timedelta(seconds=delay),
                    claim_id=None,
                    lease_until=None,
                    last_error=error,
                )
            )
            if expired:
                given_up: Any = await session.execute(
                    update(WebhookEvent)
                    .where(mine, WebhookEvent.id.in_(expired))
                    .values(
                        status=WebhookStatus.FAILED,
                        claim_id=None,
                        lease_until=None,
                        last_error=error,
                    )
                )
                if given_up.rowcount:
                    await give_up(
                        session,
                        FinalFailure(
                            job_name=FAILED_JOB_NAME,
                            args={"app_id": self.app.app_id, "event_ids": expired},
                            error=error,
                            attempts=attempts,
                            alert_error=(
                                f"{len(expired)} webhook event(s) of app {self.app.app_id} "
                                f"given up after {attempts} tries: {error}"
                            ),
                        ),
                        alerter=self.alerter,
                    )
        log.warning(
            "webhook_failed",
            app=self.app.app_id,
            events=len(rows),
            attempt=attempts,
            error=error,
            retry_in=round(delay, 3),
            given_up=len(expired),
        )

    async def purge_sent(self) -> None:
        """Delete sent rows older than a day."""
        cutoff = utcnow() - SENT_RETENTION
        async with unit_of_work(self.sessionmaker) as session:
            await session.execute(
                delete(WebhookEvent).where(
                    WebhookEvent.app_id == self.app.app_id,
                    WebhookEvent.status == WebhookStatus.SENT,
                    WebhookEvent.sent_at < cutoff,
                )
            )


def _claimable(now: datetime) -> Any:
    return or_(
        WebhookEvent.status == WebhookStatus.PENDING,
        and_(WebhookEvent.status == WebhookStatus.SENDING, WebhookEvent.lease_until < now),
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` given in seconds (an HTTP date is ignored)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _recovered(backoff: Backoff) -> None:
    DATABASE.recovered(component="webhook_sender")
    backoff.reset()
