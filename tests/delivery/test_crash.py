"""Crash test: the process running the delivery worker is killed (SIGKILL) in the middle of a
batch of emails and restarted. Every email arrives; none arrives twice.

Embedded (``notiflow serve``) and scale-out (``notiflow api`` + ``notiflow worker`` +
``notiflow scheduler`` over Redis), each on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.main.runtime import Runtime
from notiflow.models import NotificationDelivery
from notiflow.models.tenancy import Role
from tests.conftest import REDIS_URL, TEST_PUSHER_SECRET, MakeMember
from tests.delivery.conftest import SmtpServer
from tests.delivery.processes import NotiflowProcess, eventually, free_port, notiflow_env

RECIPIENTS = 60


async def _sent_count(runtime: Runtime) -> int:
    async with runtime.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(NotificationDelivery)
            .where(NotificationDelivery.channel == "email", NotificationDelivery.status == "sent")
        )
    return int(count or 0)


@pytest.mark.parametrize("mode", ["embedded", "redis"])
async def test_killed_worker_loses_nothing_and_sends_nothing_twice(
    mode: str,
    engine: AsyncEngine,
    runtime: Runtime,
    smtp_server: SmtpServer,
    make_member: MakeMember,
    redis: Redis,
) -> None:
    api_port = free_port()
    settings = {
        "env": "test",
        "secret_key": "crash-test-secret-key-0123456789abcdef",
        "pusher_app_secret": TEST_PUSHER_SECRET,
        "database_url": engine.url.render_as_string(hide_password=False),
        "smtp_host": smtp_server.host,
        "smtp_port": str(smtp_server.port),
        "public_url": f"http://127.0.0.1:{api_port}",
        "sweep_interval_seconds": "0.3",
        "delivery_lease_seconds": "2",
        "delivery_backoff_seconds": "0.3",
        # The restarted `serve` takes over the scheduler of the one killed within 3 s.
        "scheduler_lease_seconds": "3",
        "log_level": "WARNING",
    }
    if mode == "redis":
        settings["redis_url"] = REDIS_URL
    env = notiflow_env(**settings)
    ready = f"http://127.0.0.1:{api_port}/health"
    if mode == "embedded":
        api = NotiflowProcess(
            ["serve", "--port", str(api_port), "--ws-port", str(free_port())], env, ready
        )
        victim = api
        others: list[NotiflowProcess] = []
    else:
        api = NotiflowProcess(["api", "--port", str(api_port)], env, ready)
        victim = NotiflowProcess(["worker", "--concurrency", "4"], env)
        others = [NotiflowProcess(["scheduler"], env)]

    owner = await make_member("acme", role=Role.OWNER)
    for _ in range(RECIPIENTS - 1):
        await make_member("acme")
    smtp_server.handler.rcpt_delay = 0.03  # ~2 s for the batch: time to crash in the middle

    processes = [api, *([victim] if victim is not api else []), *others]
    for process in processes:
        await process.start(settle=1.0)
    try:
        async with httpx.AsyncClient(base_url=api.ready_url.rsplit("/", 1)[0]) as client:
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

        await eventually(lambda: _at_least(smtp_server, RECIPIENTS // 4), timeout=20)
        # Killed while every SMTP transaction waits for the server: some before their commit
        # point (to be sent again), some after their final dot (sent, not to be sent again).
        # Never in the instant between recording an email and writing its final dot, the one
        # gap left (docs/delivery.md).
        await smtp_server.hold_replies()
        victim.kill()
        arrived_at_crash = len(smtp_server.received)
        smtp_server.release_replies()
        assert arrived_at_crash < RECIPIENTS, "the crash must come in the middle of the batch"

        await victim.start(settle=0.5) if victim is not api else await api.start()
        try:
            await eventually(lambda: _at_least(smtp_server, RECIPIENTS), timeout=40)
            await eventually(lambda: _all_sent(runtime), timeout=20)
        except AssertionError as missing:
            states = await _delivery_states(runtime)
            logs = "\n".join(process.logs() for process in processes)
            raise AssertionError(
                f"{missing}; {len(smtp_server.received)} emails arrived "
                f"({arrived_at_crash} before the crash); deliveries: {states}\n{logs}"
            ) from None
        await asyncio.sleep(1.0)  # time for a duplicate to show up, if there were one
    finally:
        for process in processes:
            process.stop()

    per_recipient = Counter(address for mail in smtp_server.received for address in mail.rcpt_tos)
    assert len(per_recipient) == RECIPIENTS, "every email arrived"
    duplicates = {address: n for address, n in per_recipient.items() if n > 1}
    assert duplicates == {}, f"sent twice: {duplicates}"
    message_ids = Counter(mail.message["Message-ID"] for mail in smtp_server.received)
    assert max(message_ids.values()) == 1


async def _delivery_states(runtime: Runtime) -> dict[str, int]:
    async with runtime.sessionmaker() as session:
        rows = await session.execute(
            select(NotificationDelivery.status, func.count())
            .where(NotificationDelivery.channel == "email")
            .group_by(NotificationDelivery.status)
        )
    return {str(status): int(count) for status, count in rows.all()}


async def _at_least(smtp: SmtpServer, count: int) -> bool:
    return len(smtp.received) >= count


def _all_sent(runtime: Runtime):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await _sent_count(runtime) >= RECIPIENTS

    return check()
