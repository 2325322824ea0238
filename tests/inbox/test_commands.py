"""``notiflow inbox sync-all`` and ``notiflow analytics fetch-metrics`` as real
subprocesses, embedded (no Redis: the per-workspace jobs run in the command itself)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.crypto import TokenCipher
from notiflow.kit.db import create_engine
from notiflow.kit.ids import utcnow
from notiflow.kit.uow import create_sessionmaker
from notiflow.models import (
    InboxItem,
    Notification,
    Post,
    PostMetricSnapshot,
    PostTarget,
    SocialAccount,
    Workspace,
)
from notiflow.models.platform import PostStatus, TargetStatus
from notiflow.models.tenancy import Role
from notiflow.tenancy.service import create_user
from tests.conftest import REDIS_URL, make_settings
from tests.main.test_cli import Cli, _recreate_postgres_database

pytestmark = pytest.mark.slow

CLI_DATABASE = f"notiflow_inbox_cli_test_{os.getpid()}"
SECRET_KEY = "inbox-cli-test-secret-key-0123456789abcdef"


@dataclass
class Seeded:
    engine: AsyncEngine
    workspace_id: str
    owner_id: str
    target_id: str


@pytest.fixture(params=["sqlite", "postgresql"])
async def cli(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cli]:
    if request.param == "postgresql":
        url = await _recreate_postgres_database(CLI_DATABASE, create=True)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'cli.db'}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFLOW_")}
    env["NOTIFLOW_DATABASE_URL"] = url
    env["NOTIFLOW_ENV"] = "test"
    env["NOTIFLOW_SECRET_KEY"] = SECRET_KEY
    env["NOTIFLOW_PUSHER_APP_SECRET"] = "cli-test-pusher-secret-0123"
    yield Cli(env=env, cwd=tmp_path)
    if request.param == "postgresql":
        await _recreate_postgres_database(CLI_DATABASE, create=False)


@pytest.fixture
async def seeded(cli: Cli) -> AsyncIterator[Seeded]:
    """A migrated database with a tenant owner, a workspace, a sandbox account and two
    published posts (one the sandbox knows, one it does not)."""
    upgraded = await cli.run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    engine = create_engine(cli.env["NOTIFLOW_DATABASE_URL"])
    cipher = TokenCipher.from_settings(make_settings(secret_key=SECRET_KEY))
    async with create_sessionmaker(engine)() as session:
        created = await create_user(
            session, tenant_name="Acme", email="owner@acme.example", role=Role.OWNER
        )
        workspace = Workspace(tenant_id=created.tenant.id, name="Main", timezone="Europe/Paris")
        session.add(workspace)
        await session.flush()
        account = SocialAccount(
            tenant_id=created.tenant.id,
            workspace_id=workspace.id,
            provider="sandbox",
            external_account_id="sbx-cli",
            handle="@brand@sandbox",
            access_token_encrypted=cipher.encrypt("sandbox-token"),
            options={
                "latency_ms": 0,
                "comment_rate": 1,
                "mention_rate": 0,
                "initial_buckets": 5,
            },
        )
        session.add(account)
        await session.flush()
        targets = []
        for external_id in ("sbx_cli_post", "not-on-the-network"):
            post = Post(
                tenant_id=created.tenant.id,
                workspace_id=workspace.id,
                author_id=created.user.id,
                content="Hello",
                status=PostStatus.PUBLISHED.value,
                published_at=utcnow(),
            )
            session.add(post)
            await session.flush()
            target = PostTarget(
                post_id=post.id,
                social_account_id=account.id,
                workspace_id=workspace.id,
                status=TargetStatus.PUBLISHED.value,
                external_id=external_id,
                published_at=utcnow(),
            )
            session.add(target)
            targets.append(target)
        await commit_and_flush_effects(session)
    try:
        yield Seeded(
            engine=engine,
            workspace_id=str(workspace.id),
            owner_id=str(created.user.id),
            target_id=str(targets[0].id),
        )
    finally:
        await engine.dispose()


async def test_inbox_sync_all_syncs_every_workspace_in_the_command(
    cli: Cli, seeded: Seeded
) -> None:
    result = await cli.run("inbox", "sync-all")

    assert result.returncode == 0, result.stderr
    assert result.json() == {
        "dispatched": 1,
        "workspaces": [seeded.workspace_id],
        "mode": "ran",
    }
    async with create_sessionmaker(seeded.engine)() as session:
        items = await session.scalar(
            select(func.count()).select_from(InboxItem).where(InboxItem.kind == "comment")
        )
        told = list(
            (
                await session.scalars(
                    select(Notification.title).where(Notification.type == "new_comment")
                )
            ).all()
        )
    assert items is not None
    assert items >= 5
    assert told == [f"{items} new comments"]

    again = await cli.run("inbox", "sync-all")
    assert again.returncode == 0, again.stderr
    assert again.json()["dispatched"] == 1


async def test_analytics_fetch_metrics_snapshots_known_posts(cli: Cli, seeded: Seeded) -> None:
    result = await cli.run("analytics", "fetch-metrics")

    assert result.returncode == 0, result.stderr
    assert result.json() == {
        "dispatched": 1,
        "workspaces": [seeded.workspace_id],
        "mode": "ran",
    }
    async with create_sessionmaker(seeded.engine)() as session:
        taken = list((await session.scalars(select(PostMetricSnapshot.post_target_id))).all())
    assert [str(target_id) for target_id in taken] == [seeded.target_id]


async def test_with_nothing_to_do_the_commands_dispatch_nothing(cli: Cli) -> None:
    for command in (("inbox", "sync-all"), ("analytics", "fetch-metrics")):
        result = await cli.run(*command)
        assert result.returncode == 0, result.stderr
        assert result.json() == {"dispatched": 0, "workspaces": [], "mode": "ran"}


@pytest.fixture
async def private_redis() -> AsyncIterator[tuple[str, Redis]]:
    """A Redis database next to the shared test one: other test runs flush that one, which
    would erase the messages this test looks for."""
    base, _, number = REDIS_URL.rpartition("/")
    url = f"{base}/{(int(number) - 2) % 16}" if number.isdigit() else REDIS_URL
    client = Redis.from_url(url)
    await client.delete("notiflow:jobs")
    yield url, client
    await client.delete("notiflow:jobs")
    await client.aclose()


async def test_with_redis_the_commands_enqueue_for_the_workers(
    cli: Cli, seeded: Seeded, private_redis: tuple[str, Redis]
) -> None:
    url, redis = private_redis
    cli.env["NOTIFLOW_REDIS_URL"] = url

    synced = await cli.run("inbox", "sync-all")
    measured = await cli.run("analytics", "fetch-metrics")

    for result in (synced, measured):
        assert result.returncode == 0, result.stderr
        assert result.json() == {
            "dispatched": 1,
            "workspaces": [seeded.workspace_id],
            "mode": "queued",
        }
    messages = [
        json.loads(fields[b"data"])
        for _, fields in await redis.xrange("notiflow:jobs")
        if seeded.workspace_id.encode() in fields[b"data"]
    ]
    assert sorted(message["task_name"] for message in messages) == [
        "analytics.fetch_metrics",
        "inbox.sync",
    ]
    # Nothing ran in the command itself: the workers do it.
    async with create_sessionmaker(seeded.engine)() as session:
        assert await session.scalar(select(func.count()).select_from(InboxItem)) == 0
