"""Email through SMTP outages, with a real `notiflow serve` and a real SMTP server (aiosmtpd).

An outage longer than the first retries (the retry horizon scaled down to seconds) loses and
doubles no email; once the server is back, the emails the outage held back go out within
seconds, not at their next try 10 minutes later (the sweeper's probe, or another email's 250); a
server that takes a message and hangs up before its reply leaves the delivery
``outcome_unknown`` in the ledger, and the email is not sent a second time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.delivery.service import email_retry_delay
from notiflow.main.runtime import Runtime
from notiflow.models import NotificationDelivery
from notiflow.models.tenancy import Role
from tests.conftest import TEST_PUSHER_SECRET, MakeMember, Member
from tests.delivery.conftest import SmtpServer
from tests.delivery.processes import NotiflowProcess, eventually, free_port, notiflow_env
from tests.delivery.test_email import TakesDataWithoutReplying

RECIPIENTS = 50
# Scaled down from the default hour: tries at 0, ~1.7-2 s and ~10-12 s.
HORIZON_SECONDS = 10.0
# What email retries waited before they covered a horizon (30 s in production), scaled alike.
BACKOFF_SECONDS = 0.5
FINAL = ("sent", "failed", "outcome_unknown", "suppressed")
# Emails held back by an outage, in the recovery tests. Their second try is due 10-12 minutes
# after the first (the default horizon): anything within this bound was brought forward.
HELD = 20
RECOVERY_BOUND_SECONDS = 30.0


@asynccontextmanager
async def serve(
    engine: AsyncEngine, smtp: SmtpServer, **settings: str
) -> AsyncIterator[NotiflowProcess]:
    port = free_port()
    env = notiflow_env(
        **{
            "env": "test",
            "secret_key": "outage-test-secret-key-0123456789abcdef",
            "pusher_app_secret": TEST_PUSHER_SECRET,
            "database_url": engine.url.render_as_string(hide_password=False),
            "smtp_host": smtp.host,
            "smtp_port": str(smtp.port),
            "smtp_timeout_seconds": "3",
            "public_url": f"http://127.0.0.1:{port}",
            "sweep_interval_seconds": "0.3",
            "delivery_backoff_seconds": str(BACKOFF_SECONDS),
            "email_retry_horizon_seconds": str(HORIZON_SECONDS),
            "log_level": "WARNING",
            **settings,
        }
    )
    process = NotiflowProcess(
        ["serve", "--port", str(port), "--ws-port", str(free_port())],
        env,
        f"http://127.0.0.1:{port}/health",
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop()


def base_url(process: NotiflowProcess) -> str:
    assert process.ready_url is not None
    return process.ready_url.rsplit("/", 1)[0]


async def email_deliveries(runtime: Runtime) -> list[NotificationDelivery]:
    async with runtime.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(NotificationDelivery).where(NotificationDelivery.channel == "email")
                )
            ).all()
        )


def all_deliveries(
    runtime: Runtime, count: int, condition: Callable[[NotificationDelivery], bool]
) -> Callable[[], Awaitable[list[NotificationDelivery] | None]]:
    """A check for ``eventually``: the ``count`` email deliveries once each meets ``condition``."""

    async def check() -> list[NotificationDelivery] | None:
        rows = await email_deliveries(runtime)
        return rows if len(rows) == count and all(condition(row) for row in rows) else None

    return check


async def test_emails_survive_an_smtp_outage_longer_than_the_first_retries(
    engine: AsyncEngine, runtime: Runtime, make_member: MakeMember
) -> None:
    smtp = SmtpServer()  # not started: the mail server is down from the start
    owner = await make_member("acme", role=Role.OWNER)
    for _ in range(RECIPIENTS - 1):
        await make_member("acme")
    try:
        async with serve(engine, smtp) as process:
            async with httpx.AsyncClient(base_url=base_url(process)) as client:
                response = await client.post(
                    "/api/v1/notifications/send",
                    headers=owner.headers,
                    json={
                        "audience": "tenant",
                        "type": "payment_failed",
                        "title": "Payment failed",
                        "message": "Update your card.",
                    },
                )
                assert response.status_code == 202, response.text

            # The first try and the first retry of every email have failed ...
            await eventually(
                all_deliveries(runtime, RECIPIENTS, lambda row: row.attempts >= 2), timeout=30
            )
            # ... and the server stays down a while longer, then comes back on the same port.
            await asyncio.sleep(2.0)
            smtp.start()
            rows = await eventually(
                all_deliveries(runtime, RECIPIENTS, lambda row: row.status in FINAL), timeout=40
            )
            await asyncio.sleep(1.0)  # a duplicate would show up by now (sweeps every 0.3 s)
    finally:
        smtp.stop()

    statuses = Counter(row.status for row in rows)
    assert statuses == {"sent": RECIPIENTS}, f"lost for good: {statuses}"
    assert all(row.attempts == 3 for row in rows), "the last of the 3 tries got through"
    per_delivery = Counter(mail.message["Message-ID"] for mail in smtp.received)
    assert len(per_delivery) == RECIPIENTS, "every email arrived"
    assert max(per_delivery.values()) == 1, "no email arrived twice"
    assert set(per_delivery) == {f"<{row.id}@notiflow.localhost>" for row in rows}


def test_the_three_tries_of_an_email_cover_the_retry_horizon() -> None:
    horizon = 3600.0
    for _ in range(200):
        first, second = email_retry_delay(1, horizon), email_retry_delay(2, horizon)
        assert horizon / 6 <= first <= horizon / 6 * 1.2, "the second try after ~10 minutes"
        assert horizon * 5 / 6 <= second <= horizon * 5 / 6 * 1.2
        assert horizon <= first + second <= horizon * 1.2, "an outage shorter than it loses none"


async def test_a_message_taken_without_a_reply_is_outcome_unknown_and_not_sent_again(
    engine: AsyncEngine, runtime: Runtime, make_member: MakeMember
) -> None:
    smtp = SmtpServer()
    smtp.handler = TakesDataWithoutReplying()  # then hangs up
    smtp.start()
    owner = await make_member("acme", role=Role.OWNER)
    try:
        async with (
            serve(engine, smtp) as process,
            httpx.AsyncClient(base_url=base_url(process), headers=owner.headers) as client,
        ):
            response = await client.post(
                "/api/v1/notifications/send",
                json={
                    "user_ids": [str(owner.id)],
                    "type": "payment_failed",
                    "title": "Payment failed",
                    "message": "Update your card.",
                },
            )
            assert response.status_code == 202, response.text
            notification_id = response.json()["data"]["notifications"][0]["id"]

            async def settled_email() -> dict[str, object] | None:
                ledger = await client.get(f"/api/v1/notifications/{notification_id}/deliveries")
                assert ledger.status_code == 200, ledger.text
                email = next(
                    row for row in ledger.json()["data"]["deliveries"] if row["channel"] == "email"
                )
                # "sent" is also what the commit point writes just before the final dot, for
                # the moment until the (missing) reply is recorded: not settled yet.
                return email if email["status"] in FINAL and email["status"] != "sent" else None

            email = await eventually(settled_email, timeout=20)
            # Sweeps every 0.3 s and a backoff of 0.5 s: a resend would have happened by now.
            await asyncio.sleep(2.5)
            again = await settled_email()
    finally:
        smtp.stop()

    assert email["status"] == "outcome_unknown", email
    assert again == email, "the ledger entry stays as it is"
    assert email["attempts"] == 1
    assert email["sent_at"] is not None, "when the message was handed over"
    assert "reply" in str(email["last_error"])
    assert len(smtp.received) == 1, "the email was not sent a second time"


async def send(
    client: httpx.AsyncClient, sender: Member, recipients: list[Member]
) -> httpx.Response:
    response = await client.post(
        "/api/v1/notifications/send",
        headers=sender.headers,
        json={
            "user_ids": [str(member.id) for member in recipients],
            "type": "payment_failed",
            "title": "Payment failed",
            "message": "Update your card.",
        },
    )
    assert response.status_code == 202, response.text
    return response


def waiting_for_retry(row: NotificationDelivery) -> bool:
    return row.status == "pending" and row.attempts == 1


async def emails_of(runtime: Runtime, members: list[Member]) -> list[NotificationDelivery]:
    wanted = {member.id for member in members}
    return [row for row in await email_deliveries(runtime) if row.user_id in wanted]


async def test_emails_held_by_an_outage_go_out_once_the_mail_server_answers_again(
    engine: AsyncEngine, runtime: Runtime, make_member: MakeMember
) -> None:
    """No new email needed: the sweeper's probe notices the server is back."""
    smtp = SmtpServer()  # down from the start
    owner = await make_member("acme", role=Role.OWNER)
    members = [await make_member("acme") for _ in range(HELD)]
    try:
        async with (
            serve(
                engine,
                smtp,
                # The default horizon: the second try would come after 10 minutes.
                email_retry_horizon_seconds="3600",
                email_probe_interval_seconds="1",
            ) as process,
            httpx.AsyncClient(base_url=base_url(process)) as client,
        ):
            await send(client, owner, members)
            held = await eventually(all_deliveries(runtime, HELD, waiting_for_retry), timeout=30)
            assert all(row.next_attempt_at is not None for row in held)
            await asyncio.sleep(1.0)  # a probe that finds the server still down
            smtp.start()
            back = time.monotonic()
            rows = await eventually(
                all_deliveries(runtime, HELD, lambda row: row.status in FINAL),
                timeout=RECOVERY_BOUND_SECONDS,
            )
            recovery = time.monotonic() - back
            await asyncio.sleep(1.0)  # a duplicate would show up by now (sweeps every 0.3 s)
            rows = await email_deliveries(runtime)
    finally:
        smtp.stop()

    print(f"{HELD} held-back emails out {recovery:.1f} s after the mail server came back")
    assert Counter(row.status for row in rows) == {"sent": HELD}
    assert all(row.attempts == 2 for row in rows), "their second try, no try added"
    per_delivery = Counter(mail.message["Message-ID"] for mail in smtp.received)
    assert set(per_delivery) == {f"<{row.id}@notiflow.localhost>" for row in rows}
    assert max(per_delivery.values()) == 1, "no email arrived twice"


