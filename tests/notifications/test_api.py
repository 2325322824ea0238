"""The notification HTTP API, route by route, as a user of it sees it (happy paths)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit import locks
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, IdempotencyKey, Notification, NotificationDelivery
from notiflow.models.tenancy import Role
from notiflow.notifications.types import NotificationType
from tests.conftest import MakeMember, Member

API = "/api/v1/notifications"


async def send(
    client: httpx.AsyncClient,
    sender: Member,
    recipients: list[Member] | None = None,
    *,
    expect: int = 202,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """POST /send as ``sender`` and return the ``data`` of the response."""
    body: dict[str, Any] = {"type": "new_mention", "title": "Hello", "message": "Someone said hi"}
    if recipients is not None:
        body["user_ids"] = [str(member.id) for member in recipients]
    body.update(fields)
    response = await client.post(
        f"{API}/send", json=body, headers={**sender.headers, **(headers or {})}
    )
    assert response.status_code == expect, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def unread_count(client: httpx.AsyncClient, member: Member) -> int:
    response = await client.get(f"{API}/unread-count", headers=member.headers)
    assert response.status_code == 200, response.text
    count: int = response.json()["data"]["count"]
    return count


async def feed(client: httpx.AsyncClient, member: Member, **params: Any) -> dict[str, Any]:
    response = await client.get(API, params=params, headers=member.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ledger(client: httpx.AsyncClient, member: Member, notification_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/{notification_id}/deliveries", headers=member.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def by_channel(ledger_data: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {row["channel"]: (row["status"], row["reason"]) for row in ledger_data["deliveries"]}


async def count_rows(session: AsyncSession, model: type[Any]) -> int:
    """Count committed rows; the read transaction is ended so the next count sees new data."""
    try:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        await session.rollback()


# ---------------------------------------------------------------- the feed


async def test_feed_lists_my_notifications_newest_first_in_the_spec_shape(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    bob = await make_member()
    await send(client, admin, [alice], title="first")
    await send(
        client,
        admin,
        [alice, bob],
        title="second",
        type="post_failed",
        data={"post_id": 7},
        action_url="/posts/7",
        icon="alert",
    )

    body = await feed(client, alice)

    assert [item["title"] for item in body["data"]] == ["second", "first"]
    newest = body["data"][0]
    assert set(newest) == {
        "id",
        "type",
        "channel",
        "title",
        "message",
        "data",
        "action_url",
        "icon",
        "is_read",
        "read_at",
        "created_at",
    }
    assert newest["type"] == "post_failed"
    assert newest["channel"] == "in_app"
    assert newest["data"] == {"post_id": 7}
    assert newest["action_url"] == "/posts/7"
    assert newest["icon"] == "alert"
    assert newest["is_read"] is False
    assert newest["read_at"] is None
    assert newest["created_at"].endswith("Z")
    # Bob only sees what was sent to him.
    assert [item["title"] for item in (await feed(client, bob))["data"]] == ["second"]


async def test_feed_filters_by_type_read_state_and_channel(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    mention = await send(client, admin, [alice], type="new_mention", title="mention")
    await send(client, admin, [alice], type="new_comment", title="comment")
    # An email-only send is stored as an already-read feed row on the email channel.
    await send(client, admin, [alice], type="new_comment", title="by email", channels=["email"])
    read = await client.post(
        f"{API}/{mention['notifications'][0]['id']}/read", headers=alice.headers
    )
    assert read.status_code == 200

    def titles(body: dict[str, Any]) -> list[str]:
        return [item["title"] for item in body["data"]]

    assert titles(await feed(client, alice, type="new_comment")) == ["by email", "comment"]
    assert titles(await feed(client, alice, type="post_failed")) == []
    assert titles(await feed(client, alice, is_read="false")) == ["comment"]
    assert titles(await feed(client, alice, is_read="true")) == ["by email", "mention"]
    assert titles(await feed(client, alice, channel="email")) == ["by email"]
    assert titles(await feed(client, alice, channel="in_app")) == ["comment", "mention"]
    assert titles(await feed(client, alice, type="new_comment", is_read="false")) == ["comment"]
    assert titles(await feed(client, alice, category="engagement")) == [
        "by email",
        "comment",
        "mention",
    ]
    assert titles(await feed(client, alice, category="billing")) == []
    unknown = await client.get(API, params={"category": "gossip"}, headers=alice.headers)
    assert unknown.status_code == 422
    email_only = (await feed(client, alice, channel="email"))["data"][0]
    assert email_only["channel"] == "email"
    assert email_only["is_read"] is True


async def test_feed_pages_with_laravel_totals(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    for number in range(5):
        await send(client, admin, [alice], title=f"n{number}")

    first = await feed(client, alice, per_page=2)
    assert [item["title"] for item in first["data"]] == ["n4", "n3"]
    assert first["meta"]["current_page"] == 1
    assert first["meta"]["per_page"] == 2
    assert first["meta"]["total"] == 5
    assert first["meta"]["last_page"] == 3
    assert (first["meta"]["from"], first["meta"]["to"]) == (1, 2)
    assert first["meta"]["next_cursor"]

    last = await feed(client, alice, per_page=2, page=3)
    assert [item["title"] for item in last["data"]] == ["n0"]
    assert last["meta"]["current_page"] == 3
    assert (last["meta"]["from"], last["meta"]["to"]) == (5, 5)
    assert last["meta"]["next_cursor"] is None

    beyond = await feed(client, alice, per_page=2, page=9)
    assert beyond["data"] == []
    assert beyond["meta"]["total"] == 5
    assert (beyond["meta"]["from"], beyond["meta"]["to"]) == (None, None)

    default = await feed(client, alice)
    assert default["meta"]["per_page"] == 15
    assert default["meta"]["last_page"] == 1
    assert len(default["data"]) == 5


async def test_cursor_paging_walks_every_item_exactly_once_newest_first(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    sent_ids = []
    for number in range(7):
        result = await send(client, admin, [alice], title=f"n{number}")
        sent_ids.append(result["notifications"][0]["id"])
    # Someone else's notifications never show up in the walk.
    bob = await make_member()
    await send(client, admin, [bob], title="for bob")
    tenant_wide = await send(client, admin, audience="tenant", title="all hands")
    sent_ids.extend(
        item["id"] for item in tenant_wide["notifications"] if item["user_id"] == str(alice.id)
    )

    seen: list[str] = []
    page = await feed(client, alice, per_page=3)
    pages = 1
    seen.extend(item["id"] for item in page["data"])
    while page["meta"]["next_cursor"]:
        page = await feed(client, alice, per_page=3, cursor=page["meta"]["next_cursor"])
        pages += 1
        seen.extend(item["id"] for item in page["data"])
        assert pages < 10, "cursor paging does not terminate"

    assert seen == list(reversed(sent_ids))
    assert pages == 3


# ---------------------------------------------------------------- unread count, recent, reading


async def test_unread_count_follows_send_read_read_all_and_read_multiple(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    assert await unread_count(client, alice) == 0

    ids = []
    for number in range(4):
        result = await send(client, admin, [alice], title=f"n{number}")
        ids.append(result["notifications"][0]["id"])
    assert await unread_count(client, alice) == 4

    response = await client.post(f"{API}/{ids[0]}/read", headers=alice.headers)
    assert response.status_code == 200
    assert await unread_count(client, alice) == 3

    response = await client.post(
        f"{API}/read-multiple", json={"ids": ids[1:3]}, headers=alice.headers
    )
    assert response.json() == {"data": {"updated": 2}}
    assert await unread_count(client, alice) == 1

    response = await client.post(f"{API}/read-all", headers=alice.headers)
    assert response.json() == {"data": {"updated": 1}}
    assert await unread_count(client, alice) == 0

    await send(client, admin, [alice], title="later")
    assert await unread_count(client, alice) == 1


async def test_recent_returns_the_newest_up_to_the_limit(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    for number in range(12):
        await send(client, admin, [alice], title=f"n{number}")

    default = await client.get(f"{API}/recent", headers=alice.headers)
    assert default.status_code == 200
    assert [item["title"] for item in default.json()["data"]] == [
        f"n{number}" for number in range(11, 1, -1)
    ]
    three = await client.get(f"{API}/recent", params={"limit": 3}, headers=alice.headers)
    assert [item["title"] for item in three.json()["data"]] == ["n11", "n10", "n9"]


async def test_mark_as_read_returns_the_read_notification_and_is_idempotent(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    notification_id = (await send(client, admin, [alice]))["notifications"][0]["id"]

    first = await client.post(f"{API}/{notification_id}/read", headers=alice.headers)
    assert first.status_code == 200
    data = first.json()["data"]
    assert data["id"] == notification_id
    assert data["is_read"] is True
    assert data["read_at"].endswith("Z")

    again = await client.post(f"{API}/{notification_id}/read", headers=alice.headers)
    assert again.status_code == 200
    assert again.json()["data"]["read_at"] == data["read_at"]
    listed = (await feed(client, alice))["data"][0]
    assert listed["is_read"] is True
    assert listed["read_at"] == data["read_at"]


async def test_read_all_marks_only_my_notifications(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    bob = await make_member()
    await send(client, admin, [alice, bob])
    await send(client, admin, [alice])

    response = await client.post(f"{API}/read-all", headers=alice.headers)
    assert response.status_code == 200
    assert response.json() == {"data": {"updated": 2}}
    assert all(item["is_read"] for item in (await feed(client, alice))["data"])
    assert await unread_count(client, bob) == 1
    # Nothing left to mark.
    response = await client.post(f"{API}/read-all", headers=alice.headers)
    assert response.json() == {"data": {"updated": 0}}


async def test_read_multiple_ignores_ids_that_are_not_mine(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    bob = await make_member()
    mine = (await send(client, admin, [alice]))["notifications"][0]["id"]
    also_mine = (await send(client, admin, [alice]))["notifications"][0]["id"]
    bobs = (await send(client, admin, [bob]))["notifications"][0]["id"]

    response = await client.post(
        f"{API}/read-multiple",
        json={"ids": [mine, bobs, str(uuid.uuid4()), mine]},
        headers=alice.headers,
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"updated": 1}}
    assert await unread_count(client, alice) == 1
    unread = (await feed(client, alice, is_read="false"))["data"]
    assert [item["id"] for item in unread] == [also_mine]
    assert await unread_count(client, bob) == 1


async def test_archive_and_delete_take_notifications_out_of_the_feed_and_the_count(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    bob = await make_member()
    ids = [(await send(client, admin, [alice]))["notifications"][0]["id"] for _ in range(4)]
    bobs = (await send(client, admin, [bob]))["notifications"][0]["id"]
    assert await unread_count(client, alice) == 4

    archived = await client.post(f"{API}/{ids[0]}/archive", headers=alice.headers)
    assert archived.json() == {"data": {"updated": 1}}
    several = await client.post(
        f"{API}/archive-multiple", json={"ids": [ids[0], ids[1], bobs]}, headers=alice.headers
    )
    assert several.json() == {"data": {"updated": 1}}  # ids[0] already was; bob's is not hers
    deleted = await client.delete(f"{API}/{ids[2]}", headers=alice.headers)
    assert deleted.status_code == 204

    assert [item["id"] for item in (await feed(client, alice))["data"]] == [ids[3]]
    assert await unread_count(client, alice) == 1
    # Archived: kept with its ledger; deleted: gone, ledger too.
    assert (
        await client.get(f"{API}/{ids[0]}/deliveries", headers=alice.headers)
    ).status_code == 200
    gone = await client.get(f"{API}/{ids[2]}/deliveries", headers=alice.headers)
    assert gone.status_code == 404

    # Someone else's notification: 404 for one, ignored in a list; bob's stays.
    assert (await client.delete(f"{API}/{bobs}", headers=alice.headers)).status_code == 404
    assert (await client.post(f"{API}/{bobs}/archive", headers=alice.headers)).status_code == 404
    many = await client.post(
        f"{API}/delete-multiple", json={"ids": [ids[3], bobs]}, headers=alice.headers
    )
    assert many.json() == {"data": {"updated": 1}}
    assert await unread_count(client, alice) == 0
    assert await unread_count(client, bob) == 1


# ---------------------------------------------------------------- preferences


async def test_preferences_list_every_type_with_defaults(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    alice = await make_member()
    response = await client.get(f"{API}/preferences", headers=alice.headers)
    assert response.status_code == 200
    items = response.json()["data"]
    assert len(items) == 32
    assert {item["notification_type"] for item in items} == {t.value for t in NotificationType}
    by_type = {item["notification_type"]: item for item in items}
    assert set(by_type["new_mention"]) == {
        "notification_type",
        "in_app_enabled",
        "email_enabled",
        "push_enabled",
        "category",
        "tenant_policy",
    }
    assert by_type["new_mention"]["category"] == "engagement"
    assert by_type["new_mention"]["tenant_policy"] == {}
    assert by_type["new_mention"]["in_app_enabled"] is True
    assert by_type["new_mention"]["email_enabled"] is True
    # Types the registry does not email by default say so.
    assert by_type["post_published"]["email_enabled"] is False


async def test_put_preferences_returns_the_full_list_and_applies_spec_defaults(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    alice = await make_member()
    response = await client.put(
        f"{API}/preferences",
        json={
            "preferences": [
                {"notification_type": "new_comment"},
                {
                    "notification_type": "new_mention",
                    "in_app_enabled": False,
                    "email_enabled": False,
                    "push_enabled": True,
                },
            ]
        },
        headers=alice.headers,
    )

    assert response.status_code == 200
    items = response.json()["data"]
    assert len(items) == 32
    by_type = {item["notification_type"]: item for item in items}
    # Omitted flags take UpdatePreferenceData's defaults: in_app true, email true, push false.
    assert by_type["new_comment"] == {
        "notification_type": "new_comment",
        "in_app_enabled": True,
        "email_enabled": True,
        "push_enabled": False,
        "category": "engagement",
        "tenant_policy": {},
    }
    assert by_type["new_mention"] == {
        "notification_type": "new_mention",
        "in_app_enabled": False,
        "email_enabled": False,
        "push_enabled": True,
        "category": "engagement",
        "tenant_policy": {},
    }
    # A later GET shows the same thing.
    again = await client.get(f"{API}/preferences", headers=alice.headers)
    assert again.json()["data"] == items


async def test_put_preferences_takes_one_update_preference_data_object(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    alice = await make_member()
    one = {"notification_type": "new_mention", "email_enabled": False}
    response = await client.put(f"{API}/preferences", json=one, headers=alice.headers)

    assert response.status_code == 200, response.text
    by_type = {item["notification_type"]: item for item in response.json()["data"]}
    assert by_type["new_mention"]["email_enabled"] is False
    assert by_type["new_mention"]["in_app_enabled"] is True
    # Bad input in that shape is refused field by field, and changes nothing.
    bad = await client.put(
        f"{API}/preferences",
        json={"notification_type": "new_mention", "email_enabled": "sometimes"},
        headers=alice.headers,
    )
    assert bad.status_code == 422
    assert "email_enabled" in bad.json()["error"]["message"]


async def test_preference_changes_are_audited_with_before_and_after(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    alice = await make_member()
    response = await client.put(
        f"{API}/preferences",
        json={"preferences": [{"notification_type": "new_mention", "email_enabled": False}]},
        headers=alice.headers,
    )
    assert response.status_code == 200
    response = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"email_notifications_enabled": False},
        headers=alice.headers,
    )
    assert response.status_code == 200

    rows = (
        await session.execute(
            select(
                AuditLog.action,
                AuditLog.actor_id,
                AuditLog.tenant_id,
                AuditLog.before,
                AuditLog.after,
            ).order_by(AuditLog.created_at)
        )
    ).all()
    await session.rollback()

    assert len(rows) == 2
    per_type, global_switch = rows
    assert per_type.action == "notification_preference.updated"
    assert per_type.actor_id == alice.id
    assert per_type.tenant_id == alice.tenant_id
    assert per_type.before["email_enabled"] is True
    assert per_type.after == {"in_app_enabled": True, "email_enabled": False, "push_enabled": False}
    assert global_switch.action == "user.notification_settings.updated"
    assert global_switch.actor_id == alice.id
    assert global_switch.before == {
        "email_notifications_enabled": True,
        "push_notifications_enabled": True,
    }
    assert global_switch.after == {
        "email_notifications_enabled": False,
        "push_notifications_enabled": True,
    }


# ---------------------------------------------------------------- the user and global switches


async def test_user_resource_shows_both_global_switches(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    alice = await make_member(name="Alice")
    response = await client.get("/api/v1/user", headers=alice.headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["id"] == str(alice.id)
    assert data["tenant_id"] == str(alice.tenant_id)
    assert data["email"] == alice.user.email
    assert data["name"] == "Alice"
    assert data["role"] == "member"
    assert data["email_notifications_enabled"] is True
    assert data["push_notifications_enabled"] is True


async def test_patch_global_switches_changes_only_what_is_given(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    alice = await make_member()
    response = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"push_notifications_enabled": False},
        headers=alice.headers,
    )
    assert response.status_code == 200
    assert response.json()["data"]["push_notifications_enabled"] is False
    assert response.json()["data"]["email_notifications_enabled"] is True

    response = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"email_notifications_enabled": False, "push_notifications_enabled": True},
        headers=alice.headers,
    )
    assert response.status_code == 200
    user = (await client.get("/api/v1/user", headers=alice.headers)).json()["data"]
    assert user["email_notifications_enabled"] is False
    assert user["push_notifications_enabled"] is True

    # null is not a choice (the schema says boolean); nothing changes.
    refused = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"email_notifications_enabled": None},
        headers=alice.headers,
    )
    assert refused.status_code == 422
    assert "email_notifications_enabled" in refused.json()["error"]["message"]
    user = (await client.get("/api/v1/user", headers=alice.headers)).json()["data"]
    assert user["email_notifications_enabled"] is False
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
    switch = schema["GlobalPreferencesRequest"]["properties"]["email_notifications_enabled"]
    assert switch["type"] == "boolean"


# ---------------------------------------------------------------- the delivery ledger


async def test_ledger_explains_each_channel(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    notification_id = (await send(client, admin, [alice]))["notifications"][0]["id"]

    data = await ledger(client, alice, notification_id)

    assert data["notification"]["id"] == notification_id
    assert data["notification"]["title"] == "Hello"
    assert by_channel(data) == {
        "email": ("pending", None),
        "push": ("suppressed", "webpush_not_configured"),  # no VAPID keys in these tests
    }
    for row in data["deliveries"]:
        assert row["attempts"] == 0
        assert row["sent_at"] is None
        assert row["updated_at"].endswith("Z")


async def test_ledger_shows_email_suppressed_after_global_email_off(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    response = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"email_notifications_enabled": False},
        headers=alice.headers,
    )
    assert response.status_code == 200

    notification_id = (await send(client, admin, [alice]))["notifications"][0]["id"]

    channels = by_channel(await ledger(client, alice, notification_id))
    assert channels["email"] == ("suppressed", "user_global_off")
    assert channels["push"] == ("suppressed", "webpush_not_configured")


async def test_ledger_shows_per_type_choices_and_in_app_off_stores_the_row_read(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    response = await client.put(
        f"{API}/preferences",
        json={
            "preferences": [
                {
                    "notification_type": "new_mention",
                    "in_app_enabled": False,
                    "email_enabled": False,
                }
            ]
        },
        headers=alice.headers,
    )
    assert response.status_code == 200

    notification_id = (await send(client, admin, [alice]))["notifications"][0]["id"]

    # Always stored, but already read: no badge.
    assert await unread_count(client, alice) == 0
    listed = (await feed(client, alice))["data"]
    assert [item["id"] for item in listed] == [notification_id]
    assert listed[0]["is_read"] is True
    assert by_channel(await ledger(client, alice, notification_id)) == {
        "in_app": ("suppressed", "user_type_off"),
        "email": ("suppressed", "user_type_off"),
        # push_enabled defaults to false when omitted from an update.
        "push": ("suppressed", "user_type_off"),
    }


# ---------------------------------------------------------------- the send API


async def test_send_to_user_ids_returns_202_with_what_was_created(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    bob = await make_member()
    carol = await make_member()

    data = await send(client, admin, [alice, bob])

    assert data["created"] == 2
    assert data["deduplicated"] == 0
    assert uuid.UUID(data["event_id"])
    assert {item["user_id"] for item in data["notifications"]} == {str(alice.id), str(bob.id)}
    assert [item["id"] for item in (await feed(client, alice))["data"]] == [
        item["id"] for item in data["notifications"] if item["user_id"] == str(alice.id)
    ]
    assert (await feed(client, carol))["data"] == []
    assert await count_rows(session, Notification) == 2


async def test_send_to_the_whole_tenant_reaches_every_member_and_no_one_else(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member(role=Role.OWNER)
    members = [await make_member() for _ in range(3)]
    outsider = await make_member("globex")

    data = await send(client, owner, audience="tenant", title="Maintenance tonight")

    assert data["created"] == 4
    assert {item["user_id"] for item in data["notifications"]} == {
        str(member.id) for member in [owner, *members]
    }
    for member in [owner, *members]:
        assert await unread_count(client, member) == 1
        assert (await feed(client, member))["data"][0]["title"] == "Maintenance tonight"
    assert await unread_count(client, outsider) == 0


async def test_send_with_dedupe_key_creates_once(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    first = await send(client, admin, [alice], dedupe_key="post-7-failed")
    second = await send(client, admin, [alice], dedupe_key="post-7-failed")
    assert (first["created"], first["deduplicated"]) == (1, 0)
    assert (second["created"], second["deduplicated"]) == (0, 1)
    assert len((await feed(client, alice))["data"]) == 1


async def test_idempotency_key_replays_the_first_response_and_creates_nothing(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    body = {
        "user_ids": [str(alice.id)],
        "type": "new_mention",
        "title": "Hi",
        "message": "there",
    }
    headers = {**admin.headers, "Idempotency-Key": "send-42"}

    first = await client.post(f"{API}/send", json=body, headers=headers)
    assert first.status_code == 202
    assert "Idempotent-Replayed" not in first.headers
    notifications = await count_rows(session, Notification)
    deliveries = await count_rows(session, NotificationDelivery)

    replay = await client.post(f"{API}/send", json=body, headers=headers)

    assert replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert await count_rows(session, Notification) == notifications == 1
    assert await count_rows(session, NotificationDelivery) == deliveries
    assert await unread_count(client, alice) == 1

    conflict = await client.post(
        f"{API}/send", json={**body, "title": "Something else"}, headers=headers
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_key_reused"
    assert await count_rows(session, Notification) == 1

    # Another key is another request.
    other = await client.post(
        f"{API}/send", json=body, headers={**admin.headers, "Idempotency-Key": "send-43"}
    )
    assert other.status_code == 202
    assert other.json()["data"]["event_id"] != first.json()["data"]["event_id"]
    assert await count_rows(session, Notification) == 2
    assert await count_rows(session, IdempotencyKey) == 2


async def test_idempotency_keys_belong_to_their_caller(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    first_admin = await make_member(role=Role.ADMIN)
    second_admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    await send(client, first_admin, [alice], headers={"Idempotency-Key": "k"})
    response = await client.post(
        f"{API}/send",
        json={"user_ids": [str(alice.id)], "type": "new_mention", "title": "x", "message": "y"},
        headers={**second_admin.headers, "Idempotency-Key": "k"},
    )
    assert response.status_code == 202
    assert "Idempotent-Replayed" not in response.headers
    assert await count_rows(session, Notification) == 2


# ---------------------------------------------------------------- tenant notification settings


async def test_tenant_settings_start_empty_and_round_trip(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member(role=Role.OWNER)
    response = await client.get("/api/v1/tenant/notification-settings", headers=owner.headers)
    assert response.status_code == 200
    assert response.json() == {"data": {"policy": {}, "defaults": {}, "push_rollout": None}}

    wanted = {
        "policy": {"payment_failed": {"email": "enforced"}, "new_mention": {"email": "forbidden"}},
        "defaults": {"new_comment": {"email": True}},
        "push_rollout": "admins",
    }
    response = await client.put(
        "/api/v1/tenant/notification-settings", json=wanted, headers=owner.headers
    )
    assert response.status_code == 200
    assert response.json() == {"data": wanted}
    response = await client.get("/api/v1/tenant/notification-settings", headers=owner.headers)
    assert response.json() == {"data": wanted}


async def test_tenant_settings_are_for_admins_only(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member()
    admin = await make_member(role=Role.ADMIN)
    url = "/api/v1/tenant/notification-settings"
    assert (await client.get(url, headers=member.headers)).status_code == 403
    response = await client.put(url, json={"policy": {}}, headers=member.headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert (await client.get(url, headers=admin.headers)).status_code == 200


async def test_enforcing_a_type_that_is_not_enforceable_is_refused(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member(role=Role.OWNER)
    url = "/api/v1/tenant/notification-settings"
    response = await client.put(
        url, json={"policy": {"new_comment": {"email": "enforced"}}}, headers=owner.headers
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_failed"
    assert "new_comment" in response.json()["error"]["message"]
    # Nothing was saved.
    assert (await client.get(url, headers=owner.headers)).json()["data"]["policy"] == {}


async def test_tenant_policy_shows_in_the_ledger(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member(role=Role.OWNER)
    alice = await make_member()
    # Alice switched email off entirely; the enforced type reaches her anyway.
    response = await client.patch(
        "/api/v1/me/notification-preferences",
        json={"email_notifications_enabled": False},
        headers=alice.headers,
    )
    assert response.status_code == 200
    response = await client.put(
        "/api/v1/tenant/notification-settings",
        json={
            "policy": {
                "new_mention": {"email": "forbidden", "push": "forbidden"},
                "payment_failed": {"email": "enforced"},
            }
        },
        headers=owner.headers,
    )
    assert response.status_code == 200

    mention = (await send(client, owner, [alice]))["notifications"][0]["id"]
    payment = (await send(client, owner, [alice], type="payment_failed"))["notifications"][0]["id"]

    assert by_channel(await ledger(client, alice, mention)) == {
        "email": ("suppressed", "tenant_policy"),
        "push": ("suppressed", "tenant_policy"),
    }
    payment_channels = by_channel(await ledger(client, alice, payment))
    assert payment_channels["email"] == ("pending", "tenant_enforced")
    # Her preferences say which of her choices the tenant overrides.
    preferences = (await client.get(f"{API}/preferences", headers=alice.headers)).json()["data"]
    policies = {item["notification_type"]: item["tenant_policy"] for item in preferences}
    assert policies["new_mention"] == {"email": "forbidden", "push": "forbidden"}
    assert policies["payment_failed"] == {"email": "enforced"}
    assert policies["new_comment"] == {}
    # payment_failed also goes by SMS, which needs a verified phone number.
    assert payment_channels["sms"] == ("suppressed", "no_verified_phone")


async def test_tenant_settings_change_is_audited(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    owner = await make_member(role=Role.OWNER)
    policy = {"policy": {"new_mention": {"sms": "forbidden"}}}
    response = await client.put(
        "/api/v1/tenant/notification-settings", json=policy, headers=owner.headers
    )
    assert response.status_code == 200
    rows = (
        await session.execute(
            select(AuditLog.action, AuditLog.actor_id, AuditLog.before, AuditLog.after)
        )
    ).all()
    await session.rollback()
    assert len(rows) == 1
    assert rows[0].action == "tenant.notification_settings.updated"
    assert rows[0].actor_id == owner.id
    assert rows[0].before["policy"] == {}
    assert rows[0].after["policy"] == {"new_mention": {"sms": "forbidden"}}


# ---------------------------------------------------------------- health and documentation


async def test_health_reports_the_database_and_whether_jobs_run(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] == "ok"
    assert body["redis"] == "disabled"
    assert body["version"]
    # Without Redis, jobs run where they are queued; no scheduler is elected anywhere yet.
    assert body["worker"] == "in-process"
    assert body["scheduler"] == "none alive"
    assert body["status"] == "degraded"

    await locks.acquire(runtime.sessionmaker, "scheduler", "another-process", 60)
    try:
        elected = (await client.get("/health")).json()
        assert elected["scheduler"] == "ok"
        assert elected["status"] == "ok"
    finally:
        await locks.release(runtime.sessionmaker, "scheduler", "another-process")


async def test_docs_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    schema = await client.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in [
        "/api/v1/notifications",
        "/api/v1/notifications/unread-count",
        "/api/v1/notifications/recent",
        "/api/v1/notifications/{notification_id}/read",
        "/api/v1/notifications/read-all",
        "/api/v1/notifications/read-multiple",
        "/api/v1/notifications/preferences",
        "/api/v1/notifications/send",
        "/api/v1/notifications/{notification_id}/deliveries",
        "/api/v1/user",
        "/api/v1/me/notification-preferences",
        "/api/v1/tenant/notification-settings",
        "/api/v1/auth/login",
    ]:
        assert path in paths, path


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_load_everything_from_notiflow(
    client: httpx.AsyncClient, page: str
) -> None:
    """Swagger UI and ReDoc come from notiflow itself, so /docs works offline."""
    html = (await client.get(page)).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert assets
    for asset in assets:
        assert not asset.startswith(("http://", "https://", "//")), asset
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000, asset


async def test_the_openapi_document_marks_operations_that_need_a_bearer_token(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal access token: `Authorization: Bearer <token>`.",
    }
    paths = schema["paths"]
    needs = [{"bearerAuth": []}]
    assert paths["/api/v1/notifications"]["get"]["security"] == needs
    assert paths["/api/v1/notifications/send"]["post"]["security"] == needs
    assert paths["/broadcasting/auth"]["post"]["security"] == needs
    # Open or otherwise signed: no bearer token.
    assert "security" not in paths["/api/v1/auth/login"]["post"]
    assert "security" not in paths["/health"]["get"]
