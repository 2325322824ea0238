"""GET /api/v1/tenant/deliveries: the tenant's whole delivery ledger, filtered and paged."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.models.tenancy import Role
from notiflow.notifications.ledger_search import LedgerFilters, ledger_query
from notiflow.notifications.types import NotificationChannel
from tests.conftest import MakeMember, Member

LEDGER = "/api/v1/tenant/deliveries"


async def _send(
    client: httpx.AsyncClient, sender: Member, *recipients: Member, **fields: Any
) -> None:
    body: dict[str, Any] = {
        "user_ids": [str(member.id) for member in recipients],
        "type": "payment_failed",
        "title": "Payment failed",
        "message": "Update your card.",
        **fields,
    }
    response = await client.post("/api/v1/notifications/send", json=body, headers=sender.headers)
    assert response.status_code == 202, response.text


async def _ledger(client: httpx.AsyncClient, who: Member, **params: Any) -> httpx.Response:
    return await client.get(LEDGER, params=params, headers=who.headers)


async def test_admins_search_the_tenants_ledger_by_user_channel_status_and_reason(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    alice = await make_member("acme")
    bob = await make_member("acme")
    outsider = await make_member("globex", role=Role.OWNER)
    off = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"email_notifications_enabled": False},
        headers=bob.headers,
    )
    assert off.status_code == 200, off.text
    await _send(client, admin, alice, bob)
    await _send(client, admin, alice, type="new_mention", title="You were mentioned")
    await _send(client, outsider, outsider)

    everything = await _ledger(client, admin)
    assert everything.status_code == 200, everything.text
    rows = everything.json()["data"]
    # Three notifications in acme, each with its channels; nothing of globex.
    assert {row["user_id"] for row in rows} == {str(alice.id), str(bob.id)}
    assert everything.json()["meta"]["total"] == len(rows)
    assert {row["title"] for row in rows} == {"Payment failed", "You were mentioned"}

    bobs_email = (await _ledger(client, admin, user_id=str(bob.id), channel="email")).json()
    [entry] = bobs_email["data"]
    assert entry["status"] == "suppressed"
    assert entry["reason"] == "user_global_off"
    assert entry["type"] == "payment_failed"

    by_reason = (await _ledger(client, admin, reason="user_global_off")).json()["data"]
    assert [row["id"] for row in by_reason] == [entry["id"]]
    mentions = (await _ledger(client, admin, type="new_mention")).json()["data"]
    assert mentions
    assert {row["user_id"] for row in mentions} == {str(alice.id)}
    push = (await _ledger(client, admin, channel="push", status="suppressed")).json()["data"]
    assert len(push) == 3  # one per notification and recipient: Web Push is not configured
    assert {row["reason"] for row in push} == {"webpush_not_configured"}

    # Another tenant's admin sees only its own rows, even asking for acme's users.
    theirs = (await _ledger(client, outsider, user_id=str(alice.id))).json()
    assert theirs["data"] == []


async def test_the_ledger_pages_by_cursor_without_gaps_or_repeats(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.OWNER)
    alice = await make_member("acme")
    for index in range(7):
        await _send(client, admin, alice, title=f"Bill {index}")
    everything = (await _ledger(client, admin, channel="push", per_page=100)).json()["data"]
    assert len(everything) == 7

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"channel": "push", "per_page": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await _ledger(client, admin, **params)).json()
        seen.extend(row["id"] for row in page["data"])
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert seen == [row["id"] for row in everything]
    # Newest first.
    titles = [row["title"] for row in everything]
    assert titles == [f"Bill {index}" for index in reversed(range(7))]


async def test_members_may_not_read_the_ledger_and_bad_filters_are_refused(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    member = await make_member("acme")

    forbidden = await _ledger(client, member)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"
    for params in (
        {"status": "delivered-ish"},
        {"channel": "fax"},
        {"since": "2026-01-01T00:00:00"},  # no time zone: ambiguous
        {"cursor": "not-a-cursor"},
        {"per_page": 0},
        {"user_id": "nope"},
    ):
        refused = await _ledger(client, admin, **params)
        assert refused.status_code in (400, 422), (params, refused.text)
        assert set(refused.json()) == {"error"}


async def test_the_search_is_served_by_the_tenant_ledger_index(
    session: AsyncSession, backend: str
) -> None:
    """The tenant's rows come from ix_notification_deliveries_tenant_ledger in the order asked
    for, whatever else is filtered: no scan of every tenant's ledger, no sort of a tenant's."""
    filters = [LedgerFilters(), LedgerFilters(channel=NotificationChannel.EMAIL, reason="x")]
    for chosen in filters:
        query = ledger_query(uuid.uuid4(), chosen).limit(50)
        sql = str(query.compile(session.bind, compile_kwargs={"literal_binds": True}))
        if backend == "postgresql":
            # An empty table is scanned whole whatever its indexes: ask what it would use.
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            await session.execute(text("SET LOCAL enable_bitmapscan = off"))
            plan = "\n".join((await session.scalars(text(f"EXPLAIN {sql}"))).all())
        else:
            rows = (await session.execute(text(f"EXPLAIN QUERY PLAN {sql}"))).all()
            plan = "\n".join(str(row[-1]) for row in rows)
        assert "ix_notification_deliveries_tenant_ledger" in plan, plan
        assert "Sort" not in plan, plan
        assert "TEMP B-TREE" not in plan, plan
