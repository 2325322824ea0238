"""GET /api/v1/admin/publishing/lag: how late scheduled posts went out, per time bucket."""

from __future__ import annotations

from datetime import timedelta

import httpx

from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import Post, PostTarget, SocialAccount, Workspace
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember, Member

LAG = "/api/v1/admin/publishing/lag"


async def _published(runtime: Runtime, owner: Member, lags: list[tuple[float, float]]) -> None:
    """Targets published ``hours_ago`` hours ago, ``seconds`` late: ``(hours_ago, seconds)``."""
    now = utcnow()
    async with runtime.sessionmaker() as session:
        workspace = Workspace(tenant_id=owner.tenant_id, name="Brand", timezone="UTC")
        session.add(workspace)
        await session.flush()
        for index, (hours_ago, seconds) in enumerate(lags):
            published_at = now - timedelta(hours=hours_ago)
            account = SocialAccount(
                tenant_id=owner.tenant_id,
                workspace_id=workspace.id,
                provider="sandbox",
                external_account_id=f"account-{index}",
                handle=f"@brand{index}",
            )
            post = Post(
                tenant_id=owner.tenant_id,
                workspace_id=workspace.id,
                content="Spring launch",
                status="published",
                scheduled_at=published_at - timedelta(seconds=seconds),
                published_at=published_at,
            )
            session.add_all([account, post])
            await session.flush()
            session.add(
                PostTarget(
                    post_id=post.id,
                    social_account_id=account.id,
                    workspace_id=workspace.id,
                    status="published",
                    published_at=published_at,
                )
            )
        await session.commit()


async def test_lag_is_averaged_and_maxed_per_bucket_within_the_tenant(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    outsider = await make_member("globex", role=Role.OWNER)
    await _published(runtime, owner, [(0, 2.0), (0, 4.0), (2, 30.0)])
    await _published(runtime, outsider, [(0, 600.0)])

    response = await client.get(LAG, params={"hours": 3}, headers=owner.headers)
    assert response.status_code == 200, response.text
    buckets = response.json()["data"]["buckets"]
    assert len(buckets) == 3
    assert (
        buckets[-1]["published"],
        buckets[-1]["average_seconds"],
        buckets[-1]["max_seconds"],
    ) == (
        2,
        3.0,
        4.0,
    )
    assert (buckets[0]["published"], buckets[0]["max_seconds"]) == (1, 30.0)
    assert (buckets[1]["published"], buckets[1]["average_seconds"]) == (0, None)

    theirs = (await client.get(LAG, params={"hours": 1}, headers=outsider.headers)).json()
    assert theirs["data"]["buckets"][-1]["max_seconds"] == 600.0


async def test_members_get_403_and_bad_windows_a_422(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    admin = await make_member("acme", role=Role.ADMIN)
    assert (await client.get(LAG, headers=member.headers)).status_code == 403
    response = await client.get(LAG, params={"hours": 200}, headers=admin.headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"
