"""Failed-job alerts reach a Slack-compatible webhook, and a storm is one alert."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from notiflow.admin.alerts import Alerter, email_tenant_admins
from notiflow.main.runtime import Runtime
from notiflow.models.tenancy import Role
from tests.admin.webhook_receiver import WebhookReceiver
from tests.conftest import MakeMember
from tests.delivery.conftest import SmtpServer


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.stop()


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_storm_of_failures_is_one_alert(
    receiver: WebhookReceiver, redis: Redis, store: str
) -> None:
    alerter = Alerter(
        slack_webhook_url=receiver.url,
        redis=redis if store == "redis" else None,
        window_seconds=0.5,
    )
    tenant = uuid.uuid4()
    try:
        sent = [await alerter.job_failed("delivery.send", "SMTP down", tenant) for _ in range(50)]
        assert sent.count(True) == 1
        assert len(receiver.received) == 1
        first = receiver.received[0]["text"]
        assert "delivery.send" in first
        assert "SMTP down" in first
        assert str(tenant) in first

        await asyncio.sleep(0.6)  # the window closes
        assert await alerter.job_failed("delivery.send", "SMTP still down", tenant)
        assert "49 more failure(s)" in receiver.received[1]["text"]
        # another job has its own window
        assert await alerter.job_failed("content.publish_post", "429", tenant)
        assert len(receiver.received) == 3
    finally:
        await alerter.close()


async def test_a_refusing_webhook_does_not_raise(redis: Redis) -> None:
    receiver = await WebhookReceiver(status=500).start()
    alerter = Alerter(slack_webhook_url=receiver.url, window_seconds=1)
    try:
        assert await alerter.job_failed("delivery.send", "boom")
        assert len(receiver.received) == 1
    finally:
        await alerter.close()
        await receiver.stop()


async def test_tenant_admins_are_emailed(
    runtime: Runtime, make_member: MakeMember, smtp_server: SmtpServer
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    admin = await make_member("acme", role=Role.ADMIN)
    await make_member("acme")  # a member is not bothered
    await make_member("globex", role=Role.OWNER)  # nor another tenant's owner
    settings = smtp_server.settings()
    alerter = Alerter(
        slack_webhook_url=None,
        email_admins=email_tenant_admins(settings, runtime.sessionmaker),
        window_seconds=60,
    )
    try:
        for _ in range(5):
            await alerter.job_failed("delivery.send", "SMTP relay refused us", owner.tenant_id)
    finally:
        await alerter.close()
    [mail] = smtp_server.received
    assert sorted(mail.rcpt_tos) == sorted([owner.user.email, admin.user.email])
    assert mail.message["Subject"] == "[notiflow] delivery.send failed"
    assert "SMTP relay refused us" in mail.message.get_content()
