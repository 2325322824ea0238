"""Test data for the inbox and analytics tests: workspaces, accounts, published posts, and a
scriptable provider implementing the adapter contract."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import Notification, Post, PostTarget, SocialAccount, Workspace
from notiflow.models.platform import AccountStatus, PostStatus, TargetStatus
from notiflow.social.providers.base import (
    AccountProfile,
    Credentials,
    InboxEntry,
    InboxPage,
    PostMetrics,
    ProviderError,
    PublishedPost,
    PublishRequest,
    TokenGrant,
)


async def make_workspace(runtime: Runtime, tenant_id: uuid.UUID, name: str = "Main") -> Workspace:
    async with runtime.sessionmaker() as session:
        workspace = Workspace(tenant_id=tenant_id, name=name, timezone="UTC")
        session.add(workspace)
        await commit_and_flush_effects(session)
    return workspace


async def make_account(
    runtime: Runtime,
    workspace: Workspace,
    *,
    provider: str = "scripted",
    handle: str | None = None,
    status: AccountStatus = AccountStatus.ACTIVE,
    options: dict[str, object] | None = None,
    external_account_id: str | None = None,
    instance_url: str | None = None,
    access_token: str = "token",  # noqa: S107 - a test value, not a secret
) -> SocialAccount:
    async with runtime.sessionmaker() as session:
        external = external_account_id or f"acct-{uuid.uuid4().hex[:8]}"
        account = SocialAccount(
            tenant_id=workspace.tenant_id,
            workspace_id=workspace.id,
            provider=provider,
            external_account_id=external,
            handle=handle or f"@{external}",
            instance_url=instance_url,
            access_token_encrypted=runtime.token_cipher().encrypt(access_token),
            status=status.value,
            options=dict(options or {}),
        )
        session.add(account)
        await commit_and_flush_effects(session)
    return account


async def make_published_target(
    runtime: Runtime,
    account: SocialAccount,
    *,
    author_id: uuid.UUID | None = None,
    external_id: str | None = None,
    published_at: datetime | None = None,
    status: TargetStatus = TargetStatus.PUBLISHED,
) -> PostTarget:
    published_at = published_at or utcnow() - timedelta(hours=1)
    async with runtime.sessionmaker() as session:
        post = Post(
            tenant_id=account.tenant_id,
            workspace_id=account.workspace_id,
            author_id=author_id,
            content="Hello from our brand",
            status=PostStatus.PUBLISHED.value
            if status is TargetStatus.PUBLISHED
            else PostStatus.SCHEDULED.value,
            published_at=published_at if status is TargetStatus.PUBLISHED else None,
        )
        session.add(post)
        await session.flush()
        target = PostTarget(
            post_id=post.id,
            social_account_id=account.id,
            workspace_id=account.workspace_id,
            status=status.value,
            external_id=(external_id or f"status-{uuid.uuid4().hex[:8]}")
            if status is TargetStatus.PUBLISHED
            else None,
            published_at=published_at if status is TargetStatus.PUBLISHED else None,
        )
        session.add(target)
        await commit_and_flush_effects(session)
    return target


def entry(
    external_id: str,
    *,
    kind: str = "mention",
    author: str = "@fan@example.social",
    text: str = "hello",
    occurred_at: datetime | None = None,
    in_reply_to: str | None = None,
) -> InboxEntry:
    return InboxEntry(
        external_id=external_id,
        kind=kind,
        author_handle=author,
        text=text,
        occurred_at=occurred_at or utcnow() - timedelta(minutes=5),
        author_name="A Fan",
        url=f"https://example.social/@fan/{external_id}",
        in_reply_to_external_id=in_reply_to,
    )


@dataclass
class ScriptedProvider:
    """A network whose inbox and counts the test writes, per account (external account id).

    The inbox cursor is the number of entries already handed out; ``page_size`` entries per
    page. ``ignore_cursor`` makes it hand out the same entries again (a network that re-sends).
    ``errors`` raise on the next fetch of that account (after ``errors_after_pages`` pages).
    """

    name: str = "scripted"
    page_size: int = 50
    ignore_cursor: bool = False
    inbox: dict[str, list[InboxEntry]] = field(default_factory=dict)
    metrics: dict[str, PostMetrics] = field(default_factory=dict)
    errors: dict[str, ProviderError] = field(default_factory=dict)
    errors_after_pages: int = 0
    metric_errors: dict[str, ProviderError] = field(default_factory=dict)
    # Set to make fetch_inbox wait (entered is set when a fetch has started).
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    inbox_calls: list[tuple[str, str | None]] = field(default_factory=list)
    metric_calls: list[list[str]] = field(default_factory=list)

    async def verify(self, credentials: Credentials) -> AccountProfile:
        raise NotImplementedError

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        raise NotImplementedError

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        raise NotImplementedError

    async def fetch_inbox(self, credentials: Credentials, cursor: str | None) -> InboxPage:
        account = credentials.external_account_id or ""
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        pages_so_far = sum(1 for called, _ in self.inbox_calls if called == account)
        self.inbox_calls.append((account, cursor))
        if account in self.errors and pages_so_far >= self.errors_after_pages:
            raise self.errors[account]
        start = 0 if self.ignore_cursor or cursor is None else int(cursor)
        entries = self.inbox.get(account, [])[start : start + self.page_size]
        return InboxPage(entries=entries, cursor=str(start + len(entries)))

    async def fetch_metrics(
        self, credentials: Credentials, external_ids: list[str]
    ) -> dict[str, PostMetrics]:
        account = credentials.external_account_id or ""
        self.metric_calls.append(list(external_ids))
        if account in self.metric_errors:
            raise self.metric_errors[account]
        return {key: self.metrics[key] for key in external_ids if key in self.metrics}

    async def refresh_token(self, credentials: Credentials) -> TokenGrant | None:
        return None

    async def close(self) -> None:
        return None


async def notifications_of(
    runtime: Runtime, user_id: uuid.UUID, type_: str | None = None
) -> list[Notification]:
    async with runtime.sessionmaker() as session:
        query = select(Notification).where(Notification.user_id == user_id)
        if type_ is not None:
            query = query.where(Notification.type == type_)
        return list((await session.scalars(query.order_by(Notification.created_at))).all())
