"""The scheduler's loops: the outbox sweeper, the due-post scanner, the schedule of periodic
jobs (:mod:`notiflow.schedule`) and the webhook outbox (its writer or its Redis stream reader,
and one sender per app)."""

from __future__ import annotations

import asyncio

from notiflow.content.jobs import scan_forever
from notiflow.delivery.jobs import sweep_forever
from notiflow.main.runtime import Runtime
from notiflow.realtime.webhooks import StreamIngest
from notiflow.schedule import run_schedule


def start_background(runtime: Runtime) -> list[asyncio.Task[None]]:
    """Start the scheduler's loops on the running event loop."""
    settings = runtime.settings
    return [
        asyncio.create_task(sweep_forever(runtime, settings.sweep_interval_seconds)),
        asyncio.create_task(run_schedule(runtime)),
        asyncio.create_task(scan_forever(runtime, settings.publish_scan_interval_seconds)),
        *start_webhooks(runtime),
    ]


def start_webhooks(runtime: Runtime) -> list[asyncio.Task[None]]:
    """The webhook loops of the process that owns the database: the events come from this
    process's own hub (no Redis) or from every node's stream (Redis, where dead nodes are
    reaped here too); each app's sender posts them."""
    outbox = runtime.webhook_outbox
    if outbox is None:
        return []
    tasks = [
        asyncio.create_task(sender.run_forever(outbox.stored_event(sender.app.app_id)))
        for sender in runtime.webhook_senders()
    ]
    if runtime.redis is None:
        tasks.append(asyncio.create_task(outbox.write_forever()))
    else:
        ingest = StreamIngest(runtime.redis, outbox)
        tasks.append(asyncio.create_task(ingest.run_forever()))
        tasks.append(asyncio.create_task(ingest.reap_forever()))
    return tasks
