"""Failed-job alerts reach a Slack-compatible webhook, and a storm is one alert."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from notiflow.admin.alerts import Alerter
from tests.admin.webhook_receiver import WebhookReceiver


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
