"""``GET /api/v1/workspaces/{id}/analytics/summary``: totals of the latest snapshots."""

from __future__ import annotations

from datetime import timedelta

import httpx

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import PostMetricSnapshot, PostTarget
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember
from tests.inbox.factories import make_account, make_published_target, make_workspace


async def snapshot(runtime: Runtime, target: PostTarget, hours_ago: int, **counts: int) -> None:
    async with runtime.sessionmaker() as session:
        session.add(
            PostMetricSnapshot(
                post_target_id=target.id,
                workspace_id=target.workspace_id,
                captured_at=utcnow() - timedelta(hours=hours_ago),
                **counts,
            )
        )
        await commit_and_flush_effects(session)


async def test_the_summary_adds_up_the_latest_counts_of_recent_posts(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    workspace = await make_workspace(runtime, member.tenant_id)
    account = await make_account(runtime, workspace)
    hit = await make_published_target(runtime, account)
    flop = await make_published_target(runtime, account)
    old = await make_published_target(runtime, account, published_at=utcnow() - timedelta(days=40))
    await snapshot(runtime, hit, 12, likes=10, reposts=1, replies=0, impressions=100)
    await snapshot(runtime, hit, 6, likes=50, reposts=5, replies=4, impressions=1000)
    await snapshot(runtime, flop, 6, likes=1, reposts=0, replies=0)
    await snapshot(runtime, old, 6, likes=500, reposts=0, replies=0, impressions=5)
    url = f"/api/v1/workspaces/{workspace.id}/analytics/summary"

    response = await client.get(url, headers=member.headers)

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["days"] == 30
    assert (data["posts"], data["likes"], data["reposts"], data["replies"]) == (2, 51, 5, 4)
    assert data["impressions"] == 1000
    assert [item["post_target_id"] for item in data["top_posts"]] == [str(hit.id), str(flop.id)]
    assert data["top_posts"][0]["post_id"] == str(hit.post_id)
    assert data["top_posts"][0]["likes"] == 50

    wider = await client.get(url, params={"days": 90}, headers=member.headers)
    assert wider.json()["data"]["likes"] == 551
    assert (await client.get(url, params={"days": 0}, headers=member.headers)).status_code == 422


async def test_the_summary_of_another_tenant_is_404(
    runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    outsider = await make_member("globex", role=Role.OWNER)
    workspace = await make_workspace(runtime, member.tenant_id)

    empty = await client.get(
        f"/api/v1/workspaces/{workspace.id}/analytics/summary", headers=member.headers
    )
    other = await client.get(
        f"/api/v1/workspaces/{workspace.id}/analytics/summary", headers=outsider.headers
    )

    assert empty.status_code == 200
    assert empty.json()["data"]["posts"] == 0
    assert empty.json()["data"]["last_captured_at"] is None
    assert other.status_code == 404
