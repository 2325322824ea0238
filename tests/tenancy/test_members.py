"""Members of a tenant and one's own tokens, through the API: the rules people expect."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, Membership, Notification, PersonalAccessToken
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember


async def _notifications(runtime: Runtime, user_id: uuid.UUID, kind: str) -> list[Notification]:
    async with runtime.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(Notification).where(
                        Notification.user_id == user_id, Notification.type == kind
                    )
                )
            ).all()
        )


async def _audit(runtime: Runtime, action: str) -> list[AuditLog]:
    async with runtime.sessionmaker() as session:
        return list(
            (await session.scalars(select(AuditLog).where(AuditLog.action == action))).all()
        )


async def test_admins_list_members_with_roles_page_by_page(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    admin = await make_member("acme", role=Role.ADMIN)
    member = await make_member("acme")
    await make_member("globex", role=Role.OWNER)

    listed = await client.get("/api/v1/tenant/members", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [(item["email"], item["role"]) for item in body["data"]] == [
        (owner.user.email, "owner"),
        (admin.user.email, "admin"),
        (member.user.email, "member"),
    ]
    assert body["meta"]["total"] == 3
    second = await client.get(
        "/api/v1/tenant/members", params={"per_page": 2, "page": 2}, headers=owner.headers
    )
    assert [item["email"] for item in second.json()["data"]] == [member.user.email]
    assert second.json()["meta"]["last_page"] == 2

    refused = await client.get("/api/v1/tenant/members", headers=member.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    bad = await client.get("/api/v1/tenant/members?per_page=0", headers=owner.headers)
    assert bad.status_code == 422


async def test_changing_a_role_tells_the_member_and_is_audited(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    member = await make_member("acme")
    response = await client.patch(
        f"/api/v1/tenant/members/{member.id}", json={"role": "admin"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["role"] == "admin"
    # The new admin can now list members.
    assert (await client.get("/api/v1/tenant/members", headers=member.headers)).status_code == 200
    [notice] = await _notifications(runtime, member.id, "role_changed")
    assert notice.data["new_role"] == "admin"
    assert notice.data["old_role"] == "member"
    [entry] = await _audit(runtime, "member.role_changed")
    assert (entry.before, entry.after) == ({"role": "member"}, {"role": "admin"})
    assert entry.actor_id == owner.id


async def test_admins_cannot_make_or_touch_owners(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    admin = await make_member("acme", role=Role.ADMIN)
    member = await make_member("acme")
    for path, method, body in [
        (f"/api/v1/tenant/members/{member.id}", "PATCH", {"role": "owner"}),
        (f"/api/v1/tenant/members/{owner.id}", "PATCH", {"role": "member"}),
        (f"/api/v1/tenant/members/{owner.id}", "DELETE", None),
    ]:
        response = await client.request(method, path, json=body, headers=admin.headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "owner_required"
    # Members manage nobody.
    response = await client.patch(
        f"/api/v1/tenant/members/{admin.id}", json={"role": "member"}, headers=member.headers
    )
    assert response.status_code == 403
    async with runtime.sessionmaker() as session:
        roles = dict((await session.execute(select(Membership.user_id, Membership.role))).all())
    assert roles == {owner.id: "owner", admin.id: "admin", member.id: "member"}
    assert await _audit(runtime, "member.role_changed") == []


async def test_the_last_owner_can_be_neither_demoted_nor_removed(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    demoted = await client.patch(
        f"/api/v1/tenant/members/{owner.id}", json={"role": "admin"}, headers=owner.headers
    )
    assert demoted.status_code == 409
    assert demoted.json()["error"]["code"] == "last_owner"
    removed = await client.delete(f"/api/v1/tenant/members/{owner.id}", headers=owner.headers)
    assert removed.status_code == 409
    assert removed.json()["error"]["code"] == "last_owner"
    # With a second owner, one may step down.
    second = await make_member("acme", role=Role.OWNER)
    stepped = await client.patch(
        f"/api/v1/tenant/members/{owner.id}", json={"role": "admin"}, headers=second.headers
    )
    assert stepped.status_code == 200


async def test_a_removed_member_is_told_and_their_tokens_stop_working(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    member = await make_member("acme")
    elsewhere = await make_member("globex", email=member.user.email)
    assert (await client.get("/api/v1/user", headers=member.headers)).status_code == 200

    response = await client.delete(f"/api/v1/tenant/members/{member.id}", headers=admin.headers)
    assert response.status_code == 204, response.text
    refused = await client.get("/api/v1/user", headers=member.headers)
    assert refused.status_code == 401
    # Their other tenant is untouched.
    assert (await client.get("/api/v1/user", headers=elsewhere.headers)).status_code == 200
    [notice] = await _notifications(runtime, member.id, "member_removed")
    assert notice.tenant_id == admin.tenant_id
    [entry] = await _audit(runtime, "member.removed")
    assert entry.before == {"role": "member", "email": member.user.email}
    again = await client.delete(f"/api/v1/tenant/members/{member.id}", headers=admin.headers)
    assert again.status_code == 404


async def test_another_tenants_member_is_not_found_and_bad_input_is_refused(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    ours = await make_member("acme", role=Role.OWNER)
    theirs = await make_member("globex")
    for method, body in [("PATCH", {"role": "admin"}), ("DELETE", None)]:
        response = await client.request(
            method, f"/api/v1/tenant/members/{theirs.id}", json=body, headers=ours.headers
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    member = await make_member("acme")
    for body in [{"role": "king"}, {}, {"role": None}, {"role": "admin", "extra": 1}]:
        response = await client.patch(
            f"/api/v1/tenant/members/{member.id}", json=body, headers=ours.headers
        )
        assert response.status_code == 422, body
        assert set(response.json()["error"]) == {"code", "message", "details"}
    bad_id = await client.delete("/api/v1/tenant/members/not-a-uuid", headers=ours.headers)
    assert bad_id.status_code == 422
    async with runtime.sessionmaker() as session:
        roles = (await session.scalars(select(Membership.role))).all()
    assert sorted(roles) == ["member", "member", "owner"]


async def test_users_list_and_revoke_their_own_tokens(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    member = await make_member("acme")
    other = await make_member("acme")
    listed = await client.get("/api/v1/tokens", headers=member.headers)
    assert listed.status_code == 200, listed.text
    [token] = listed.json()["data"]
    assert token["tenant_id"] == str(member.tenant_id)
    assert token["current"] is True
    assert "token_hash" not in token
    assert member.token.split("|")[1] not in listed.text

    # Someone else's token is not found, and stays valid.
    other_id = other.token.split("|")[0]
    response = await client.delete(f"/api/v1/tokens/{other_id}", headers=member.headers)
    assert response.status_code == 404
    assert (await client.get("/api/v1/user", headers=other.headers)).status_code == 200

    response = await client.delete(f"/api/v1/tokens/{token['id']}", headers=member.headers)
    assert response.status_code == 204
    assert (await client.get("/api/v1/tokens", headers=member.headers)).status_code == 401
    [entry] = await _audit(runtime, "token.revoked")
    assert entry.actor_id == member.id
    async with runtime.sessionmaker() as session:
        left = (await session.scalars(select(PersonalAccessToken.user_id))).all()
    assert left == [other.id]
