"""A job that raises lands in failed_jobs and alerts; the CLI lists, retries and forgets it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.admin.alerts import Alerter
from notiflow.kit.queue import Job, JobQueue, build_broker
from notiflow.models import FailedJob
from notiflow.runtime import Runtime
from tests.admin.webhook_receiver import WebhookReceiver
from tests.conftest import TEST_PUSHER_SECRET
from tests.delivery.processes import NOTIFLOW, notiflow_env


async def test_a_failing_job_is_recorded_and_alerted(runtime: Runtime) -> None:
    receiver = await WebhookReceiver().start()
    runtime.alerter = Alerter(slack_webhook_url=receiver.url)
    calls: list[dict[str, Any]] = []

    async def explode(runtime: Runtime, payload: dict[str, Any]) -> None:
        calls.append(payload)
        raise RuntimeError("the provider is on fire")

    queue = JobQueue(build_broker(None), [Job("content.publish_post", explode)])
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
    assert calls == [{"post_id": "p1", "tenant_id": str(tenant)}]
    async with runtime.sessionmaker() as session:
        [failed] = (await session.scalars(select(FailedJob))).all()
    assert failed.job_name == "content.publish_post"
    assert failed.tenant_id == tenant
    assert failed.exception == "RuntimeError: the provider is on fire"
    assert failed.traceback is not None
    assert "RuntimeError" in failed.traceback
    [alert] = receiver.received
    assert "content.publish_post" in alert["text"]


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
