"""End to end with real processes and a real (fake) Mastodon server over HTTP: a post scheduled
through the API goes out on time, and a worker killed while the network is answering does not
make it go out twice.

Embedded (``notiflow serve``) and scale-out (``notiflow api`` + ``notiflow worker`` +
``notiflow scheduler`` over Redis), each on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import Notification, Post, PostTarget, PublishAttempt, SocialAccount, Workspace
from notiflow.models.tenancy import Role
from tests.conftest import REDIS_URL, TEST_PUSHER_SECRET, XDIST_WORKER, MakeMember, Member
from tests.delivery.processes import NotiflowProcess, eventually, free_port, notiflow_env
from tests.social.fake_mastodon import FakeMastodon, running_fake_mastodon

# A Redis database of these tests' own, never flushed: other test runs on this machine flush the
# shared one (tests.conftest.REDIS_URL), which deletes the job stream's consumer group under a
# running worker (taskiq then fails every read with NOGROUP until the worker is restarted).
# A message left from an earlier run is harmless: its claim no longer matches and it is skipped.
PUBLISH_REDIS_URL = os.environ.get(
    "NOTIFLOW_TEST_PUBLISH_REDIS_URL", REDIS_URL.rsplit("/", 1)[0] + f"/{11 - XDIST_WORKER}"
)
LEASE_SECONDS = 4.0
PROVIDER_TIMEOUT_SECONDS = 3.0


@pytest.fixture
def fake_mastodon() -> Iterator[FakeMastodon]:
    with running_fake_mastodon() as server:
        yield server


@dataclass
class Deployment:
    api: NotiflowProcess
    # The process that runs publish jobs: `serve` itself when embedded, else the worker.
    publisher: NotiflowProcess
    processes: list[NotiflowProcess]
    base_url: str

    async def start(self) -> None:
        for process in self.processes:
            await process.start(settle=1.0)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()


def _deployment(mode: str, runtime: Runtime) -> Deployment:
    api_port = free_port()
    settings = {
        "env": "test",
        "secret_key": runtime.settings.secret_key,  # the same key encrypts the account's token
        "pusher_app_secret": TEST_PUSHER_SECRET,
        "database_url": runtime.settings.database_url,
        "public_url": f"http://127.0.0.1:{api_port}",
        "publish_scan_interval_seconds": "0.5",
        "publish_lease_seconds": str(LEASE_SECONDS),
        "publish_backoff_seconds": "0.5",
        "provider_timeout_seconds": str(PROVIDER_TIMEOUT_SECONDS),
        "sweep_interval_seconds": "0.5",
        "log_level": "WARNING",
    }
    if mode == "redis":
        settings["redis_url"] = PUBLISH_REDIS_URL
    env = notiflow_env(**settings)
    ready = f"http://127.0.0.1:{api_port}/health"
    if mode == "embedded":
        api = NotiflowProcess(
            ["serve", "--port", str(api_port), "--ws-port", str(free_port())], env, ready
        )
        return Deployment(api, api, [api], f"http://127.0.0.1:{api_port}")
    api = NotiflowProcess(["api", "--port", str(api_port)], env, ready)
    worker = NotiflowProcess(["worker", "--concurrency", "4"], env)
    scheduler = NotiflowProcess(["scheduler"], env)
    return Deployment(api, worker, [api, worker, scheduler], f"http://127.0.0.1:{api_port}")


async def _mastodon_account(
    runtime: Runtime, owner: Member, fake: FakeMastodon
) -> tuple[Workspace, SocialAccount]:
    async with httpx.AsyncClient(base_url=fake.url) as client:
        me = (
            await client.get(
                "/api/v1/accounts/verify_credentials",
                headers={"Authorization": f"Bearer {fake.token}"},
            )
        ).json()
    async with runtime.sessionmaker() as session:
        workspace = Workspace(tenant_id=owner.tenant_id, name="Main", timezone="Europe/Berlin")
        session.add(workspace)
        await session.flush()
        account = SocialAccount(
            tenant_id=owner.tenant_id,
            workspace_id=workspace.id,
            provider="mastodon",
            external_account_id=str(me["id"]),
            handle=f"@{me['username']}",
            instance_url=fake.url,
            access_token_encrypted=runtime.token_cipher().encrypt(fake.token),
        )
        session.add(account)
        await commit_and_flush_effects(session)
    return workspace, account


async def _schedule(
    deployment: Deployment,
    owner: Member,
    workspace: Workspace,
    account: SocialAccount,
    content: str,
    at: datetime,
) -> uuid.UUID:
    """Create and submit a post through the HTTP API (an owner's post is scheduled at once)."""
    async with httpx.AsyncClient(base_url=deployment.base_url, headers=owner.headers) as client:
        created = await client.post(
            f"/api/v1/workspaces/{workspace.id}/posts",
            json={
                "content": content,
                "account_ids": [str(account.id)],
                "scheduled_at": at.isoformat(),
            },
        )
        assert created.status_code == 201, created.text
        post_id = created.json()["data"]["id"]
        submitted = await client.post(f"/api/v1/workspaces/{workspace.id}/posts/{post_id}/submit")
        assert submitted.status_code == 200, submitted.text
        assert submitted.json()["data"]["status"] == "scheduled"
    return uuid.UUID(post_id)


async def _target(runtime: Runtime, post_id: uuid.UUID) -> PostTarget:
    async with runtime.sessionmaker() as session:
        return (
            await session.scalars(select(PostTarget).where(PostTarget.post_id == post_id))
        ).one()


async def _post(runtime: Runtime, post_id: uuid.UUID) -> Post:
    async with runtime.sessionmaker() as session:
        return await session.get_one(Post, post_id)


@pytest.mark.parametrize("mode", ["embedded", "redis"])
async def test_a_scheduled_post_is_published_on_time(
    mode: str,
    engine: AsyncEngine,
    runtime: Runtime,
    make_member: MakeMember,
    fake_mastodon: FakeMastodon,
) -> None:
    deployment = _deployment(mode, runtime)
    owner = await make_member("acme", role=Role.OWNER)
    workspace, account = await _mastodon_account(runtime, owner, fake_mastodon)
    await deployment.start()
    try:
        due = utcnow() + timedelta(seconds=3)
        post_id = await _schedule(
            deployment, owner, workspace, account, "Launch day! #notiflow", due
        )
        assert fake_mastodon.state()["statuses_created"] == 0, "not before its time"

        async def published() -> bool:
            return (await _target(runtime, post_id)).status == "published"

        # Within one minute of its time (we aim for seconds).
        await eventually(
            published, timeout=(due + timedelta(seconds=60) - utcnow()).total_seconds()
        )
        seen_at = utcnow()
        await asyncio.sleep(0.5)  # a pause in which a duplicate could show up
    finally:
        deployment.stop()

    target = await _target(runtime, post_id)
    assert target.published_at is not None
    assert target.published_at >= due - timedelta(seconds=1)
    lag = (seen_at - due).total_seconds()
    print(f"\n[{mode}/{engine.dialect.name}] published {lag:.2f} s after its time")
    assert lag < 60
    state = fake_mastodon.state()
    assert state["statuses_created"] == 1
    assert state["statuses"][0]["text"] == "Launch day! #notiflow"
    assert target.external_id == state["statuses"][0]["id"]
    assert (await _post(runtime, post_id)).status == "published"
    async with runtime.sessionmaker() as session:
        notifications = (
            await session.scalars(select(Notification).where(Notification.user_id == owner.id))
        ).all()
    assert [n.type for n in notifications if n.type.startswith("post_")] == ["post_published"]


@pytest.mark.parametrize("mode", ["embedded", "redis"])
async def test_a_publisher_killed_mid_call_does_not_post_twice(
    mode: str,
    engine: AsyncEngine,
    runtime: Runtime,
    make_member: MakeMember,
    fake_mastodon: FakeMastodon,
) -> None:
    """The instance creates the status and then does not answer; the process publishing it is
    SIGKILLed while it waits. After the lease, the post is found on the instance and recorded:
    one status in all."""
    deployment = _deployment(mode, runtime)
    owner = await make_member("acme", role=Role.OWNER)
    workspace, account = await _mastodon_account(runtime, owner, fake_mastodon)
    fake_mastodon.hang(60, after_commit=True)
    await deployment.start()
    try:
        due = utcnow() + timedelta(seconds=2)
        post_id = await _schedule(deployment, owner, workspace, account, "Hello, fediverse", due)

        async def created() -> bool:
            return bool(fake_mastodon.state()["statuses_created"] >= 1)

        await eventually(created, timeout=30)
        deployment.publisher.kill()  # while the call is in flight (the server hangs 60 s)
        killed_at = utcnow()
        await (
            deployment.api.start()
            if deployment.publisher is deployment.api
            else deployment.publisher.start(settle=0.5)
        )

        async def published() -> bool:
            return (await _target(runtime, post_id)).status == "published"

        await eventually(published, timeout=30)
        recovered_at = utcnow()
        await asyncio.sleep(1.0)  # a pause in which a duplicate could show up
    finally:
        deployment.stop()

    assert fake_mastodon.state()["statuses_created"] == 1, "posted twice"
    target = await _target(runtime, post_id)
    assert target.external_id == fake_mastodon.state()["statuses"][0]["id"]
    async with runtime.sessionmaker() as session:
        attempts = (
            await session.scalars(
                select(PublishAttempt)
                .where(PublishAttempt.target_id == target.id)
                .order_by(PublishAttempt.attempt)
            )
        ).all()
    # The first call never finished (the process died in it); the second found the status.
    assert attempts[0].finished_at is None
    assert attempts[-1].outcome == "published"
    assert (await _post(runtime, post_id)).status == "published"
    recovery = (recovered_at - killed_at).total_seconds()
    print(f"\n[{mode}/{engine.dialect.name}] recovered {recovery:.2f} s after the kill")
