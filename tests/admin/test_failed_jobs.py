"""A job that raises lands in failed_jobs and alerts; the CLI lists, retries and forgets it."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import uuid
import warnings

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from taskiq.api import run_receiver_task

from notiflow.admin.alerts import Alerter
from notiflow.kit.queue import (
    JOB_CONCURRENCY,
    Job,
    JobPayload,
    JobQueue,
    JobStreamBroker,
    NoPayload,
    build_broker,
    enqueue_due_retries,
)
from notiflow.main.runtime import Runtime
from notiflow.models import FailedJob, JobAttempt
from tests.admin.webhook_receiver import WebhookReceiver
from tests.conftest import REDIS_URL, TEST_PUSHER_SECRET
from tests.delivery.processes import NOTIFLOW, eventually, notiflow_env


class PostPayload(JobPayload):
    post_id: str
    tenant_id: uuid.UUID | None = None


class NamedPayload(JobPayload):
    workspace_id: str


async def test_a_failing_job_is_recorded_and_alerted(runtime: Runtime) -> None:
    receiver = await WebhookReceiver().start()
    runtime.alerter = Alerter(slack_webhook_url=receiver.url)
    calls: list[PostPayload] = []

    async def explode(runtime: Runtime, payload: PostPayload) -> None:
        calls.append(payload)
        raise RuntimeError("the provider is on fire")

    queue = JobQueue(
        build_broker(None), [Job("content.publish_post", explode, PostPayload, max_attempts=1)]
    )
    runtime.queue = queue
    await queue.start(runtime)
    tenant = uuid.uuid4()
    try:
        await queue.enqueue("content.publish_post", {"post_id": "p1", "tenant_id": str(tenant)})
        for _ in range(200):
            if receiver.received:
                break
            await asyncio.sleep(0.01)
    finally:
        await queue.close()
        await receiver.stop()
    assert calls == [PostPayload(post_id="p1", tenant_id=tenant)]
    async with runtime.sessionmaker() as session:
        [failed] = (await session.scalars(select(FailedJob))).all()
    assert failed.job_name == "content.publish_post"
    assert failed.tenant_id == tenant
    assert failed.exception == "RuntimeError: the provider is on fire"
    assert failed.traceback is not None
    assert "RuntimeError" in failed.traceback
    [alert] = receiver.received
    assert "content.publish_post" in alert["text"]


async def test_a_failing_job_is_retried_with_backoff_then_gives_up(runtime: Runtime) -> None:
    runs: list[float] = []
    hook_calls: list[str] = []

    async def flaky(runtime: Runtime, payload: PostPayload) -> None:
        runs.append(asyncio.get_running_loop().time())
        raise ConnectionError("provider unreachable")

    async def on_failure(runtime: Runtime, payload: PostPayload, error: BaseException) -> None:
        hook_calls.append(f"{payload.post_id}: {error}")

    queue = JobQueue(
        build_broker(None),
        [
            Job(
                "content.publish_post",
                flaky,
                PostPayload,
                max_attempts=3,
                backoff_seconds=0.2,
                on_failure=on_failure,
            )
        ],
    )
    runtime.queue = queue
    await queue.start(runtime)
    try:
        await queue.enqueue("content.publish_post", {"post_id": "p7"})
        for _ in range(300):  # what the sweeper does, quickly
            await enqueue_due_retries(runtime)
            if hook_calls:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
    finally:
        await queue.close()
    assert len(runs) == 3
    # Each retry waits at least the policy's shortest wait for its try (50 % of 0.2 s, then of
    # 0.4 s): a lower bound the sweeper guarantees, where a ratio of two observed waits
    # depends on how busy the machine is.
    first_wait, second_wait = runs[1] - runs[0], runs[2] - runs[1]
    assert first_wait >= 0.1 - 0.01, "the first retry waited"
    assert second_wait >= 0.2 - 0.01, "waits grow"
    assert hook_calls == ["p7: provider unreachable"]
    async with runtime.sessionmaker() as session:
        assert (await session.scalars(select(JobAttempt))).all() == []
        [failed] = (await session.scalars(select(FailedJob))).all()
    assert (failed.job_name, failed.attempts, failed.args) == (
        "content.publish_post",
        3,
        {"post_id": "p7"},
    )


async def test_a_retry_that_succeeds_leaves_nothing_behind(runtime: Runtime) -> None:
    runs: list[int] = []

    async def second_time_lucky(runtime: Runtime, payload: NoPayload) -> None:
        runs.append(1)
        if len(runs) == 1:
            raise TimeoutError("slow provider")

    queue = JobQueue(
        build_broker(None), [Job("inbox.sync", second_time_lucky, NoPayload, backoff_seconds=0.05)]
    )
    runtime.queue = queue
    await queue.start(runtime)
    try:
        await queue.enqueue("inbox.sync", {"workspace_id": str(uuid.uuid4())})
        for _ in range(200):
            await enqueue_due_retries(runtime)
            if len(runs) == 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
    finally:
        await queue.close()
    assert len(runs) == 2
    async with runtime.sessionmaker() as session:
        assert (await session.scalars(select(JobAttempt))).all() == []
        assert (await session.scalars(select(FailedJob))).all() == []


async def test_the_embedded_queue_runs_at_most_job_concurrency_jobs_at_once(
    runtime: Runtime,
) -> None:
    running = 0
    most = 0
    done = 0
    release = asyncio.Event()

    async def slow(runtime: Runtime, payload: NoPayload) -> None:
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        done += 1

    queue = JobQueue(build_broker(None), [Job("analytics.fetch_metrics", slow, NoPayload)])
    await queue.start(runtime)
    try:
        for _ in range(JOB_CONCURRENCY * 3):
            await queue.enqueue("analytics.fetch_metrics", {"workspace_id": str(uuid.uuid4())})
        for _ in range(100):
            await asyncio.sleep(0.01)
        assert most == JOB_CONCURRENCY  # the rest wait their turn (the database pool's size)
        release.set()
        for _ in range(500):
            if done == JOB_CONCURRENCY * 3:
                break
            await asyncio.sleep(0.01)
    finally:
        await queue.close()
    assert done == JOB_CONCURRENCY * 3


async def test_workers_keep_reading_after_redis_loses_the_job_stream(
    runtime: Runtime, redis: Redis
) -> None:
    """A Redis flush (or restart without persistence) removes the stream and its consumer
    group; the worker declares it again and runs the next job instead of failing forever."""
    ran: list[str] = []

    async def record(runtime: Runtime, payload: NamedPayload) -> None:
        ran.append(payload.workspace_id)

    broker = build_broker(REDIS_URL)
    assert isinstance(broker, JobStreamBroker)
    broker.block = 100  # short blocking reads, so the test does not wait on them
    queue = JobQueue(broker, [Job("inbox.sync", record, NamedPayload)])
    await queue.start(runtime)
    broker.is_worker_process = True
    receiver = asyncio.create_task(run_receiver_task(broker, max_async_tasks=5))
    try:
        await queue.enqueue("inbox.sync", {"workspace_id": "before"})
        await eventually(lambda: _true_when(ran == ["before"]))
        await redis.flushdb()  # the stream and its consumer group are gone
        await asyncio.sleep(0.3)
        await queue.enqueue("inbox.sync", {"workspace_id": "after"})
        await eventually(lambda: _true_when(ran[-1:] == ["after"]))
    finally:
        receiver.cancel()
        await asyncio.wait([receiver], timeout=5)
        await queue.close()
        # Taskiq's listener may be cancelled inside its claim pipeline, which redis-py then
        # reports as unclosed when collected; collect it here rather than in a later test. A
        # collected async generator is closed by a task the loop runs later, so let the loop
        # run those and collect again.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            for _ in range(3):
                gc.collect()
                await asyncio.sleep(0.1)


async def _true_when(condition: bool) -> bool:
    return condition


def _cli(engine: AsyncEngine, *args: str) -> subprocess.CompletedProcess[str]:
    env = notiflow_env(
        env="test",
        secret_key="failed-jobs-secret-key-0123456789abcdef",
        pusher_app_secret=TEST_PUSHER_SECRET,
        database_url=engine.url.render_as_string(hide_password=False),
    )
    return subprocess.run(  # noqa: S603 - our own console script
        [NOTIFLOW, *args], env=env, capture_output=True, text=True, check=False
    )


async def test_jobs_cli_lists_retries_and_forgets(engine: AsyncEngine, runtime: Runtime) -> None:
    async with runtime.sessionmaker() as session:
        first = FailedJob(job_name="notifications.cleanup", args={}, exception="boom")
        second = FailedJob(job_name="notifications.cleanup", args={}, exception="bang")
        session.add_all([first, second])
        await session.commit()

    listed = _cli(engine, "jobs", "failed")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {row["id"] for row in rows} == {str(first.id), str(second.id)}

    retried = _cli(engine, "jobs", "retry", str(first.id))
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["retried"] == [
        {"id": str(first.id), "job": "notifications.cleanup"}
    ]
    remaining = [
        json.loads(line)["id"] for line in _cli(engine, "jobs", "failed").stdout.splitlines()
    ]
    assert remaining == [str(second.id)], "a retried job leaves the list"

    forgotten = _cli(engine, "jobs", "forget", str(second.id))
    assert forgotten.returncode == 0, forgotten.stderr
    assert _cli(engine, "jobs", "failed").stdout == ""
    missing = _cli(engine, "jobs", "forget", str(uuid.uuid4()))
    assert missing.returncode == 1
    assert json.loads(missing.stderr)["error"]["code"] == "not_found"
