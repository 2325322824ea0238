"""The posts API as its users see it: drafts, approval, local-time scheduling, who may do what."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, Membership, Post, PostMetricSnapshot, PostTarget, Workspace
from notiflow.models.platform import AccountStatus, PostStatus, TargetStatus
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember, Member
from tests.content.conftest import MakeAccount, MakeWorkspace

FUTURE = "2027-01-10T09:00:00"  # naive: wall time in the workspace's zone


def posts_url(workspace: Workspace | uuid.UUID, *parts: str) -> str:
    workspace_id = workspace.id if isinstance(workspace, Workspace) else workspace
    return "/".join([f"/api/v1/workspaces/{workspace_id}/posts", *parts])


async def create_post(
    client: httpx.AsyncClient,
    member: Member,
    workspace: Workspace,
    account_ids: list[uuid.UUID],
    *,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "content": "Spring sale starts today!",
        "account_ids": [str(i) for i in account_ids],
    }
    body.update(fields)
    response = await client.post(posts_url(workspace), json=body, headers=member.headers)
    assert response.status_code == expect, response.text
    data: dict[str, Any] = response.json()["data"] if expect == 201 else response.json()
    return data


async def act(
    client: httpx.AsyncClient,
    member: Member,
    workspace: Workspace,
    post_id: str,
    action: str,
    *,
    expect: int = 200,
    json: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """POST /{id}/{action} and return the body (``data`` on success)."""
    response = await client.post(
        posts_url(workspace, post_id, action), json=json, headers=member.headers
    )
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body["data"] if expect == 200 else body


async def get_post(
    client: httpx.AsyncClient, member: Member, workspace: Workspace, post_id: str
) -> dict[str, Any]:
    response = await client.get(posts_url(workspace, post_id), headers=member.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def notifications_of(
    client: httpx.AsyncClient, member: Member, type_: str | None = None
) -> list[dict[str, Any]]:
    params = {"type": type_} if type_ else {}
    response = await client.get("/api/v1/notifications", params=params, headers=member.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]
    return items


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if code is not None:
        assert error["code"] == code, error
    return error


async def post_count(runtime: Runtime) -> int:
    async with runtime.sessionmaker() as session:
        return len((await session.scalars(select(Post.id))).all())


class Team:
    """A tenant with an owner, an admin and two members, a workspace and two accounts."""

    def __init__(
        self, owner: Member, admin: Member, author: Member, other: Member, workspace: Workspace
    ) -> None:
        self.owner, self.admin, self.author, self.other = owner, admin, author, other
        self.workspace = workspace
        self.account_ids: list[uuid.UUID] = []


async def make_team(
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    timezone: str = "UTC",
    tenant: str = "acme",
) -> Team:
    owner = await make_member(tenant, role=Role.OWNER, name="Olivia Owner")
    admin = await make_member(tenant, role=Role.ADMIN, name="Adam Admin")
    author = await make_member(tenant, role=Role.MEMBER, name="Mia Member")
    other = await make_member(tenant, role=Role.MEMBER, name="Otto Other")
    workspace = await make_workspace(owner.tenant_id, timezone, name="Brand")
    team = Team(owner, admin, author, other, workspace)
    team.account_ids = [
        (await make_account(workspace, handle="@brand@mastodon.example")).id,
        (await make_account(workspace, provider="bluesky", handle="brand.bsky.social")).id,
    ]
    return team


# ------------------------------------------------------------------ drafts


async def test_a_member_creates_a_draft_with_one_unscheduled_target_per_account(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account, "Asia/Baku")

    post = await create_post(
        client, team.author, team.workspace, team.account_ids, scheduled_at=FUTURE
    )

    assert post["status"] == "draft"
    assert post["author_id"] == str(team.author.id)
    assert post["version"] == 1
    assert post["timezone"] == "Asia/Baku"
    assert post["scheduled_at"] == "2027-01-10T05:00:00Z"
    assert post["scheduled_at_local"] == "2027-01-10T09:00:00+04:00"
    assert [(t["account_id"], t["status"], t["next_attempt_at"]) for t in post["targets"]] == [
        (str(account_id), "pending", None) for account_id in team.account_ids
    ]
    assert {t["provider"] for t in post["targets"]} == {"sandbox", "bluesky"}
    assert post["targets"][0]["handle"] == "@brand@mastodon.example"
    assert post["targets"][0]["attempts"] == 0
    assert await get_post(client, team.other, team.workspace, post["id"]) == post


async def test_list_is_paginated_newest_first_and_filters_by_status(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    ids = [
        (await create_post(client, team.author, team.workspace, team.account_ids[:1]))["id"]
        for _ in range(3)
    ]
    await act(client, team.author, team.workspace, ids[0], "submit")

    response = await client.get(
        posts_url(team.workspace), params={"per_page": 2}, headers=team.other.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["id"] for item in body["data"]] == [ids[2], ids[1]]
    assert body["meta"]["total"] == 3
    assert body["meta"]["last_page"] == 2
    assert len(body["data"][0]["targets"]) == 1

    second = await client.get(
        posts_url(team.workspace), params={"per_page": 2, "page": 2}, headers=team.other.headers
    )
    assert [item["id"] for item in second.json()["data"]] == [ids[0]]

    pending = await client.get(
        posts_url(team.workspace),
        params={"status": "pending_approval"},
        headers=team.other.headers,
    )
    assert [item["id"] for item in pending.json()["data"]] == [ids[0]]
    assert_error(
        await client.get(
            posts_url(team.workspace), params={"status": "bogus"}, headers=team.other.headers
        ),
        422,
    )


# ------------------------------------------------------------------ the approval flow


async def test_submit_approve_notifies_the_reviewers_then_the_author_in_local_time(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    session: AsyncSession,
) -> None:
    team = await make_team(make_member, make_workspace, make_account, "Asia/Baku")
    post = await create_post(
        client, team.author, team.workspace, team.account_ids, scheduled_at=FUTURE
    )
    url = f"/workspaces/{team.workspace.id}/posts/{post['id']}"

    submitted = await act(client, team.author, team.workspace, post["id"], "submit")

    assert submitted["status"] == "pending_approval"
    assert submitted["submitted_at"] is not None
    assert all(t["next_attempt_at"] is None for t in submitted["targets"])
    for reviewer in (team.owner, team.admin):
        [note] = await notifications_of(client, reviewer, "post_submitted")
        assert note["data"]["post_id"] == post["id"]
        assert note["data"]["workspace_id"] == str(team.workspace.id)
        assert note["action_url"] == url
        assert "Mia Member" in note["message"]
        assert "09:00" in note["message"]
        assert "Asia/Baku" in note["message"]
    assert await notifications_of(client, team.author) == []
    assert await notifications_of(client, team.other) == []

    approved = await act(client, team.admin, team.workspace, post["id"], "approve")

    assert approved["status"] == "scheduled"
    assert approved["reviewed_by"] == str(team.admin.id)
    assert approved["reviewed_at"] is not None
    assert [t["next_attempt_at"] for t in approved["targets"]] == ["2027-01-10T05:00:00Z"] * 2
    [approval] = await notifications_of(client, team.author, "post_approved")
    assert "Adam Admin" in approval["message"]
    assert approval["data"]["post_id"] == post["id"]
    assert approval["action_url"] == url
    [scheduled] = await notifications_of(client, team.author, "post_scheduled")
    assert "Sun 10 Jan 2027 at 09:00" in scheduled["message"]
    assert "Asia/Baku" in scheduled["message"]
    assert scheduled["data"]["scheduled_at_local"] == "2027-01-10T09:00:00+04:00"
    assert scheduled["data"]["workspace_id"] == str(team.workspace.id)
    # The approver is not told about their own approval, the other admin is not either.
    assert await notifications_of(client, team.admin, "post_approved") == []
    assert await notifications_of(client, team.owner, "post_scheduled") == []

    audit = (
        await session.scalars(
            select(AuditLog).where(AuditLog.subject_id == post["id"]).order_by(AuditLog.created_at)
        )
    ).all()
    assert [(entry.action, entry.actor_id) for entry in audit] == [
        ("post.submitted", team.author.id),
        ("post.approved", team.admin.id),
    ]
    assert audit[1].before == {"status": "pending_approval"}
    assert audit[1].after == {"status": "scheduled", "scheduled_at": "2027-01-10T05:00:00Z"}


async def test_reject_sends_the_post_back_to_draft_with_the_reason(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    session: AsyncSession,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(client, team.author, team.workspace, team.account_ids)
    await act(client, team.author, team.workspace, post["id"], "submit")

    rejected = await act(
        client,
        team.owner,
        team.workspace,
        post["id"],
        "reject",
        json={"reason": "  Please add the discount code.  "},
    )

    assert rejected["status"] == "draft"
    assert rejected["review_note"] == "Please add the discount code."
    assert rejected["reviewed_by"] == str(team.owner.id)
    [note] = await notifications_of(client, team.author, "post_rejected")
    assert "Please add the discount code." in note["message"]
    assert note["data"] == {
        "post_id": post["id"],
        "workspace_id": str(team.workspace.id),
        "reason": "Please add the discount code.",
    }
    entry = await session.scalar(select(AuditLog).where(AuditLog.action == "post.rejected"))
    assert entry is not None
    assert entry.actor_id == team.owner.id
    assert entry.after == {"status": "draft", "reason": "Please add the discount code."}

    # Fixed and sent again: the reviewers hear about it a second time.
    await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"content": "Spring sale: use SPRING10"},
        headers=team.author.headers,
    )
    await act(client, team.author, team.workspace, post["id"], "submit")
    assert len(await notifications_of(client, team.admin, "post_submitted")) == 2


async def test_a_reason_is_required_to_reject(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(client, team.author, team.workspace, team.account_ids)
    await act(client, team.author, team.workspace, post["id"], "submit")
    for body in ({}, {"reason": "   "}, {"reason": "x" * 1001}):
        response = await client.post(
            posts_url(team.workspace, post["id"], "reject"), json=body, headers=team.admin.headers
        )
        assert_error(response, 422, "validation_failed")
    assert (await get_post(client, team.author, team.workspace, post["id"]))[
        "status"
    ] == "pending_approval"


async def test_an_admins_post_is_scheduled_on_submit_as_self_approved(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    session: AsyncSession,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(
        client, team.admin, team.workspace, team.account_ids, scheduled_at="2027-05-01T10:00:00Z"
    )

    scheduled = await act(client, team.admin, team.workspace, post["id"], "submit")

    assert scheduled["status"] == "scheduled"
    assert scheduled["reviewed_by"] == str(team.admin.id)
    assert [t["next_attempt_at"] for t in scheduled["targets"]] == ["2027-05-01T10:00:00Z"] * 2
    # Nothing to review, and no one is told about their own action.
    for member in (team.owner, team.admin, team.author):
        assert await notifications_of(client, member) == []
    entry = await session.scalar(select(AuditLog).where(AuditLog.subject_id == post["id"]))
    assert entry is not None
    assert entry.action == "post.self_approved"


async def test_a_post_without_a_time_is_due_as_soon_as_it_is_approved(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account, "America/New_York")
    post = await create_post(client, team.author, team.workspace, team.account_ids[:1])
    submitted = await act(client, team.author, team.workspace, post["id"], "submit")
    assert submitted["scheduled_at"] is None
    [note] = await notifications_of(client, team.owner, "post_submitted")
    assert "as soon as it is approved" in note["message"]

    before = datetime.now(UTC)
    approved = await act(client, team.owner, team.workspace, post["id"], "approve")

    assert approved["status"] == "scheduled"
    due = datetime.fromisoformat(approved["targets"][0]["next_attempt_at"])
    assert before - timedelta(seconds=1) <= due <= datetime.now(UTC)
    assert approved["scheduled_at"] == approved["targets"][0]["next_attempt_at"]
    [scheduled] = await notifications_of(client, team.author, "post_scheduled")
    assert "will be published now" in scheduled["message"]


async def test_approving_after_the_time_has_passed_makes_it_due_at_once(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    runtime: Runtime,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(
        client, team.author, team.workspace, team.account_ids, scheduled_at=FUTURE
    )
    await act(client, team.author, team.workspace, post["id"], "submit")
    past = datetime.now(UTC) - timedelta(hours=2)
    async with runtime.sessionmaker() as db:  # the review took longer than planned
        await db.execute(
            update(Post).where(Post.id == uuid.UUID(post["id"])).values(scheduled_at=past)
        )
        await commit_and_flush_effects(db)

    approved = await act(client, team.admin, team.workspace, post["id"], "approve")

    for target in approved["targets"]:
        due = datetime.fromisoformat(target["next_attempt_at"])
        assert past < due <= datetime.now(UTC)


async def test_submitting_a_draft_whose_time_has_passed_is_a_conflict_to_resolve(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    runtime: Runtime,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(
        client, team.author, team.workspace, team.account_ids, scheduled_at=FUTURE
    )
    past = datetime.now(UTC) - timedelta(hours=2)
    async with runtime.sessionmaker() as db:  # the draft sat too long
        await db.execute(
            update(Post).where(Post.id == uuid.UUID(post["id"])).values(scheduled_at=past)
        )
        await commit_and_flush_effects(db)

    response = await client.post(
        posts_url(team.workspace, post["id"], "submit"), headers=team.author.headers
    )

    # The request is fine (it has no body); the post is not: 409, and what to do about it.
    error = assert_error(response, 409, "scheduled_at_in_past")
    assert "pick a new scheduled_at" in error["message"]
    assert (await get_post(client, team.author, team.workspace, post["id"]))["status"] == "draft"


async def test_members_cannot_review_and_only_authors_or_admins_change_a_post(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(client, team.author, team.workspace, team.account_ids)
    pid = post["id"]

    assert_error(
        await client.post(posts_url(team.workspace, pid, "submit"), headers=team.other.headers),
        403,
        "forbidden",
    )
    await act(client, team.author, team.workspace, pid, "submit")
    for member in (team.author, team.other):
        error = await act(client, member, team.workspace, pid, "approve", expect=403)
        assert error["error"]["code"] == "forbidden"
        await act(client, member, team.workspace, pid, "reject", json={"reason": "no"}, expect=403)
    edit = await client.patch(
        posts_url(team.workspace, pid), json={"content": "hijacked"}, headers=team.other.headers
    )
    assert_error(edit, 403, "forbidden")
    assert_error(
        await client.delete(posts_url(team.workspace, pid), headers=team.other.headers),
        403,
        "forbidden",
    )
    current = await get_post(client, team.other, team.workspace, pid)
    assert current["status"] == "pending_approval"
    assert current["content"] == post["content"]
    # An admin may edit anyone's post.
    response = await client.patch(
        posts_url(team.workspace, pid), json={"content": "Tidied up"}, headers=team.admin.headers
    )
    assert response.status_code == 200, response.text


async def test_of_two_concurrent_approvals_one_wins_and_the_author_hears_once(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(
        client, team.author, team.workspace, team.account_ids, scheduled_at=FUTURE
    )
    await act(client, team.author, team.workspace, post["id"], "submit")

    responses = await asyncio.gather(
        client.post(posts_url(team.workspace, post["id"], "approve"), headers=team.owner.headers),
        client.post(posts_url(team.workspace, post["id"], "approve"), headers=team.admin.headers),
    )

    assert sorted(r.status_code for r in responses) == [200, 409]
    loser = next(r for r in responses if r.status_code == 409)
    assert loser.json()["error"]["code"] in ("post_changed", "invalid_post_status")
    assert len(await notifications_of(client, team.author, "post_approved")) == 1
    assert len(await notifications_of(client, team.author, "post_scheduled")) == 1
    # A second approval later is refused the same way.
    await act(client, team.owner, team.workspace, post["id"], "approve", expect=409)


async def test_a_post_whose_author_left_the_tenant_can_still_be_reviewed(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    runtime: Runtime,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    first = await create_post(client, team.author, team.workspace, team.account_ids)
    second = await create_post(client, team.author, team.workspace, team.account_ids)
    for post in (first, second):
        await act(client, team.author, team.workspace, post["id"], "submit")
    async with runtime.sessionmaker() as db:
        await db.execute(delete(Membership).where(Membership.user_id == team.author.id))
        await commit_and_flush_effects(db)

    approved = await act(client, team.admin, team.workspace, first["id"], "approve")
    rejected = await act(
        client, team.admin, team.workspace, second["id"], "reject", json={"reason": "stale"}
    )

    assert approved["status"] == "scheduled"
    assert rejected["status"] == "draft"


async def test_approve_and_reject_need_a_post_pending_approval(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(client, team.author, team.workspace, team.account_ids)
    error = await act(client, team.admin, team.workspace, post["id"], "approve", expect=409)
    assert error["error"]["code"] == "invalid_post_status"
    await act(
        client, team.admin, team.workspace, post["id"], "reject", json={"reason": "x"}, expect=409
    )
    await act(client, team.author, team.workspace, post["id"], "submit")
    await act(client, team.author, team.workspace, post["id"], "submit", expect=409)


# ------------------------------------------------------------------ local-time scheduling


async def test_wall_times_are_read_in_the_workspaces_zone_across_dst(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    new_york = await make_workspace(owner.tenant_id, "America/New_York")
    berlin = await make_workspace(owner.tenant_id, "Europe/Berlin")
    ny_account = (await make_account(new_york)).id
    berlin_account = (await make_account(berlin)).id

    # 02:30 on 14 March 2027 does not exist in New York (clocks jump 02:00 -> 03:00).
    gap = await create_post(
        client, owner, new_york, [ny_account], scheduled_at="2027-03-14T02:30:00", expect=422
    )
    assert gap["error"]["code"] == "nonexistent_local_time"
    # 01:30 on 7 November 2027 happens twice: the first one (EDT, -04:00) is meant.
    fold = await create_post(
        client, owner, new_york, [ny_account], scheduled_at="2027-11-07T01:30:00"
    )
    assert fold["scheduled_at"] == "2027-11-07T05:30:00Z"
    assert fold["scheduled_at_local"] == "2027-11-07T01:30:00-04:00"

    # Noon in Berlin is 11:00 UTC the day before the March change and 10:00 UTC the day of it.
    before = await create_post(
        client, owner, berlin, [berlin_account], scheduled_at="2027-03-27T12:00:00"
    )
    after = await create_post(
        client, owner, berlin, [berlin_account], scheduled_at="2027-03-28T12:00:00"
    )
    assert before["scheduled_at"] == "2027-03-27T11:00:00Z"
    assert before["scheduled_at_local"] == "2027-03-27T12:00:00+01:00"
    assert after["scheduled_at"] == "2027-03-28T10:00:00Z"
    assert after["scheduled_at_local"] == "2027-03-28T12:00:00+02:00"

    # With an offset it is that instant, whatever the workspace's zone.
    exact = await create_post(
        client, owner, berlin, [berlin_account], scheduled_at="2027-03-28T12:00:00+04:00"
    )
    assert exact["scheduled_at"] == "2027-03-28T08:00:00Z"
    assert exact["scheduled_at_local"] == "2027-03-28T10:00:00+02:00"


async def test_editing_a_scheduled_post_moves_its_targets(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account, "America/New_York")
    post = await create_post(
        client, team.admin, team.workspace, team.account_ids, scheduled_at="2027-06-01T09:00:00"
    )
    await act(client, team.admin, team.workspace, post["id"], "submit")

    response = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"scheduled_at": "2027-12-01T09:00:00"},
        headers=team.admin.headers,
    )

    assert response.status_code == 200, response.text
    edited = response.json()["data"]
    assert edited["status"] == "scheduled"
    assert edited["scheduled_at"] == "2027-12-01T14:00:00Z"  # EST by then
    assert edited["scheduled_at_local"] == "2027-12-01T09:00:00-05:00"
    assert [t["next_attempt_at"] for t in edited["targets"]] == ["2027-12-01T14:00:00Z"] * 2
    assert edited["version"] == 1  # the content did not change

    # A new account joins at the same time; a removed one is gone.
    extra = (await make_account(team.workspace, handle="@second")).id
    response = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"account_ids": [str(team.account_ids[1]), str(extra)], "content": "New words"},
        headers=team.admin.headers,
    )
    edited = response.json()["data"]
    assert [t["account_id"] for t in edited["targets"]] == [str(team.account_ids[1]), str(extra)]
    assert [t["next_attempt_at"] for t in edited["targets"]] == ["2027-12-01T14:00:00Z"] * 2
    assert edited["version"] == 2
    assert edited["content"] == "New words"

    # A scheduled post keeps a time (unschedule it instead); a draft may drop its time.
    response = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"scheduled_at": None},
        headers=team.admin.headers,
    )
    assert_error(response, 422, "schedule_required")
    await act(client, team.admin, team.workspace, post["id"], "unschedule")
    response = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"scheduled_at": None},
        headers=team.admin.headers,
    )
    assert response.json()["data"]["scheduled_at"] is None
    assert response.json()["data"]["scheduled_at_local"] is None
    # Only the accounts change.
    response = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"account_ids": [str(extra)]},
        headers=team.admin.headers,
    )
    assert response.status_code == 200, response.text
    assert [t["account_id"] for t in response.json()["data"]["targets"]] == [str(extra)]


async def test_a_members_edit_of_an_approved_post_needs_approval_again(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(
        client, team.author, team.workspace, team.account_ids, scheduled_at=FUTURE
    )
    await act(client, team.author, team.workspace, post["id"], "submit")
    await act(client, team.admin, team.workspace, post["id"], "approve")

    response = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"content": "Something the admins have not seen"},
        headers=team.author.headers,
    )

    assert response.status_code == 200, response.text
    edited = response.json()["data"]
    assert edited["status"] == "pending_approval"
    assert edited["reviewed_by"] is None
    assert all(t["next_attempt_at"] is None for t in edited["targets"])
    assert len(await notifications_of(client, team.admin, "post_submitted")) == 2


async def test_unschedule_takes_a_scheduled_post_back_to_draft(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(
        client, team.admin, team.workspace, team.account_ids, scheduled_at=FUTURE
    )
    await act(client, team.admin, team.workspace, post["id"], "submit")

    draft = await act(client, team.admin, team.workspace, post["id"], "unschedule")

    assert draft["status"] == "draft"
    assert all(t["next_attempt_at"] is None for t in draft["targets"])
    assert draft["scheduled_at"] == "2027-01-10T09:00:00Z"  # kept, for the next submit
    await act(client, team.admin, team.workspace, post["id"], "unschedule", expect=409)


# ------------------------------------------------------------------ refusals


async def test_a_time_in_the_past_is_refused(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    runtime: Runtime,
) -> None:
    team = await make_team(make_member, make_workspace, make_account, "Asia/Baku")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for value in (an_hour_ago.isoformat(), "2020-01-01T09:00:00", "2020-01-01T09:00:00Z"):
        error = await create_post(
            client, team.author, team.workspace, team.account_ids, scheduled_at=value, expect=422
        )
        assert error["error"]["code"] == "scheduled_at_in_past"
    assert await post_count(runtime) == 0

    post = await create_post(
        client, team.author, team.workspace, team.account_ids, scheduled_at=FUTURE
    )
    response = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"scheduled_at": "2020-01-01T09:00:00"},
        headers=team.author.headers,
    )
    assert_error(response, 422, "scheduled_at_in_past")
    unchanged = await get_post(client, team.author, team.workspace, post["id"])
    assert unchanged["scheduled_at"] == post["scheduled_at"]


async def test_invalid_posts_are_refused_with_what_to_fix(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    runtime: Runtime,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    ids = [str(i) for i in team.account_ids]
    bad_bodies: list[dict[str, Any]] = [
        {"content": "", "account_ids": ids},
        {"content": "   \n ", "account_ids": ids},
        {"content": "x" * 5001, "account_ids": ids},
        {"content": "nul \x00 byte", "account_ids": ids},
        {"content": "hi", "account_ids": []},
        {"content": "hi"},
        {"content": "hi", "account_ids": [ids[0], ids[0]]},
        {"content": "hi", "account_ids": ["not-a-uuid"]},
        {"content": "hi", "account_ids": ids, "scheduled_at": "next tuesday"},
        {"content": "hi", "account_ids": ids, "scheduled_at": "0001-01-01T00:00:00+05:00"},
        {"content": "hi", "account_ids": ids, "status": "published"},
    ]
    for body in bad_bodies:
        response = await client.post(
            posts_url(team.workspace), json=body, headers=team.author.headers
        )
        assert_error(response, 422, "validation_failed")
    ok = await create_post(
        client, team.author, team.workspace, team.account_ids, content="x" * 5000
    )
    assert len(ok["content"]) == 5000

    patch = await client.patch(
        posts_url(team.workspace, ok["id"]), json={}, headers=team.author.headers
    )
    assert_error(patch, 422, "validation_failed")
    patch = await client.patch(
        posts_url(team.workspace, ok["id"]), json={"content": None}, headers=team.author.headers
    )
    assert_error(patch, 422, "validation_failed")
    assert await post_count(runtime) == 1


async def test_accounts_must_be_active_accounts_of_this_workspace(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    runtime: Runtime,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    sibling = await make_workspace(team.owner.tenant_id, name="Sibling")
    sibling_account = (await make_account(sibling)).id
    stranger = await make_member("globex", role=Role.OWNER)
    foreign = (await make_account(await make_workspace(stranger.tenant_id))).id
    unknown = uuid.uuid4()
    reauth = (await make_account(team.workspace, status=AccountStatus.NEEDS_REAUTH)).id

    error = await create_post(
        client,
        team.author,
        team.workspace,
        [team.account_ids[0], sibling_account, foreign, unknown],
        expect=422,
    )
    assert error["error"]["code"] == "unknown_accounts"
    assert error["error"]["details"][0]["ids"] == [str(sibling_account), str(foreign), str(unknown)]

    error = await create_post(
        client, team.author, team.workspace, [team.account_ids[0], reauth], expect=422
    )
    assert error["error"]["code"] == "inactive_accounts"
    [inactive] = error["error"]["details"][0]["accounts"]
    assert inactive["id"] == str(reauth)
    assert inactive["status"] == "needs_reauth"
    assert await post_count(runtime) == 0

    post = await create_post(client, team.author, team.workspace, team.account_ids)
    response = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"account_ids": [str(foreign)]},
        headers=team.author.headers,
    )
    assert_error(response, 422, "unknown_accounts")
    unchanged = await get_post(client, team.author, team.workspace, post["id"])
    assert [t["account_id"] for t in unchanged["targets"]] == [str(i) for i in team.account_ids]


async def test_other_tenants_see_nothing(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(client, team.author, team.workspace, team.account_ids)
    pid = post["id"]
    stranger = await make_member("globex", role=Role.OWNER)
    own_workspace = await make_workspace(stranger.tenant_id)

    requests = [
        client.get(posts_url(team.workspace), headers=stranger.headers),
        client.get(posts_url(team.workspace, pid), headers=stranger.headers),
        client.get(posts_url(team.workspace, pid, "metrics"), headers=stranger.headers),
        client.patch(
            posts_url(team.workspace, pid), json={"content": "x"}, headers=stranger.headers
        ),
        client.delete(posts_url(team.workspace, pid), headers=stranger.headers),
        client.post(posts_url(team.workspace, pid, "approve"), headers=stranger.headers),
        client.post(
            posts_url(team.workspace),
            json={"content": "x", "account_ids": [str(team.account_ids[0])]},
            headers=stranger.headers,
        ),
        # The post through the stranger's own workspace: not there either.
        client.get(posts_url(own_workspace, pid), headers=stranger.headers),
        client.post(posts_url(own_workspace, pid, "approve"), headers=stranger.headers),
        client.get(posts_url(uuid.uuid4()), headers=stranger.headers),
    ]
    for response in await asyncio.gather(*requests):
        assert_error(response, 404, "not_found")
    # Inside the tenant, a post is reached only through its own workspace.
    sibling = await make_workspace(team.owner.tenant_id, name="Sibling")
    assert_error(
        await client.get(posts_url(sibling, pid), headers=team.owner.headers), 404, "not_found"
    )
    assert_error(
        await client.get(posts_url(team.workspace, "not-a-uuid"), headers=team.owner.headers),
        422,
    )
    assert (await get_post(client, team.author, team.workspace, pid))["content"] == post["content"]


async def test_a_post_cannot_change_once_publishing_has_started(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    runtime: Runtime,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(
        client, team.admin, team.workspace, team.account_ids, scheduled_at=FUTURE
    )
    await act(client, team.admin, team.workspace, post["id"], "submit")
    post_id = uuid.UUID(post["id"])
    # The publisher has claimed one target, and not yet marked the post.
    async with runtime.sessionmaker() as db:
        await db.execute(
            update(PostTarget)
            .where(PostTarget.social_account_id == team.account_ids[0])
            .values(status=TargetStatus.PUBLISHING.value)
        )
        await commit_and_flush_effects(db)

    edit = await client.patch(
        posts_url(team.workspace, post["id"]),
        json={"scheduled_at": "2027-02-01T09:00:00"},
        headers=team.admin.headers,
    )
    assert_error(edit, 409, "post_publishing")
    assert_error(
        await client.post(
            posts_url(team.workspace, post["id"], "unschedule"), headers=team.admin.headers
        ),
        409,
        "post_publishing",
    )
    assert_error(
        await client.delete(posts_url(team.workspace, post["id"]), headers=team.admin.headers),
        409,
        "post_publishing",
    )
    current = await get_post(client, team.admin, team.workspace, post["id"])
    assert current["status"] == "scheduled"
    assert current["scheduled_at"] == "2027-01-10T09:00:00Z"
    assert [t["next_attempt_at"] for t in current["targets"]] == ["2027-01-10T09:00:00Z"] * 2

    for status in (PostStatus.PUBLISHING, PostStatus.PUBLISHED, PostStatus.FAILED):
        async with runtime.sessionmaker() as db:
            await db.execute(update(Post).where(Post.id == post_id).values(status=status.value))
            await commit_and_flush_effects(db)
        edit = await client.patch(
            posts_url(team.workspace, post["id"]),
            json={"content": "too late"},
            headers=team.admin.headers,
        )
        assert_error(edit, 409, "post_not_editable")
        assert_error(
            await client.delete(posts_url(team.workspace, post["id"]), headers=team.admin.headers),
            409,
            "post_not_editable",
        )


async def test_deleting_a_draft_removes_it(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    session: AsyncSession,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(client, team.author, team.workspace, team.account_ids)

    response = await client.delete(
        posts_url(team.workspace, post["id"]), headers=team.author.headers
    )

    assert response.status_code == 204, response.text
    assert_error(
        await client.get(posts_url(team.workspace, post["id"]), headers=team.author.headers),
        404,
        "not_found",
    )
    targets = (await session.scalars(select(PostTarget.id))).all()
    assert targets == []
    entry = await session.scalar(select(AuditLog).where(AuditLog.action == "post.deleted"))
    assert entry is not None
    assert entry.subject_id == post["id"]


# ------------------------------------------------------------------ metrics


async def test_metrics_are_listed_per_target_newest_first(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    runtime: Runtime,
) -> None:
    team = await make_team(make_member, make_workspace, make_account)
    post = await create_post(client, team.author, team.workspace, team.account_ids)
    targets = {t["account_id"]: uuid.UUID(t["id"]) for t in post["targets"]}
    first = targets[str(team.account_ids[0])]
    base = datetime(2027, 1, 10, 12, tzinfo=UTC)
    async with runtime.sessionmaker() as db:
        db.add_all(
            PostMetricSnapshot(
                post_target_id=first,
                workspace_id=team.workspace.id,
                captured_at=base + timedelta(hours=6 * n),
                likes=n * 10,
                reposts=n,
                replies=n * 2,
            )
            for n in range(3)
        )
        await commit_and_flush_effects(db)

    response = await client.get(
        posts_url(team.workspace, post["id"], "metrics"), headers=team.other.headers
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [item["account_id"] for item in data] == [str(i) for i in team.account_ids]
    assert data[0]["handle"] == "@brand@mastodon.example"
    assert [s["captured_at"] for s in data[0]["snapshots"]] == [
        "2027-01-11T00:00:00Z",
        "2027-01-10T18:00:00Z",
        "2027-01-10T12:00:00Z",
    ]
    assert data[0]["snapshots"][0] == {
        "captured_at": "2027-01-11T00:00:00Z",
        "likes": 20,
        "reposts": 2,
        "replies": 4,
        "impressions": None,
    }
    assert data[1]["snapshots"] == []
    limited = await client.get(
        posts_url(team.workspace, post["id"], "metrics"),
        params={"limit": 1},
        headers=team.other.headers,
    )
    assert len(limited.json()["data"][0]["snapshots"]) == 1
