"""Typed job payloads: each job's stored JSON object is validated into its model when the job
starts; one that does not validate fails at once (no retries, no failure hook); the JSON that
producers store keeps the shape it had before payloads had models."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from notiflow.admin.alerts import Alerter
from notiflow.content.jobs import PublishPayload
from notiflow.content.publishing import ClaimedPost
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import (
    ATTEMPT_KEY,
    Job,
    JobPayload,
    JobQueue,
    NoPayload,
    WorkspacePayload,
    build_broker,
    payload_json,
    run_job,
)
from notiflow.main.jobs import ALL_JOBS
from notiflow.main.runtime import Runtime
from notiflow.models import FailedJob, JobAttempt
from notiflow.privacy.service import RequestPayload
from tests.admin.webhook_receiver import WebhookReceiver


class TargetPayload(JobPayload):
    target_id: uuid.UUID
    tenant_id: uuid.UUID


def test_stored_payloads_keep_their_json_shape() -> None:
    post, workspace, tenant, first, second = (uuid.uuid4() for _ in range(5))
    claim = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    claimed = ClaimedPost(post, workspace, tenant, [first, second], claim)

    stored = payload_json(claimed.payload())

    # What ClaimedPost.payload() stored before it built a model (claim: datetime.isoformat()).
    assert stored == {
        "post_id": str(post),
        "workspace_id": str(workspace),
        "tenant_id": str(tenant),
        "target_ids": [str(first), str(second)],
        "claim": "2026-03-01T09:30:15.123456+00:00",
    }
    again = PublishPayload.model_validate(stored)
    assert again == claimed.payload()
    assert again.claim == claim
    assert payload_json(RequestPayload(request_id=post)) == {
        "request_id": str(post),
        "tenant_id": None,
    }
    assert payload_json(WorkspacePayload(workspace_id=workspace, tenant_id=tenant)) == {
        "workspace_id": str(workspace),
        "tenant_id": str(tenant),
    }
    assert payload_json(NoPayload()) == {}


def test_every_job_declares_its_payload_model() -> None:
    for job in ALL_JOBS:
        assert issubclass(job.payload, JobPayload), job.name
    # Periodic jobs are enqueued with an empty object: their models need nothing.
    for name in ("notifications.cleanup", "inbox.sync_all", "privacy.sweep", "delivery.sweep"):
        [job] = [job for job in ALL_JOBS if job.name == name]
        job.payload.model_validate({})


def test_a_payload_model_is_frozen_and_ignores_keys_it_does_not_name() -> None:
    workspace, tenant = uuid.uuid4(), uuid.uuid4()
    payload = WorkspacePayload.model_validate(
        {"workspace_id": str(workspace), "tenant_id": str(tenant), "added_later": 1}
    )
    assert payload == WorkspacePayload(workspace_id=workspace, tenant_id=tenant)
    with pytest.raises(ValueError, match="frozen"):
        payload.workspace_id = tenant  # type: ignore[misc] - what the test shows


async def test_a_job_gets_its_payload_as_its_model(runtime: Runtime) -> None:
    received: list[TargetPayload] = []

    async def record(runtime: Runtime, payload: TargetPayload) -> None:
        received.append(payload)

    queue = JobQueue(build_broker(None), [Job("content.check_target", record, TargetPayload)])
    await queue.start(runtime)
    sent = TargetPayload(target_id=uuid.uuid4(), tenant_id=uuid.uuid4())
    try:
        await queue.enqueue("content.check_target", sent)
        # A stored payload (a retry) is handed over as it was stored.
        await queue.enqueue("content.check_target", payload_json(sent))
        with pytest.raises(TypeError, match="takes a TargetPayload, not a NoPayload"):
            await queue.enqueue("content.check_target", NoPayload())
        for _ in range(200):
            if len(received) == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await queue.close()
    assert received == [sent, sent]


async def test_a_payload_that_does_not_validate_fails_at_once(runtime: Runtime) -> None:
    """No retry (the same payload would fail again) and no failure hook (there is no payload
    to hand it): a failed_jobs row and an alert, as for any job that gave up."""
    receiver = await WebhookReceiver().start()
    alerter = runtime.alerter = Alerter(slack_webhook_url=receiver.url)
    runs: list[TargetPayload] = []
    hook_calls: list[TargetPayload] = []

    async def check(runtime: Runtime, payload: TargetPayload) -> None:
        runs.append(payload)

    async def on_failure(runtime: Runtime, payload: TargetPayload, error: BaseException) -> None:
        hook_calls.append(payload)

    job = Job("content.check_target", check, TargetPayload, max_attempts=3, on_failure=on_failure)
    tenant = uuid.uuid4()
    stored = {"target_id": "not-an-id", "tenant_id": str(tenant)}
    try:
        await run_job(runtime, job, stored)
        for _ in range(200):
            if receiver.received:
                break
            await asyncio.sleep(0.01)
    finally:
        await alerter.close()
        await receiver.stop()

    assert runs == []
    assert hook_calls == []
    async with runtime.sessionmaker() as session:
        assert (await session.scalars(select(JobAttempt))).all() == []
        [failed] = (await session.scalars(select(FailedJob))).all()
    assert (failed.job_name, failed.attempts, failed.args, failed.tenant_id) == (
        "content.check_target",
        1,
        stored,
        tenant,
    )
    assert failed.exception.startswith("ValidationError: 1 validation error for TargetPayload")
    assert "target_id" in failed.exception
    [alert] = receiver.received
    assert "content.check_target" in alert["text"]


async def test_a_retry_whose_payload_no_longer_validates_gives_up(runtime: Runtime) -> None:
    """A retry row stored by an older version, whose payload the job's model now refuses: the
    row goes, the failure is recorded, and the ids it names that are not ids are left out."""

    async def check(runtime: Runtime, payload: TargetPayload) -> None:
        raise AssertionError("not run")

    job = Job("content.check_target", check, TargetPayload, max_attempts=3)
    stored = {"target_id": str(uuid.uuid4()), "tenant_id": "acme", "workspace_id": "brand"}
    async with runtime.sessionmaker() as session:
        attempt = JobAttempt(
            job_name=job.name, payload=stored, attempts=1, next_attempt_at=utcnow()
        )
        session.add(attempt)
        await session.commit()

    await run_job(runtime, job, {**stored, ATTEMPT_KEY: str(attempt.id)})

    async with runtime.sessionmaker() as session:
        assert (await session.scalars(select(JobAttempt))).all() == []
        [failed] = (await session.scalars(select(FailedJob))).all()
    assert (failed.attempts, failed.args, failed.tenant_id, failed.workspace_id) == (
        2,
        stored,
        None,
        None,
    )
