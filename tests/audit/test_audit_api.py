"""GET /api/v1/admin/audit-log: a tenant's audit trail, filtered and paged, for its admins."""

from __future__ import annotations

from datetime import timedelta

import httpx

from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember

AUDIT = "/api/v1/admin/audit-log"


async def test_role_and_preference_changes_are_listed_with_actor_and_before_after(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER, name="Olivia Owner")
    alice = await make_member("acme")
    outsider = await make_member("globex", role=Role.OWNER)
    changed = await client.patch(
        f"/api/v1/tenant/members/{alice.id}", json={"role": "admin"}, headers=owner.headers
    )
    assert changed.status_code == 200, changed.text
    preference = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"email_notifications_enabled": False},
        headers=alice.headers,
    )
    assert preference.status_code == 200, preference.text
    their_change = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"email_notifications_enabled": False},
        headers=outsider.headers,
    )
    assert their_change.status_code == 200

    response = await client.get(AUDIT, headers=owner.headers)
    assert response.status_code == 200, response.text
    entries = response.json()["data"]
    actions = [entry["action"] for entry in entries]
    assert "member.role_changed" in actions
    assert all(entry["actor"]["id"] != str(outsider.id) for entry in entries)
    [role_change] = [entry for entry in entries if entry["action"] == "member.role_changed"]
    assert role_change["actor"] == {
        "id": str(owner.id),
        "email": owner.user.email,
        "name": "Olivia Owner",
    }
    assert role_change["target"] == {"type": "user", "id": str(alice.id)}
    assert (role_change["before"], role_change["after"]) == ({"role": "member"}, {"role": "admin"})

    by_action = (
        await client.get(AUDIT, params={"action": "member.role_changed"}, headers=owner.headers)
    ).json()["data"]
    assert [entry["id"] for entry in by_action] == [role_change["id"]]
    by_actor = (
        await client.get(AUDIT, params={"actor_id": str(alice.id)}, headers=owner.headers)
    ).json()["data"]
    assert by_actor
    assert {entry["actor"]["id"] for entry in by_actor} == {str(alice.id)}
    actions = await client.get(f"{AUDIT}/actions", headers=owner.headers)
    assert actions.status_code == 200, actions.text
    assert actions.json()["data"] == sorted(set(actions.json()["data"]))
    assert "member.role_changed" in actions.json()["data"]
    their_actions = (await client.get(f"{AUDIT}/actions", headers=outsider.headers)).json()
    assert "member.role_changed" not in their_actions["data"]
    theirs = (
        await client.get(AUDIT, params={"actor_id": str(alice.id)}, headers=outsider.headers)
    ).json()["data"]
    assert theirs == []


async def test_the_log_pages_and_filters_by_time(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    now = utcnow()
    async with runtime.sessionmaker() as session:
        for hours in range(5):
            session.add(
                AuditLog(
                    tenant_id=admin.tenant_id,
                    actor_id=None,
                    action="workspace.updated",
                    subject_type="workspace",
                    subject_id=str(hours),
                    before={"name": f"v{hours}"},
                    after={"name": f"v{hours + 1}"},
                    created_at=now - timedelta(hours=hours),
                )
            )
        session.add(AuditLog(tenant_id=None, action="platform.thing", subject_type="x"))
        await session.commit()

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"per_page": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(AUDIT, params=params, headers=admin.headers)).json()
        seen += [entry["target"]["id"] for entry in page["data"]]
        cursor = page["meta"]["next_cursor"]
        if not cursor:
            break
    assert seen == ["0", "1", "2", "3", "4"], "newest first, none repeated, the platform's hidden"
    assert (await client.get(AUDIT, headers=admin.headers)).json()["data"][0]["actor"] == {
        "id": None,
        "email": None,
        "name": None,
    }

    window = await client.get(
        AUDIT,
        params={
            "since": (now - timedelta(hours=3, minutes=30)).isoformat(),
            "until": (now - timedelta(minutes=30)).isoformat(),
        },
        headers=admin.headers,
    )
    assert [entry["target"]["id"] for entry in window.json()["data"]] == ["1", "2", "3"]


async def test_members_get_403_and_bad_filters_a_422(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    admin = await make_member("acme", role=Role.ADMIN)
    forbidden = await client.get(AUDIT, headers=member.headers)
    assert forbidden.status_code == 403
    assert (await client.get(f"{AUDIT}/actions", headers=member.headers)).status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    for params in (
        {"since": "2026-12-06T10:00:00"},  # no time zone
        {"until": "0.5"},  # a number is not a time
        {"actor_id": "someone"},
        {"per_page": 0},
        {"cursor": "nope"},
        {"action": ""},
    ):
        response = await client.get(AUDIT, params=params, headers=admin.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "validation_failed"
