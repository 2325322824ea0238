"""The scheduler's loops: the outbox sweeper, the due-post scanner, the schedule of periodic
jobs (:mod:`notiflow.schedule`) and the webhook outbox (its writer or its Redis stream reader,
and one sender per app)."""

from __future__ import annotations

import asyncio

from taskiq.api import run_receiver_task

from notiflow.content.jobs import scan_forever
from notiflow.delivery.jobs import sweep_forever
from notiflow.kit.leadership import beat_forever, lead_forever
from notiflow.kit.locks import live_leases
from notiflow.kit.queue import sample_embedded_depth_forever, sample_queue_depth_forever
from notiflow.main.runtime import Runtime
from notiflow.realtime.webhooks import StreamIngest
from notiflow.schedule import run_schedule

# The scheduler's lease, and the prefix of each worker process's heartbeat (kit/leadership).
SCHEDULER_LEASE = "scheduler"
WORKER_HEARTBEATS = "heartbeat:worker:"


def start_elected_scheduler(runtime: Runtime) -> list[asyncio.Task[None]]:
    """Take part in the election of the one scheduler: while this process is elected, it runs
    the scheduler's loops (:func:`start_background`)."""
    election = lead_forever(
        runtime.sessionmaker,
        SCHEDULER_LEASE,
        lambda: start_background(runtime),
        lease_seconds=runtime.settings.scheduler_lease_seconds,
    )
    return [asyncio.create_task(election, name="scheduler-election")]


def start_worker(runtime: Runtime, concurrency: int) -> list[asyncio.Task[None]]:
    """Run jobs from the Redis queue in this process, and say so with a heartbeat."""
    assert runtime.queue is not None  # noqa: S101 - wire_jobs always sets it
    runtime.queue.broker.is_worker_process = True
    receiver = run_receiver_task(runtime.queue.broker, max_async_tasks=concurrency)
    heartbeat = beat_forever(
        runtime.sessionmaker,
        WORKER_HEARTBEATS,
        lease_seconds=runtime.settings.scheduler_lease_seconds,
    )
    return [
        asyncio.create_task(receiver, name="job-receiver"),
        asyncio.create_task(heartbeat, name="worker-heartbeat"),
    ]


def start_queue_sampler(runtime: Runtime) -> list[asyncio.Task[None]]:
    """Keep this process's ``notiflow_queue_depth{queue="jobs"}`` current and the queue's depth
    of each minute for the admin API (every process that serves /metrics runs one): the Redis
    stream's, or without Redis the embedded queue of this process."""
    queue = runtime.queue
    throughput = queue.throughput if queue is not None else None
    if runtime.redis is not None:
        sampler = sample_queue_depth_forever(runtime.redis, throughput=throughput)
        return [asyncio.create_task(sampler, name="queue-depth")]
    if queue is not None and queue.embedded:
        return [asyncio.create_task(sample_embedded_depth_forever(queue), name="queue-depth")]
    return []


async def jobs_health(runtime: Runtime) -> dict[str, str]:
    """Whether jobs run anywhere: a scheduler elected, and (with the Redis queue) a worker
    alive; without Redis, jobs run in the process that queues them."""
    try:
        scheduler = await live_leases(runtime.sessionmaker, SCHEDULER_LEASE)
        workers = (
            1
            if runtime.redis is None
            else await live_leases(runtime.sessionmaker, WORKER_HEARTBEATS)
        )
    except Exception as error:  # the database check reports the cause
        return {"scheduler": f"unknown: {type(error).__name__}", "worker": "unknown"}
    return {
        "scheduler": "ok" if scheduler else "none alive",
        "worker": ("in-process" if runtime.redis is None else "ok") if workers else "none alive",
    }


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
