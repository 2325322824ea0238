"""Which process records webhook events and which one stores and sends them."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.config import Settings
from notiflow.main.runtime import build_hub, create_runtime
from notiflow.main.scheduler import start_webhooks
from notiflow.models import WebhookEvent
from notiflow.realtime.webhooks import ClusterWebhooks, LocalWebhooks
from tests.conftest import REDIS_URL, make_settings


def _settings(engine: AsyncEngine, **overrides: Any) -> Settings:
    return make_settings(
        database_url=engine.url.render_as_string(hide_password=False),
        webhook_url="http://127.0.0.1:9/pusher",
        **overrides,
    )


async def test_one_process_without_redis_records_stores_and_sends_itself(
    engine: AsyncEngine,
) -> None:
    runtime = create_runtime(_settings(engine))
    tasks = start_webhooks(runtime)
    try:
        assert isinstance(runtime.hub.webhooks, LocalWebhooks)
        assert len(tasks) == 2, "the app's sender and the writer"
        # what it recorded in its last moments is stored when it stops, not lost
        runtime.hub.webhooks.cache_miss("cache-prices")
        runtime.hub.webhooks.subscribed("lobby", "1.1", None, first_here=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.close()
    async with engine.connect() as connection:
        names = (await connection.scalars(select(WebhookEvent.name))).all()
        await connection.execute(delete(WebhookEvent))
        await connection.commit()
    assert names == ["channel_occupied"], "cache_miss is not among the default events"


async def test_with_redis_nodes_record_in_redis_and_the_scheduler_reads_it(
    engine: AsyncEngine, redis: Redis
) -> None:
    settings = _settings(engine, redis_url=REDIS_URL)
    hub, close = await build_hub(settings)  # a `notiflow realtime` node
    try:
        assert isinstance(hub.webhooks, ClusterWebhooks)
    finally:
        await close()
    runtime = create_runtime(settings)  # `notiflow scheduler`
    await runtime.start()
    tasks = start_webhooks(runtime)
    try:
        assert isinstance(runtime.hub.webhooks, ClusterWebhooks)
        assert len(tasks) == 3, "the app's sender, the stream reader and the reaper"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.close()


async def test_no_webhook_url_no_webhooks(engine: AsyncEngine) -> None:
    settings = make_settings(database_url=engine.url.render_as_string(hide_password=False))
    runtime = create_runtime(settings)
    try:
        assert runtime.hub.webhooks is None
        assert start_webhooks(runtime) == []
    finally:
        await runtime.close()
