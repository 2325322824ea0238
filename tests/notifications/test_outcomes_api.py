"""GET /api/v1/admin/deliveries/outcomes: the tenant's ledger counted by channel and status in
time buckets, for a chart."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import NotificationDelivery
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember, Member

OUTCOMES = "/api/v1/admin/deliveries/outcomes"


async def _send(client: httpx.AsyncClient, sender: Member, *recipients: Member) -> None:
    response = await client.post(
        "/api/v1/notifications/send",
        json={
            "user_ids": [str(member.id) for member in recipients],
            "type": "payment_failed",
            "title": "Payment failed",
            "message": "Update your card.",
        },
        headers=sender.headers,
    )
    assert response.status_code == 202, response.text


async def test_outcomes_are_counted_per_bucket_channel_and_status(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    alice = await make_member("acme")
    bob = await make_member("acme")
    outsider = await make_member("globex", role=Role.OWNER)
    await _send(client, admin, alice, bob)
    await _send(client, outsider, outsider)
    # One of acme's emails was decided three hours ago and sent since.
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(NotificationDelivery)
            .where(
                NotificationDelivery.user_id == alice.id, NotificationDelivery.channel == "email"
            )
            .values(created_at=utcnow() - timedelta(hours=3), status="sent")
        )
        await session.commit()

    response = await client.get(OUTCOMES, params={"hours": 6}, headers=admin.headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["bucket_minutes"] == 60
    buckets = data["buckets"]
    assert len(buckets) == 6
    assert buckets[0]["start"] == data["since"]
    now_bucket, three_hours_ago = buckets[-1], buckets[-4]
    assert three_hours_ago["counts"] == {"email": {"sent": 1}}
    assert now_bucket["counts"]["email"] == {"pending": 1}  # bob's, not globex's
    assert now_bucket["counts"]["push"] == {"suppressed": 2}
    ledger = await client.get("/api/v1/tenant/deliveries", headers=admin.headers)
    counted = sum(
        count
        for bucket in buckets
        for statuses in bucket["counts"].values()
        for count in statuses.values()
    )
    assert counted == ledger.json()["meta"]["total"], "acme's whole ledger, none of globex's"
    assert all(bucket["counts"] == {} for bucket in buckets[:2])

    fine = await client.get(
        OUTCOMES, params={"hours": 1, "bucket_minutes": 5}, headers=admin.headers
    )
    assert len(fine.json()["data"]["buckets"]) == 12

    theirs = (await client.get(OUTCOMES, params={"hours": 1}, headers=outsider.headers)).json()
    [their_bucket] = theirs["data"]["buckets"]
    assert their_bucket["counts"]["email"] == {"pending": 1}


async def test_members_get_403_and_bad_windows_a_422(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    admin = await make_member("acme", role=Role.OWNER)
    forbidden = await client.get(OUTCOMES, headers=member.headers)
    assert forbidden.status_code == 403
    for params in (
        {"hours": 0},
        {"hours": 169},
        {"bucket_minutes": 0},
        {"hours": 168, "bucket_minutes": 1},  # one of 5, 15, 60, 360, 1440
        {"bucket_minutes": 7},
        {"hours": "a day"},
    ):
        response = await client.get(OUTCOMES, params=params, headers=admin.headers)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["error"]["code"] == "validation_failed"
