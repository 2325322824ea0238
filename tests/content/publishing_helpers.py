"""Helpers of the publishing tests: a scripted network, a queue that records, posts as rows."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from taskiq import InMemoryBroker

from notiflow.content.jobs import PublishPayload, publish_post
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import JobPayload, JobQueue, payload_json
from notiflow.main.runtime import Runtime
from notiflow.models import Notification, Post, PostTarget, SocialAccount, Workspace
from notiflow.models.platform import PostStatus
from notiflow.social.providers.base import (
    AccountProfile,
    Credentials,
    InboxPage,
    OutcomeUnknownError,
    PostMetrics,
    PublishedPost,
    PublishRequest,
    TokenGrant,
)

# What a scripted publish does: "ok", "sent_then_unknown" (posts, then the answer is lost),
# "hang_after_send" (posts, then never answers), or an exception to raise without posting.
Step = str | Exception


@dataclass
class ScriptedNetwork:
    """A network whose answers are scripted per account (by external account id).

    It does NOT deduplicate by idempotency key (like a network without one): re-sending blindly
    after an unknown outcome would show up as a second post in ``posts``.
    """

    name: str = "scripted"
    scripts: dict[str, list[Step]] = field(default_factory=dict)
    find_scripts: dict[str, list[Step]] = field(default_factory=dict)
    posts: list[tuple[str, str]] = field(default_factory=list)  # (account, key) per created post
    publish_calls: list[tuple[str, str, int]] = field(default_factory=list)
    find_calls: list[tuple[str, str]] = field(default_factory=list)
    sent: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, account: SocialAccount, *steps: Step) -> None:
        self.scripts[account.external_account_id] = list(steps)

    def posts_of(self, account: SocialAccount) -> int:
        return sum(1 for owner, _ in self.posts if owner == account.external_account_id)

    def _create(self, owner: str, key: str) -> PublishedPost:
        self.posts.append((owner, key))
        number = len(self.posts)
        self.sent.set()
        return PublishedPost(f"status-{number}", f"https://social.example/{owner}/{number}")

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        owner = credentials.external_account_id or "?"
        self.publish_calls.append((owner, request.idempotency_key, request.attempt))
        steps = self.scripts.get(owner, [])
        step = steps.pop(0) if steps else "ok"
        if isinstance(step, Exception):
            raise step
        if step == "ok":
            return self._create(owner, request.idempotency_key)
        self._create(owner, request.idempotency_key)
        if step == "sent_then_unknown":
            raise OutcomeUnknownError("the connection dropped after sending")
        await asyncio.Event().wait()  # "hang_after_send": never answers
        raise AssertionError("unreachable")

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        owner = credentials.external_account_id or "?"
        self.find_calls.append((owner, request.idempotency_key))
        steps = self.find_scripts.get(owner, [])
        step = steps.pop(0) if steps else "ok"
        if isinstance(step, Exception):
            raise step
        for number, (who, key) in enumerate(self.posts, start=1):
            if who == owner and key == request.idempotency_key:
                return PublishedPost(f"status-{number}", f"https://social.example/{owner}/{number}")
        return None

    async def verify(self, credentials: Credentials) -> AccountProfile:
        return AccountProfile(credentials.external_account_id or "?", "@someone")

    async def fetch_inbox(self, credentials: Credentials, cursor: str | None) -> InboxPage:
        return InboxPage([], cursor)

    async def fetch_metrics(
        self, credentials: Credentials, external_ids: list[str]
    ) -> dict[str, PostMetrics]:
        return {}

    async def refresh_token(self, credentials: Credentials) -> TokenGrant | None:
        return None

    async def close(self) -> None:
        return None


class RecordingQueue(JobQueue):
    """A queue that keeps what was enqueued (as the JSON the real queue carries), for the test
    to run by hand."""

    def __init__(self) -> None:
        super().__init__(InMemoryBroker(), [])
        self.messages: list[tuple[str, dict[str, Any]]] = []

    async def enqueue(self, name: str, payload: JobPayload | dict[str, Any]) -> None:
        self.messages.append((name, payload_json(payload)))

    def take(self) -> list[PublishPayload]:
        payloads = [
            PublishPayload.model_validate(payload)
            for name, payload in self.messages
            if name == "content.publish_post"
        ]
        self.messages.clear()
        return payloads


async def run_queued(runtime: Runtime, queue: RecordingQueue) -> int:
    """Run every queued content.publish_post (as the worker would); returns how many ran."""
    payloads = queue.take()
    for payload in payloads:
        await publish_post(runtime, payload)
    return len(payloads)


async def make_post(
    runtime: Runtime,
    workspace: Workspace,
    accounts: Sequence[SocialAccount],
    *,
    author_id: uuid.UUID | None,
    scheduled_at: datetime | None = None,
    status: PostStatus = PostStatus.SCHEDULED,
    content: str = "Hello from notiflow",
) -> Post:
    """A post with one target per account, due at ``scheduled_at`` (now by default)."""
    when = scheduled_at if scheduled_at is not None else utcnow()
    async with runtime.sessionmaker() as session:
        post = Post(
            tenant_id=workspace.tenant_id,
            workspace_id=workspace.id,
            author_id=author_id,
            content=content,
            status=status.value,
            scheduled_at=when,
            scheduled_timezone=workspace.timezone,
        )
        session.add(post)
        await session.flush()
        due = when if status is PostStatus.SCHEDULED else None
        for account in accounts:
            session.add(
                PostTarget(
                    post_id=post.id,
                    social_account_id=account.id,
                    workspace_id=workspace.id,
                    next_attempt_at=due,
                )
            )
        await commit_and_flush_effects(session)
    return post


async def targets_of(runtime: Runtime, post: Post) -> dict[uuid.UUID, PostTarget]:
    """The post's targets by account id, as stored now."""
    async with runtime.sessionmaker() as session:
        rows = (
            await session.scalars(select(PostTarget).where(PostTarget.post_id == post.id))
        ).all()
    return {row.social_account_id: row for row in rows}


async def reload(runtime: Runtime, post: Post) -> Post:
    async with runtime.sessionmaker() as session:
        return await session.get_one(Post, post.id)


async def notifications_of(runtime: Runtime, user_id: uuid.UUID) -> list[Notification]:
    async with runtime.sessionmaker() as session:
        rows = await session.scalars(
            select(Notification)
            .where(Notification.user_id == user_id, Notification.type.like("post_%"))
            .order_by(Notification.created_at)
        )
        return list(rows.all())
