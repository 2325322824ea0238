"""``analytics.fetch_metrics``: one snapshot per published target per run."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from notiflow.analytics import service
from notiflow.analytics.jobs import JOBS
from notiflow.analytics.service import (
    MetricsFetchIncomplete,
    fetch_workspace_metrics,
    workspaces_with_published_posts,
)
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import JobPayload, NoPayload, WorkspacePayload, payload_json
from notiflow.main.runtime import Runtime
from notiflow.models import PostMetricSnapshot, SocialAccount
from notiflow.models.platform import AccountStatus, TargetStatus
from notiflow.models.tenancy import Role
from notiflow.social.providers.base import NeedsReauthError, PostMetrics, RetryableError
from tests.conftest import MakeMember
from tests.inbox.factories import (
    ScriptedProvider,
    make_account,
    make_published_target,
    make_workspace,
    notifications_of,
)


@pytest.fixture
def provider(runtime: Runtime) -> ScriptedProvider:
    scripted = ScriptedProvider()
    runtime.providers = {"scripted": scripted}
    return scripted


async def snapshots(runtime: Runtime) -> list[PostMetricSnapshot]:
    async with runtime.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(PostMetricSnapshot).order_by(
                        PostMetricSnapshot.captured_at, PostMetricSnapshot.likes
                    )
                )
            ).all()
        )


async def test_each_published_target_gets_a_snapshot_and_unknown_ones_are_skipped(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    popular = await make_published_target(runtime, account, external_id="s-popular")
    quiet = await make_published_target(runtime, account, external_id="s-quiet")
    await make_published_target(runtime, account, external_id="s-deleted")  # gone from the network
    await make_published_target(
        runtime, account, external_id="s-ancient", published_at=utcnow() - timedelta(days=120)
    )
    await make_published_target(runtime, account, status=TargetStatus.PENDING)
    provider.metrics = {
        "s-popular": PostMetrics(likes=40, reposts=7, replies=3, impressions=900, raw={"x": 1}),
        "s-quiet": PostMetrics(likes=1),
        "s-ancient": PostMetrics(likes=99),
    }

    report = await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)

    assert report.snapshots == 2
    assert report.missing == 1
    taken = await snapshots(runtime)
    assert [
        (s.post_target_id, s.likes, s.reposts, s.replies, s.impressions, s.raw) for s in taken
    ] == [
        (quiet.id, 1, 0, 0, None, {}),
        (popular.id, 40, 7, 3, 900, {"x": 1}),
    ]
    assert all(s.workspace_id == workspace.id for s in taken)
    # The network was asked only about recent published posts.
    assert sorted(id_ for call in provider.metric_calls for id_ in call) == [
        "s-deleted",
        "s-popular",
        "s-quiet",
    ]


async def test_a_later_run_adds_a_new_snapshot_and_a_retry_right_away_does_not(
    runtime: Runtime,
    provider: ScriptedProvider,
    make_member: MakeMember,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    target = await make_published_target(runtime, account, external_id="s1")
    provider.metrics = {"s1": PostMetrics(likes=1)}
    await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)

    provider.metrics = {"s1": PostMetrics(likes=5)}
    again = await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)
    assert again.snapshots == 0  # measured minutes ago: a retry or double dispatch

    monkeypatch.setattr(service, "FRESH_MINUTES", 0)
    later = await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)
    assert later.snapshots == 1
    assert [(s.post_target_id, s.likes) for s in await snapshots(runtime)] == [
        (target.id, 1),
        (target.id, 5),
    ]


async def test_many_targets_are_asked_in_batches(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    for index in range(45):
        await make_published_target(runtime, account, external_id=f"s{index}")
    provider.metrics = {f"s{index}": PostMetrics(likes=index) for index in range(45)}

    report = await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)

    assert report.snapshots == 45
    assert [len(call) for call in provider.metric_calls] == [20, 20, 5]


async def test_a_refused_token_marks_the_account_and_the_others_are_measured(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    revoked = await make_account(runtime, workspace, handle="@revoked")
    healthy = await make_account(runtime, workspace)
    await make_published_target(runtime, revoked, external_id="r1")
    kept = await make_published_target(runtime, healthy, external_id="h1")
    provider.metrics = {"r1": PostMetrics(likes=1), "h1": PostMetrics(likes=2)}
    provider.metric_errors[revoked.external_account_id] = NeedsReauthError(
        "revoked", status_code=401
    )

    await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)

    assert [(s.post_target_id, s.likes) for s in await snapshots(runtime)] == [(kept.id, 2)]
    async with runtime.sessionmaker() as session:
        marked = await session.get(SocialAccount, revoked.id)
    assert marked is not None
    assert marked.status == AccountStatus.NEEDS_REAUTH.value
    assert len(await notifications_of(runtime, owner.id, "account_token_expired")) == 1


async def test_a_transient_failure_saves_the_rest_and_retries(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    flaky = await make_account(runtime, workspace)
    healthy = await make_account(runtime, workspace)
    await make_published_target(runtime, flaky, external_id="f1")
    kept = await make_published_target(runtime, healthy, external_id="h1")
    provider.metrics = {"f1": PostMetrics(likes=1), "h1": PostMetrics(likes=2)}
    provider.metric_errors[flaky.external_account_id] = RetryableError("502 Bad Gateway")

    with pytest.raises(MetricsFetchIncomplete, match="502"):
        await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)

    assert [s.post_target_id for s in await snapshots(runtime)] == [kept.id]
    # The retry measures the one that failed, not again the one already measured.
    del provider.metric_errors[flaky.external_account_id]
    retry = await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)
    assert retry.snapshots == 1
    assert len(await snapshots(runtime)) == 2


async def test_two_runs_for_one_workspace_at_once_run_once(
    runtime: Runtime, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    await make_published_target(runtime, account, external_id="s1")
    entered, gate = asyncio.Event(), asyncio.Event()

    class SlowProvider(ScriptedProvider):
        async def fetch_metrics(
            self, credentials: Any, external_ids: list[str]
        ) -> dict[str, PostMetrics]:
            entered.set()
            await gate.wait()
            return {"s1": PostMetrics(likes=3)}

    runtime.providers = {"scripted": SlowProvider()}

    first = asyncio.create_task(fetch_workspace_metrics(runtime, workspace.id, owner.tenant_id))
    await entered.wait()
    second = await fetch_workspace_metrics(runtime, workspace.id, owner.tenant_id)
    gate.set()
    done = await first

    assert second.skipped is True
    assert done.snapshots == 1
    assert len(await snapshots(runtime)) == 1


class RecordingQueue:
    # Counts no runs (the real queue's ``throughput``).
    throughput = None

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, dict[str, Any]]] = []

    async def enqueue(self, name: str, payload: JobPayload | dict[str, Any]) -> None:
        self.enqueued.append((name, payload_json(payload)))


async def test_fetch_all_dispatches_workspaces_with_recent_published_posts(
    runtime: Runtime, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    published = await make_workspace(runtime, owner.tenant_id, "Published")
    await make_published_target(runtime, await make_account(runtime, published))
    await make_published_target(runtime, await make_account(runtime, published))
    drafts = await make_workspace(runtime, owner.tenant_id, "Drafts")
    await make_published_target(
        runtime, await make_account(runtime, drafts), status=TargetStatus.PENDING
    )
    stale = await make_workspace(runtime, owner.tenant_id, "Stale")
    await make_published_target(
        runtime, await make_account(runtime, stale), published_at=utcnow() - timedelta(days=200)
    )
    paused = await make_workspace(runtime, owner.tenant_id, "Paused")
    await make_published_target(
        runtime, await make_account(runtime, paused, status=AccountStatus.NEEDS_REAUTH)
    )
    queue = RecordingQueue()
    runtime.queue = queue  # type: ignore[assignment] # only enqueue is used

    await next(job for job in JOBS if job.name == "analytics.fetch_all_metrics").function(
        runtime, NoPayload()
    )

    expected = {"workspace_id": str(published.id), "tenant_id": str(owner.tenant_id)}
    assert queue.enqueued == [("analytics.fetch_metrics", expected)]
    async with runtime.sessionmaker() as session:
        assert await workspaces_with_published_posts(session) == [
            WorkspacePayload.model_validate(expected)
        ]