async def test_an_email_that_goes_through_brings_the_held_back_ones_with_it(
    engine: AsyncEngine, runtime: Runtime, make_member: MakeMember
) -> None:
    """The probe is as good as off (once an hour): the first 250 after the outage does it. A
    recipient the server greylists keeps waiting: a 250 for others says nothing about it."""
    smtp = SmtpServer()
    owner = await make_member("acme", role=Role.OWNER)
    greylisted = await make_member("acme")
    members = [await make_member("acme") for _ in range(HELD)]
    smtp.refuse(greylisted.user.email, "451 4.7.1 greylisted, try again later")
    smtp.start()
    try:
        async with (
            serve(
                engine,
                smtp,
                email_retry_horizon_seconds="3600",
                email_probe_interval_seconds="3600",
            ) as process,
            httpx.AsyncClient(base_url=base_url(process)) as client,
        ):
            await send(client, owner, [greylisted])
            await eventually(all_deliveries(runtime, 1, waiting_for_retry), timeout=30)
            smtp.stop()
            await send(client, owner, members)
            await eventually(all_deliveries(runtime, HELD + 1, waiting_for_retry), timeout=30)
            smtp.start()
            await asyncio.sleep(1.0)  # without a new email nothing happens (the probe is off)
            assert all(waiting_for_retry(row) for row in await email_deliveries(runtime))

            back = time.monotonic()
            await send(client, owner, [owner])

            async def all_sent() -> list[NotificationDelivery] | None:
                rows = await emails_of(runtime, [owner, *members])
                return rows if all(row.status == "sent" for row in rows) else None

            await eventually(all_sent, timeout=RECOVERY_BOUND_SECONDS)
            recovery = time.monotonic() - back
            await asyncio.sleep(1.0)  # a duplicate would show up by now
            rows = await emails_of(runtime, [owner, *members])
            [waiting] = await emails_of(runtime, [greylisted])
    finally:
        smtp.stop()

    print(f"{HELD} held-back emails out {recovery:.1f} s after the next email")
    assert len(rows) == HELD + 1
    assert all(row.status == "sent" for row in rows)
    assert sorted(row.attempts for row in rows) == [1] + [2] * HELD, "no try added"
    per_delivery = Counter(mail.message["Message-ID"] for mail in smtp.received)
    assert set(per_delivery) == {f"<{row.id}@notiflow.localhost>" for row in rows}
    assert max(per_delivery.values()) == 1, "no email arrived twice"
    assert waiting_for_retry(waiting), "the greylisted email still waits for its second try"
