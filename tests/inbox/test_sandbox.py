"""Inbox sync and metrics against the shipped ``sandbox`` network (its clock moved by the test)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from notiflow.analytics.service import fetch_workspace_metrics
from notiflow.inbox.sync import sync_workspace
from notiflow.main.runtime import Runtime
from notiflow.models import InboxItem, PostMetricSnapshot
from notiflow.models.tenancy import Role
from notiflow.social.providers.sandbox import SandboxProvider
from tests.conftest import MakeMember
from tests.inbox.factories import (
    make_account,
    make_published_target,
    make_workspace,
    notifications_of,
)


async def test_sandbox_inbox_syncs_once_per_moment_and_links_comments_to_our_posts(
    runtime: Runtime, make_member: MakeMember
) -> None:
    now = datetime(2026, 11, 21, 12, 0, 30, tzinfo=UTC)
    sandbox = SandboxProvider(clock=lambda: now)
    runtime.providers = {"sandbox": sandbox}
    owner = await make_member("acme", role=Role.OWNER)
    author = await make_member("acme")
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(
        runtime,
        workspace,
        provider="sandbox",
        options={
            "latency_ms": 0,
            "comment_rate": 1,
            "mention_rate": 0.5,
            "initial_buckets": 10,
            "post_ids": ["sbx_ours"],
        },
    )
    target = await make_published_target(
        runtime, account, author_id=author.id, external_id="sbx_ours"
    )

    first = await sync_workspace(runtime, workspace.id, workspace.tenant_id)
    again = await sync_workspace(runtime, workspace.id, workspace.tenant_id)
    now += timedelta(minutes=3)
    later = await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert first.new_items >= 10  # one comment per minute, and some mentions
    assert again.new_items == 0
    assert later.new_items >= 3
    async with runtime.sessionmaker() as session:
        kinds = dict(
            (
                await session.execute(
                    select(InboxItem.kind, func.count())
                    .where(InboxItem.workspace_id == workspace.id)
                    .group_by(InboxItem.kind)
                )
            ).all()
        )
        unlinked_comments = await session.scalar(
            select(func.count()).where(
                InboxItem.kind == "comment", InboxItem.post_target_id != target.id
            )
        )
    assert kinds["comment"] >= 13
    assert kinds["comment"] + kinds.get("mention", 0) == first.new_items + later.new_items
    assert unlinked_comments == 0
    # Two syncs brought news, so the author heard twice about comments on their post.
    author_titles = [n.title for n in await notifications_of(runtime, author.id)]
    assert len(author_titles) == 2
    assert all(title.endswith("new comments") for title in author_titles)


async def test_sandbox_metrics_snapshot_sandbox_posts_and_skip_unknown_ones(
    runtime: Runtime, make_member: MakeMember
) -> None:
    runtime.providers = {"sandbox": SandboxProvider()}
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace, provider="sandbox", options={"latency_ms": 0})
    ours = await make_published_target(runtime, account, external_id="sbx_abc")
    await make_published_target(runtime, account, external_id="gone-123")

    report = await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)

    assert report.snapshots == 1
    assert report.missing == 1
    async with runtime.sessionmaker() as session:
        taken = list((await session.scalars(select(PostMetricSnapshot))).all())
    assert [s.post_target_id for s in taken] == [ours.id]
    assert taken[0].impressions is not None
    assert taken[0].impressions > 0
