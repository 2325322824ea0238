"""/api/v1/admin/jobs and /api/v1/admin/schedule: the queue's depth, runs per minute, the
schedule with next runs, and "run now" for a workspace's job."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import select

from notiflow.delivery.mail_folder import FolderMailSender
from notiflow.kit.queue import (
    Job,
    JobPayload,
    JobQueue,
    NoPayload,
    WorkspacePayload,
    build_broker,
    run_job,
    sample_embedded_depth_forever,
    sample_queue_depth_forever,
)
from notiflow.kit.throughput import RedisThroughput
from notiflow.main.runtime import Runtime, wire_jobs
from notiflow.models import AuditLog, Workspace
from notiflow.models.tenancy import Role
from tests.conftest import REDIS_URL, MakeMember, Member

JOBS = "/api/v1/admin/jobs"
SCHEDULE = "/api/v1/admin/schedule"
RUN_NOW = "/api/v1/admin/schedule/run-now"


async def _workspace(runtime: Runtime, owner: Member, name: str = "Brand") -> Workspace:
    async with runtime.sessionmaker() as session:
        workspace = Workspace(tenant_id=owner.tenant_id, name=name, timezone="Asia/Baku")
        session.add(workspace)
        await session.commit()
    return workspace


def _total(minutes: list[dict[str, Any]], field: str) -> int:
    return sum(int(minute[field]) for minute in minutes)


async def test_the_embedded_queue_counts_the_runs_of_the_serving_process(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember, tmp_path: Path
) -> None:
    runtime.senders = {"email": FolderMailSender(tmp_path)}
    wire_jobs(runtime)
    assert runtime.queue is not None
    await runtime.queue.start(runtime)
    try:
        admin = await make_member("acme", role=Role.ADMIN)
        outsider = await make_member("globex", role=Role.OWNER)
        sent = await client.post(
            "/api/v1/notifications/send",
            json={
                "audience": "tenant",
                "type": "payment_failed",
                "title": "Payment failed",
                "message": "Update your card.",
            },
            headers=admin.headers,
        )
        assert sent.status_code == 202, sent.text
        minutes: list[dict[str, Any]] = []
        for _ in range(500):
            body = (await client.get(JOBS, headers=admin.headers)).json()["data"]
            minutes = body["throughput"]
            if _total(minutes, "tenant_finished") >= 1 and body["queue"]["running"] == 0:
                break
            await asyncio.sleep(0.02)
        assert body["queue"]["backend"] == "embedded"
        assert body["queue"]["waiting"] == 0
        assert len(minutes) == 60
        assert _total(minutes, "tenant_finished") >= 1, "the delivery job of acme's send"
        assert _total(minutes, "finished") >= _total(minutes, "tenant_finished")
        assert _total(minutes, "failed") == 0
        assert all(minute["queue_depth"] is None for minute in minutes), "no sampler ran yet"
        sampler = asyncio.create_task(sample_embedded_depth_forever(runtime.queue, interval=0.05))
        try:
            for _ in range(200):
                body = (await client.get(JOBS, headers=admin.headers)).json()["data"]
                if body["throughput"][-1]["queue_depth"] is not None:
                    break
                await asyncio.sleep(0.02)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        assert body["throughput"][-1]["queue_depth"] == 0

        theirs = (await client.get(JOBS, params={"minutes": 5}, headers=outsider.headers)).json()
        assert len(theirs["data"]["throughput"]) == 5
        assert _total(theirs["data"]["throughput"], "tenant_finished") == 0
        assert _total(theirs["data"]["throughput"], "finished") >= 1
    finally:
        await runtime.queue.close()


async def test_with_redis_the_depth_is_the_streams_and_runs_are_counted_in_redis(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember, redis: Redis
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)

    async def nothing(context: Any, payload: NoPayload) -> None:
        return None

    async def broken(context: Any, payload: NoPayload) -> None:
        raise RuntimeError("broken")

    job = Job("inbox.sync", nothing, NoPayload)
    failing = Job("inbox.sync_all", broken, NoPayload, max_attempts=1)
    queue = JobQueue(build_broker(REDIS_URL), [job, failing], throughput=RedisThroughput(redis))
    runtime.redis = redis
    runtime.queue = queue
    await queue.start(runtime)
    try:
        for _ in range(3):  # no worker reads: they wait in the stream
            await queue.enqueue("inbox.sync", {})
        await run_job(runtime, job, {"tenant_id": str(admin.tenant_id)})
        await run_job(runtime, job, {})
        await run_job(runtime, failing, {"tenant_id": str(admin.tenant_id)})
        sampler = asyncio.create_task(
            sample_queue_depth_forever(redis, interval=0.05, throughput=queue.throughput)
        )
        try:
            for _ in range(200):
                response = await client.get(JOBS, headers=admin.headers)
                assert response.status_code == 200, response.text
                body = response.json()["data"]
                if any(minute["queue_depth"] == 3 for minute in body["throughput"]):
                    break
                await asyncio.sleep(0.02)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        assert [m["queue_depth"] for m in body["throughput"] if m["queue_depth"] is not None]
        assert {m["queue_depth"] for m in body["throughput"]} <= {None, 3}, "sampled, charted"
        assert body["queue"]["backend"] == "redis"
        assert body["queue"]["waiting"] == 3
        assert body["queue"]["running"] is None
        minutes = body["throughput"]
        assert (_total(minutes, "finished"), _total(minutes, "failed")) == (2, 1)
        assert (_total(minutes, "tenant_finished"), _total(minutes, "tenant_failed")) == (1, 1)
    finally:
        runtime.redis = None
        await queue.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def test_the_schedule_lists_platform_jobs_and_the_tenants_workspace_runs(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    outsider = await make_member("globex", role=Role.OWNER)
    mine = await _workspace(runtime, owner)
    await _workspace(runtime, outsider, "Their brand")
    response = await client.get(SCHEDULE, headers=owner.headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    platform = {entry["job"]: entry for entry in data["platform"]}
    assert platform["notifications.cleanup"]["next_run_at"]
    assert platform["delivery.sweep"]["next_run_at"] is None
    assert {(e["job"], e["workspace_id"]) for e in data["workspaces"]} == {
        ("social.refresh_tokens", str(mine.id)),
        ("inbox.archive_old", str(mine.id)),
    }
    assert all(e["timezone"] == "Asia/Baku" and e["next_run_at"] for e in data["workspaces"])


class Recorded(JobPayload):
    workspace_id: uuid.UUID
    tenant_id: uuid.UUID


async def test_run_now_enqueues_the_workspace_job_exactly_once_and_is_audited(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    outsider = await make_member("globex", role=Role.OWNER)
    mine = await _workspace(runtime, owner)
    theirs = await _workspace(runtime, outsider, "Their brand")
    ran: list[WorkspacePayload] = []

    async def archive(context: Any, payload: WorkspacePayload) -> None:
        ran.append(payload)

    queue = JobQueue(build_broker(None), [Job("inbox.archive_old", archive, WorkspacePayload)])
    enqueued: list[tuple[str, Any]] = []
    real_enqueue = queue.enqueue

    async def spy(name: str, payload: JobPayload | Mapping[str, Any]) -> None:
        enqueued.append((name, payload))
        await real_enqueue(name, payload)

    queue.enqueue = spy  # type: ignore[method-assign]
    runtime.queue = queue
    await queue.start(runtime)
    try:
        response = await client.post(
            RUN_NOW,
            json={"job": "inbox.archive_old", "workspace_id": str(mine.id)},
            headers=owner.headers,
        )
        assert response.status_code == 202, response.text
        assert response.json()["data"]["enqueued"] is True
        expected = WorkspacePayload(workspace_id=mine.id, tenant_id=owner.tenant_id)
        assert enqueued == [("inbox.archive_old", expected)]
        for _ in range(200):
            if ran:
                break
            await asyncio.sleep(0.01)
        assert ran == [expected]

        for body, status in [
            ({"job": "inbox.archive_old", "workspace_id": str(theirs.id)}, 404),
            ({"job": "inbox.archive_old", "workspace_id": str(uuid.uuid4())}, 404),
            ({"job": "notifications.cleanup", "workspace_id": str(mine.id)}, 422),
            ({"job": "inbox.archive_old"}, 422),
            ({"job": "inbox.archive_old", "workspace_id": str(mine.id), "extra": 1}, 422),
        ]:
            refused = await client.post(RUN_NOW, json=body, headers=owner.headers)
            assert refused.status_code == status, (body, refused.text)
            assert refused.json()["error"]["code"] in (
                "not_found",
                "validation_failed",
                "unknown_job",
            )
        assert len(enqueued) == 1, "refused requests enqueue nothing"
    finally:
        await queue.close()
    async with runtime.sessionmaker() as session:
        [entry] = (await session.scalars(select(AuditLog))).all()
    assert (entry.action, entry.subject_id, entry.after, entry.actor_id) == (
        "scheduled_job.run_now",
        str(mine.id),
        {"job": "inbox.archive_old"},
        owner.id,
    )


async def test_members_get_403(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    workspace = await _workspace(runtime, member)
    for method, path, body in [
        ("GET", JOBS, None),
        ("GET", SCHEDULE, None),
        ("POST", RUN_NOW, {"job": "inbox.archive_old", "workspace_id": str(workspace.id)}),
    ]:
        response = await client.request(method, path, json=body, headers=member.headers)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
