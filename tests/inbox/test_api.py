"""The inbox API: list with filters and paging, assign/unassign, archive/unarchive, tenancy."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlalchemy import select

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, InboxItem, SocialAccount, Workspace
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember, Member
from tests.inbox.factories import make_account, make_workspace, notifications_of


async def add_items(
    runtime: Runtime, account: SocialAccount, count: int, *, kind: str = "mention", **fields: object
) -> list[InboxItem]:
    """Items that occurred 1..count minutes ago (the first is the newest)."""
    now = utcnow()
    async with runtime.sessionmaker() as session:
        items = [
            InboxItem(
                tenant_id=account.tenant_id,
                workspace_id=account.workspace_id,
                social_account_id=account.id,
                external_id=f"{kind}-{uuid.uuid4().hex[:10]}",
                kind=kind,
                author_handle=f"@fan{index}",
                text=f"{kind} number {index}",
                occurred_at=now - timedelta(minutes=index + 1),
                **fields,
            )
            for index in range(count)
        ]
        session.add_all(items)
        await commit_and_flush_effects(session)
    return items


async def setup(runtime: Runtime, member: Member) -> tuple[Workspace, SocialAccount]:
    workspace = await make_workspace(runtime, member.tenant_id)
    account = await make_account(runtime, workspace)
    return workspace, account


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def test_the_inbox_lists_newest_first_without_archived_items(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    workspace, account = await setup(runtime, member)
    mentions = await add_items(runtime, account, 3)
    archived = await add_items(runtime, account, 1, kind="comment", archived_at=utcnow())

    response = await client.get(f"/api/v1/workspaces/{workspace.id}/inbox", headers=member.headers)

    assert ids(response) == [str(item.id) for item in mentions]
    body = response.json()
    first = body["data"][0]
    assert first["kind"] == "mention"
    assert first["author_handle"] == "@fan0"
    assert first["social_account_id"] == str(account.id)
    assert first["is_archived"] is False
    assert first["assigned_to"] is None
    assert body["meta"]["total"] == 3
    assert body["meta"]["current_page"] == 1

    archive = await client.get(
        f"/api/v1/workspaces/{workspace.id}/inbox",
        params={"archived": "true"},
        headers=member.headers,
    )
    assert ids(archive) == [str(archived[0].id)]
    assert archive.json()["data"][0]["is_archived"] is True


async def test_filters_by_kind_and_assignee(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    colleague = await make_member("acme")
    workspace, account = await setup(runtime, member)
    mine = await add_items(runtime, account, 1, kind="comment", assigned_to=member.id)
    theirs = await add_items(runtime, account, 1, kind="mention", assigned_to=colleague.id)
    nobody = await add_items(runtime, account, 1, kind="mention")
    url = f"/api/v1/workspaces/{workspace.id}/inbox"

    assert ids(await client.get(url, params={"kind": "comment"}, headers=member.headers)) == [
        str(mine[0].id)
    ]
    assert set(ids(await client.get(url, params={"kind": "mention"}, headers=member.headers))) == {
        str(theirs[0].id),
        str(nobody[0].id),
    }
    assert ids(await client.get(url, params={"assigned_to": "me"}, headers=member.headers)) == [
        str(mine[0].id)
    ]
    assert ids(
        await client.get(url, params={"assigned_to": str(colleague.id)}, headers=member.headers)
    ) == [str(theirs[0].id)]
    assert ids(await client.get(url, params={"assigned_to": "none"}, headers=member.headers)) == [
        str(nobody[0].id)
    ]
    for bad in ({"assigned_to": "someone"}, {"kind": "like"}, {"cursor": "garbage"}):
        response = await client.get(url, params=bad, headers=member.headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_failed"


async def test_pages_by_number_and_by_cursor(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    workspace, account = await setup(runtime, member)
    items = await add_items(runtime, account, 5)
    url = f"/api/v1/workspaces/{workspace.id}/inbox"

    second = await client.get(url, params={"page": 2, "per_page": 2}, headers=member.headers)
    assert ids(second) == [str(items[2].id), str(items[3].id)]
    assert second.json()["meta"]["last_page"] == 3

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"per_page": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get(url, params=params, headers=member.headers)
        seen += ids(page)
        cursor = page.json()["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(item.id) for item in items]


async def test_assigning_tells_the_assignee_and_is_audited(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    assignee = await make_member("acme")
    workspace, account = await setup(runtime, member)
    item = (await add_items(runtime, account, 1, kind="comment"))[0]
    url = f"/api/v1/workspaces/{workspace.id}/inbox/{item.id}"

    response = await client.post(
        f"{url}/assign", json={"user_id": str(assignee.id)}, headers=member.headers
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["assigned_to"] == str(assignee.id)
    assert data["assigned_at"] is not None
    told = await notifications_of(runtime, assignee.id, "inbox_assigned")
    assert len(told) == 1
    assert told[0].title == "Assigned to you: comment from @fan0"
    assert told[0].action_url == f"/workspaces/{workspace.id}/inbox/{item.id}"
    assert told[0].data is not None
    assert told[0].data["assigned_by"] == str(member.id)
    # Assigning it to the same person again changes nothing and tells no one again.
    again = await client.post(
        f"{url}/assign", json={"user_id": str(assignee.id)}, headers=member.headers
    )
    assert again.status_code == 200
    assert len(await notifications_of(runtime, assignee.id, "inbox_assigned")) == 1
    mine = await client.get(
        f"/api/v1/workspaces/{workspace.id}/inbox",
        params={"assigned_to": "me"},
        headers=assignee.headers,
    )
    assert ids(mine) == [str(item.id)]

    unassigned = await client.post(f"{url}/unassign", headers=assignee.headers)
    assert unassigned.status_code == 200
    assert unassigned.json()["data"]["assigned_to"] is None
    async with runtime.sessionmaker() as session:
        entries = list(
            (
                await session.scalars(
                    select(AuditLog)
                    .where(AuditLog.subject_id == str(item.id))
                    .order_by(AuditLog.created_at)
                )
            ).all()
        )
    assert [(e.action, e.actor_id, e.after) for e in entries] == [
        ("inbox_item.assigned", member.id, {"assigned_to": str(assignee.id)}),
        ("inbox_item.unassigned", assignee.id, {"assigned_to": None}),
    ]


async def test_taking_an_item_yourself_tells_no_one(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    workspace, account = await setup(runtime, member)
    item = (await add_items(runtime, account, 1))[0]

    response = await client.post(
        f"/api/v1/workspaces/{workspace.id}/inbox/{item.id}/assign",
        json={"user_id": str(member.id)},
        headers=member.headers,
    )

    assert response.status_code == 200
    assert response.json()["data"]["assigned_to"] == str(member.id)
    assert await notifications_of(runtime, member.id) == []


async def test_the_assignee_must_be_a_member_of_the_tenant(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    outsider = await make_member("globex", role=Role.OWNER)
    workspace, account = await setup(runtime, member)
    item = (await add_items(runtime, account, 1))[0]
    url = f"/api/v1/workspaces/{workspace.id}/inbox/{item.id}/assign"

    for body in ({"user_id": str(outsider.id)}, {"user_id": str(uuid.uuid4())}):
        response = await client.post(url, json=body, headers=member.headers)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "not_a_member"
    for bad in ({}, {"user_id": "not-a-uuid"}):
        response = await client.post(url, json=bad, headers=member.headers)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_failed"
    assert await notifications_of(runtime, outsider.id) == []
    listed = await client.get(f"/api/v1/workspaces/{workspace.id}/inbox", headers=member.headers)
    assert listed.json()["data"][0]["assigned_to"] is None


async def test_archive_and_unarchive(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    workspace, account = await setup(runtime, member)
    item = (await add_items(runtime, account, 1))[0]
    url = f"/api/v1/workspaces/{workspace.id}/inbox"

    archived = await client.post(f"{url}/{item.id}/archive", headers=member.headers)
    assert archived.status_code == 200
    archived_at = archived.json()["data"]["archived_at"]
    assert archived_at is not None
    twice = await client.post(f"{url}/{item.id}/archive", headers=member.headers)
    assert twice.json()["data"]["archived_at"] == archived_at
    assert ids(await client.get(url, headers=member.headers)) == []
    assert ids(await client.get(url, params={"archived": "true"}, headers=member.headers)) == [
        str(item.id)
    ]

    restored = await client.post(f"{url}/{item.id}/unarchive", headers=member.headers)
    assert restored.status_code == 200
    assert restored.json()["data"]["is_archived"] is False
    assert ids(await client.get(url, headers=member.headers)) == [str(item.id)]


async def test_other_tenants_and_other_workspaces_see_404(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    outsider = await make_member("globex", role=Role.OWNER)
    workspace, account = await setup(runtime, member)
    item = (await add_items(runtime, account, 1))[0]
    sibling = await make_workspace(runtime, member.tenant_id, "Sibling")
    base = f"/api/v1/workspaces/{workspace.id}/inbox"

    for method, path, body in [
        ("GET", base, None),
        ("GET", f"{base}/{item.id}", None),
        ("POST", f"{base}/{item.id}/assign", {"user_id": str(outsider.id)}),
        ("POST", f"{base}/{item.id}/unassign", None),
        ("POST", f"{base}/{item.id}/archive", None),
        ("POST", f"{base}/{item.id}/unarchive", None),
    ]:
        response = await client.request(method, path, json=body, headers=outsider.headers)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    # The item exists, but not in the workspace of the path.
    wrong = await client.post(
        f"/api/v1/workspaces/{sibling.id}/inbox/{item.id}/archive", headers=member.headers
    )
    assert wrong.status_code == 404
    missing = await client.get(f"{base}/{uuid.uuid4()}", headers=member.headers)
    assert missing.status_code == 404
    unauthenticated = await client.get(base)
    assert unauthenticated.status_code == 401
    shown = await client.get(f"{base}/{item.id}", headers=member.headers)
    assert shown.json()["data"]["archived_at"] is None
