"""Inbox sync: items stored once, the right people told once, per-account
failures kept apart, one sync per workspace at a time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from notiflow.inbox.jobs import JOBS, workspaces_to_sync
from notiflow.inbox.sync import InboxSyncIncomplete, sync_workspace
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import JobPayload, NoPayload, WorkspacePayload, payload_json, run_job
from notiflow.main.runtime import Runtime
from notiflow.models import InboxItem, JobAttempt, SocialAccount
from notiflow.models.platform import AccountStatus
from notiflow.models.tenancy import Role
from notiflow.social.providers.base import NeedsReauthError, PermanentError, RetryableError
from tests.conftest import MakeMember
from tests.inbox.factories import (
    ScriptedProvider,
    entry,
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


async def items_of(runtime: Runtime, account: SocialAccount) -> list[InboxItem]:
    async with runtime.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(InboxItem)
                    .where(InboxItem.social_account_id == account.id)
                    .order_by(InboxItem.external_id)
                )
            ).all()
        )


async def reload(runtime: Runtime, account: SocialAccount) -> SocialAccount:
    async with runtime.sessionmaker() as session:
        stored = await session.get(SocialAccount, account.id)
        assert stored is not None
        return stored


async def test_new_items_are_stored_once_and_the_right_people_are_told_once(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    author = await make_member("acme", role=Role.MEMBER)
    bystander = await make_member("acme", role=Role.MEMBER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace, handle="@brand")
    target = await make_published_target(runtime, account, author_id=author.id, external_id="s1")
    provider.inbox[account.external_account_id] = [
        entry("n1", kind="comment", author="@ann", text="Love it", in_reply_to="s1"),
        entry("n2", kind="mention", author="@bob", text="@brand hi"),
    ]

    report = await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert report.new_items == 2
    stored = await items_of(runtime, account)
    assert [(i.external_id, i.kind, i.author_handle) for i in stored] == [
        ("n1", "comment", "@ann"),
        ("n2", "mention", "@bob"),
    ]
    assert stored[0].post_target_id == target.id
    assert stored[1].post_target_id is None
    assert all(item.archived_at is None for item in stored)
    synced = await reload(runtime, account)
    assert synced.inbox_cursor == "2"
    assert synced.last_inbox_sync_at is not None
    owner_comments = await notifications_of(runtime, owner.id, "new_comment")
    assert [n.title for n in owner_comments] == ["New comment from @ann"]
    assert owner_comments[0].message == "Love it"
    assert owner_comments[0].action_url == f"/workspaces/{workspace.id}/inbox/{stored[0].id}"
    assert owner_comments[0].data is not None
    assert owner_comments[0].data["inbox_item_id"] == str(stored[0].id)
    assert [n.title for n in await notifications_of(runtime, owner.id, "new_mention")] == [
        "@bob mentioned @brand"
    ]
    # The post's author hears about the comment on their post, not about the mention.
    assert len(await notifications_of(runtime, author.id, "new_comment")) == 1
    assert await notifications_of(runtime, author.id, "new_mention") == []
    assert await notifications_of(runtime, bystander.id) == []

    # The network hands out the same entries again (same cursor, a re-sending network).
    provider.ignore_cursor = True
    again = await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert again.new_items == 0
    assert len(await items_of(runtime, account)) == 2
    assert len(await notifications_of(runtime, owner.id)) == 2
    assert len(await notifications_of(runtime, author.id)) == 1


async def test_the_next_sync_starts_from_the_stored_cursor(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    provider.inbox[account.external_account_id] = [entry("n1")]
    await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    provider.inbox[account.external_account_id].append(entry("n2", author="@new"))
    report = await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert report.new_items == 1
    assert provider.inbox_calls[-2:] == [
        (account.external_account_id, "1"),
        (account.external_account_id, "2"),
    ]
    titles = [n.title for n in await notifications_of(runtime, owner.id, "new_mention")]
    assert len(titles) == 2
    assert titles[1].startswith("@new mentioned")


async def test_a_burst_becomes_one_notification_per_kind(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    admin = await make_member("acme", role=Role.ADMIN)
    author = await make_member("acme", role=Role.MEMBER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    await make_published_target(runtime, account, author_id=author.id, external_id="ours")
    provider.page_size = 7  # the burst spans several pages, all fetched in one sync
    provider.inbox[account.external_account_id] = [
        entry(f"c{i:03}", kind="comment", author=f"@fan{i}", in_reply_to="ours" if i < 3 else None)
        for i in range(30)
    ] + [entry(f"m{i:03}", kind="mention", author=f"@m{i}") for i in range(12)]

    report = await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert report.new_items == 42
    for admin_id in (owner.id, admin.id):
        comments = await notifications_of(runtime, admin_id, "new_comment")
        mentions = await notifications_of(runtime, admin_id, "new_mention")
        assert [n.title for n in comments] == ["30 new comments"]
        assert [n.title for n in mentions] == ["12 new mentions"]
        assert comments[0].message == "@fan0, @fan1 and 28 others commented on your posts."
        assert comments[0].data is not None
        assert comments[0].data["count"] == 30
        assert comments[0].action_url == f"/workspaces/{workspace.id}/inbox?kind=comment"
    # The author hears only about the comments on their own post.
    assert [n.title for n in await notifications_of(runtime, author.id)] == ["3 new comments"]
    synced = await reload(runtime, account)
    assert synced.inbox_cursor == "42"


async def test_items_already_old_when_fetched_are_stored_archived_and_not_announced(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    provider.inbox[account.external_account_id] = [
        entry("old", occurred_at=utcnow() - timedelta(days=91)),
        entry("new", author="@recent"),
    ]

    await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    stored = {item.external_id: item for item in await items_of(runtime, account)}
    assert stored["old"].archived_at is not None
    assert stored["new"].archived_at is None
    assert [n.title for n in await notifications_of(runtime, owner.id)] == [
        f"@recent mentioned {account.handle}"
    ]


async def test_a_refused_token_marks_that_account_and_the_others_still_sync(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    revoked = await make_account(runtime, workspace, handle="@revoked")
    healthy = await make_account(runtime, workspace, handle="@healthy")
    provider.inbox[revoked.external_account_id] = [entry("r1")]
    provider.inbox[healthy.external_account_id] = [entry("h1"), entry("h2")]
    provider.errors[revoked.external_account_id] = NeedsReauthError(
        "The access token is invalid", status_code=401
    )

    report = await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert report.new_items == 2
    assert [i.external_id for i in await items_of(runtime, healthy)] == ["h1", "h2"]
    assert await items_of(runtime, revoked) == []
    marked = await reload(runtime, revoked)
    assert marked.status == AccountStatus.NEEDS_REAUTH.value
    assert marked.inbox_cursor is None
    assert (await reload(runtime, healthy)).inbox_cursor == "2"
    expired = await notifications_of(runtime, owner.id, "account_token_expired")
    assert len(expired) == 1
    assert "@revoked" in expired[0].title

    # The next sync leaves the marked account alone (and does not tell the owners again).
    calls = len(provider.inbox_calls)
    await sync_workspace(runtime, workspace.id, workspace.tenant_id)
    assert all(
        account != revoked.external_account_id for account, _ in provider.inbox_calls[calls:]
    )
    assert len(await notifications_of(runtime, owner.id, "account_token_expired")) == 1


async def test_a_transient_failure_saves_the_others_keeps_its_cursor_and_retries(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    flaky = await make_account(runtime, workspace)
    healthy = await make_account(runtime, workspace)
    provider.page_size = 2
    provider.inbox[flaky.external_account_id] = [entry(f"f{i}") for i in range(5)]
    provider.inbox[healthy.external_account_id] = [entry("h1")]
    # The first page of the flaky account arrives, the second fails.
    provider.errors[flaky.external_account_id] = RetryableError("503 Service Unavailable")
    provider.errors_after_pages = 1

    with pytest.raises(InboxSyncIncomplete, match="503"):
        await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert [i.external_id for i in await items_of(runtime, healthy)] == ["h1"]
    assert [i.external_id for i in await items_of(runtime, flaky)] == ["f0", "f1"]
    flaky_now = await reload(runtime, flaky)
    assert flaky_now.inbox_cursor == "2"
    assert flaky_now.last_inbox_sync_at is None
    assert flaky_now.status == AccountStatus.ACTIVE.value

    # The retry picks up where the last page that arrived left off.
    del provider.errors[flaky.external_account_id]
    report = await sync_workspace(runtime, workspace.id, workspace.tenant_id)
    assert report.new_items == 3
    assert len(await items_of(runtime, flaky)) == 5


async def test_the_job_is_retried_when_an_account_failed_transiently(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    provider.errors[account.external_account_id] = RetryableError("429 Too Many Requests")
    job = next(job for job in JOBS if job.name == "inbox.sync")
    payload = {"workspace_id": str(workspace.id), "tenant_id": str(workspace.tenant_id)}

    await run_job(runtime, job, payload)

    async with runtime.sessionmaker() as session:
        attempts = list((await session.scalars(select(JobAttempt))).all())
    assert [(a.job_name, a.payload) for a in attempts] == [("inbox.sync", payload)]
    assert attempts[0].last_error is not None
    assert "429" in attempts[0].last_error


async def test_a_permanent_refusal_is_skipped_without_retry(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    refused = await make_account(runtime, workspace)
    healthy = await make_account(runtime, workspace)
    provider.errors[refused.external_account_id] = PermanentError("403 Forbidden")
    provider.inbox[healthy.external_account_id] = [entry("h1")]

    report = await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert report.new_items == 1
    assert list(report.failed_accounts) == [str(refused.id)]
    assert (await reload(runtime, refused)).status == AccountStatus.ACTIVE.value


async def test_two_syncs_of_one_workspace_at_once_run_once(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    provider.inbox[account.external_account_id] = [entry("n1")]
    provider.gate = asyncio.Event()

    first = asyncio.create_task(sync_workspace(runtime, workspace.id, workspace.tenant_id))
    await provider.entered.wait()  # the first sync holds the workspace and is at the network
    second = await sync_workspace(runtime, workspace.id, workspace.tenant_id)
    provider.gate.set()
    done = await first

    assert second.skipped is True
    assert done.skipped is False
    assert done.new_items == 1
    # Only the first sync asked the network (its first page, then the empty next one).
    assert [cursor for _, cursor in provider.inbox_calls] == [None, "1"]
    assert len(await notifications_of(runtime, owner.id)) == 1
    # Once it is done the workspace can be synced again.
    assert (await sync_workspace(runtime, workspace.id, workspace.tenant_id)).skipped is False


async def test_a_sync_for_a_workspace_of_another_tenant_does_nothing(
    runtime: Runtime, provider: ScriptedProvider, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    other = await make_member("globex", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(runtime, workspace)
    provider.inbox[account.external_account_id] = [entry("n1")]

    report = await sync_workspace(runtime, workspace.id, other.tenant_id)

    assert report.skipped is True
    assert await items_of(runtime, account) == []


class RecordingQueue:
    # Counts no runs (the real queue's ``throughput``).
    throughput = None

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, dict[str, Any]]] = []

    async def enqueue(self, name: str, payload: JobPayload | dict[str, Any]) -> None:
        self.enqueued.append((name, payload_json(payload)))


async def test_sync_all_dispatches_one_sync_per_workspace_with_active_accounts(
    runtime: Runtime, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    other = await make_member("globex", role=Role.OWNER)
    active = await make_workspace(runtime, owner.tenant_id, "Active")
    await make_account(runtime, active)
    await make_account(runtime, active)
    paused = await make_workspace(runtime, owner.tenant_id, "Paused")
    await make_account(runtime, paused, status=AccountStatus.NEEDS_REAUTH)
    await make_workspace(runtime, owner.tenant_id, "Empty")
    elsewhere = await make_workspace(runtime, other.tenant_id, "Elsewhere")
    await make_account(runtime, elsewhere)
    queue = RecordingQueue()
    runtime.queue = queue  # type: ignore[assignment] # only enqueue is used

    job = next(job for job in JOBS if job.name == "inbox.sync_all")
    await job.function(runtime, NoPayload())

    expected = sorted(
        [
            {"workspace_id": str(active.id), "tenant_id": str(owner.tenant_id)},
            {"workspace_id": str(elsewhere.id), "tenant_id": str(other.tenant_id)},
        ],
        key=lambda payload: payload["workspace_id"],
    )
    assert queue.enqueued == [("inbox.sync", payload) for payload in expected]
    async with runtime.sessionmaker() as session:
        assert await workspaces_to_sync(session) == [
            WorkspacePayload.model_validate(payload) for payload in expected
        ]
