"""``notiflow serve --demo``: what a new user sees — tokens, a scheduled post that goes out."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import select

from notiflow.content.publishing import Publisher, claim_due_targets
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.main.demo import DEMO_TIMEZONE, seed_demo
from notiflow.main.runtime import Runtime
from notiflow.models import Notification, Post, PostTarget
from notiflow.notifications.types import NotificationType
from notiflow.social.providers import build_providers
from tests.conftest import TEST_PUSHER_SECRET
from tests.delivery.processes import NOTIFLOW, free_port, notiflow_env


def _read_demo_block(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if line.rstrip() == "}":
            break
    seed: dict[str, object] = json.loads("".join(lines))["demo"]
    return seed


def test_serve_demo_prints_tokens_for_a_seeded_workspace(tmp_path: Path) -> None:
    port, ws_port = free_port(), free_port()
    env = notiflow_env(
        env="test",
        secret_key="demo-test-secret-key-0123456789abcdef",
        pusher_app_secret=TEST_PUSHER_SECRET,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db",
    )
    process = subprocess.Popen(  # noqa: S603 - our own console script
        [NOTIFLOW, "serve", "--demo", "--port", str(port), "--ws-port", str(ws_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        seed = _read_demo_block(process)
        api = f"http://127.0.0.1:{port}/api/v1"
        editor = {"Authorization": f"Bearer {seed['editor_token']}"}
        owner = {"Authorization": f"Bearer {seed['owner_token']}"}
        with httpx.Client(timeout=10) as client:
            for _ in range(100):
                try:
                    client.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            workspaces = (client.get(f"{api}/workspaces", headers=owner)).json()["data"]
            assert [(item["name"], item["timezone"]) for item in workspaces] == [
                ("Demo Brand", DEMO_TIMEZONE)
            ]
            workspace = f"{api}/workspaces/{seed['workspace_id']}"
            accounts = (client.get(f"{workspace}/social-accounts", headers=owner)).json()
            assert [item["provider"] for item in accounts["data"]] == ["sandbox"]
            post = (client.get(f"{workspace}/posts/{seed['post_id']}", headers=editor)).json()
            assert post["data"]["status"] == "scheduled"
            assert str(post["data"]["scheduled_at_local"]).endswith("+04:00")
            feed = (client.get(f"{api}/notifications", headers=editor)).json()["data"]
            assert [item["type"] for item in feed] == ["post_scheduled"]
    finally:
        process.terminate()
        process.communicate(timeout=10)  # also closes the pipe


def test_the_demo_has_its_own_database_and_news_in_the_first_minute(tmp_path: Path) -> None:
    """Started as the README says (no database setting): the demo writes ./var/demo.db, never
    the walk-through's ./var/notiflow.db, and the owner hears of a comment and a mention at
    once, not after a random wait."""
    port, ws_port = free_port(), free_port()
    env = notiflow_env(
        env="test",
        secret_key="demo-test-secret-key-0123456789abcdef",
        pusher_app_secret=TEST_PUSHER_SECRET,
    )
    process = subprocess.Popen(  # noqa: S603 - our own console script
        [NOTIFLOW, "serve", "--demo", "--port", str(port), "--ws-port", str(ws_port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        seed = _read_demo_block(process)
        assert str(seed["database"]).endswith("/var/demo.db")
        assert (tmp_path / "var" / "demo.db").exists()
        assert not (tmp_path / "var" / "notiflow.db").exists()
        owner = {"Authorization": f"Bearer {seed['owner_token']}"}
        news: set[str] = set()
        texts: list[str] = []
        with httpx.Client(timeout=10) as client:
            deadline = time.monotonic() + 60
            while not {"new_comment", "new_mention"} <= news and time.monotonic() < deadline:
                try:
                    feed = client.get(
                        f"http://127.0.0.1:{port}/api/v1/notifications", headers=owner
                    ).json()["data"]
                except httpx.HTTPError:
                    feed = []
                news = {item["type"] for item in feed}
                texts = [item["message"] for item in feed]
                time.sleep(0.5)
        assert {"new_comment", "new_mention"} <= news, news
        # Texts read like posts: no counters or bucket numbers.
        assert not any(re.search(r"\(\d+\.\d+\)", text) for text in texts), texts
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def test_the_demo_post_goes_out_and_its_author_is_told(runtime: Runtime) -> None:
    runtime.providers = build_providers(runtime.settings)
    async with runtime.sessionmaker() as session:
        seed = await seed_demo(
            session, runtime.token_cipher(), runtime.notification_service(session)
        )
        await commit_and_flush_effects(session)
        post = await session.get(Post, uuid.UUID(seed.post_id))
        assert post is not None
        assert post.scheduled_at is not None
        due_at = post.scheduled_at
    assert await claim_due_targets(runtime, now=due_at - timedelta(seconds=1)) == []
    [claimed] = await claim_due_targets(runtime, now=due_at + timedelta(seconds=1))
    outcomes = await Publisher(runtime).publish(claimed.post_id, claimed.target_ids, claimed.claim)
    assert outcomes == {"published": 1}
    async with runtime.sessionmaker() as session:
        post = await session.get(Post, claimed.post_id)
        assert post is not None
        assert post.status == "published"
        target = await session.scalar(select(PostTarget).where(PostTarget.post_id == post.id))
        assert target is not None
        assert target.external_url
        told = (
            await session.scalars(
                select(Notification.type).where(Notification.user_id == post.author_id)
            )
        ).all()
    assert sorted(told) == sorted(
        [NotificationType.POST_SCHEDULED.value, NotificationType.POST_PUBLISHED.value]
    )
