"""The real front-end libraries against notiflow: Laravel Echo and pusher-js under Node, and the
npm ``pusher`` server SDK against the Pusher HTTP API."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from notiflow.models.tenancy import Role
from tests.conftest import MakeMember, Member
from tests.realtime.conftest import LiveStack
from tests.realtime.node import NodeClient, run_sdk


def browser(live: LiveStack, member: Member, mode: str = "echo", **extra: Any) -> dict[str, Any]:
    return {
        "wsHost": "127.0.0.1",
        "wsPort": live.ws_port,
        "key": live.key,
        "authEndpoint": f"{live.api_url}/broadcasting/auth",
        "token": member.token,
        "mode": mode,
        **extra,
    }


def own_channel(member: Member) -> dict[str, Any]:
    return {
        "kind": "private",
        "name": f"notifications.{member.id}",
        "listen": [".NotificationCreated", ".UnreadCountChanged"],
    }


async def send_to(live: LiveStack, sender: Member, recipient: Member, title: str) -> str:
    async with httpx.AsyncClient(base_url=live.api_url) as client:
        response = await client.post(
            "/api/v1/notifications/send",
            headers=sender.headers,
            json={
                "user_ids": [str(recipient.id)],
                "type": "post_published",
                "title": title,
                "message": "It went out to 3 accounts.",
                "action_url": "/posts/42",
            },
        )
    assert response.status_code == 202, response.text
    notification_id: str = response.json()["data"]["notifications"][0]["id"]
    return notification_id


async def test_echo_receives_notification_created_on_its_private_channel(
    live: LiveStack, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    config = browser(live, owner, subscribe=[own_channel(owner)])
    async with NodeClient(config, name="owner") as tab:
        await tab.connected()
        await tab.wait_for({"type": "subscribed", "channel": f"private-notifications.{owner.id}"})
        # every subscribe starts with the unread count (the snapshot), before any send
        snapshot = await tab.wait_for({"type": "event", "event": "UnreadCountChanged"})
        assert snapshot["data"] == {
            "count": 0,
            "tenant_id": str(owner.tenant_id),
            "sequence": 0,
        }
        notification_id = await send_to(live, owner, owner, "Your post is live")
        event = await tab.wait_for({"type": "event", "event": "NotificationCreated"})
        assert event["data"]["id"] == notification_id
        assert event["data"]["title"] == "Your post is live"
        assert event["data"]["action_url"] == "/posts/42"
        assert event["data"]["sequence"] == 1
        badge = await tab.wait_for({"type": "event", "event": "UnreadCountChanged"})
        assert badge["data"]["count"] == 1


async def test_echo_gets_an_error_on_another_users_channel(
    live: LiveStack, make_member: MakeMember
) -> None:
    me = await make_member("acme")
    victim = await make_member("acme")
    config = browser(live, me, subscribe=[own_channel(victim)])
    async with NodeClient(config, name="me") as tab:
        await tab.connected()
        error = await tab.wait_for(
            {"type": "subscription_error", "channel": f"private-notifications.{victim.id}"}
        )
        assert error["error"]["status"] == 403
        # the victim's notifications never reach this tab
        owner = await make_member("acme", role=Role.OWNER)
        await send_to(live, owner, victim, "Private to the victim")
        await tab.assert_silent({"type": "event"})


async def test_echo_stops_receiving_when_the_user_turns_push_off(
    live: LiveStack, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    config = browser(live, owner, subscribe=[own_channel(owner)])
    async with NodeClient(config, name="owner") as tab:
        await tab.connected()
        await tab.wait_for({"type": "subscribed"})
        await send_to(live, owner, owner, "First")
        await tab.wait_for({"type": "event", "event": "NotificationCreated"})

        async with httpx.AsyncClient(base_url=live.api_url) as client:
            response = await client.patch(
                "/api/v1/me/notification-preferences",
                headers=owner.headers,
                json={"push_notifications_enabled": False},
            )
            assert response.status_code == 200
        await send_to(live, owner, owner, "Second")
        # the badge still follows (it is not a notification) ...
        await tab.wait_for({"type": "event", "event": "UnreadCountChanged", "data": {"count": 2}})
        # ... but no NotificationCreated leaves the server
        await tab.assert_silent({"type": "event", "event": "NotificationCreated"}, within=0.7)


async def test_pusher_js_presence_and_whispers(live: LiveStack, make_member: MakeMember) -> None:
    ada = await make_member("acme")
    bob = await make_member("acme")
    channel = f"presence-tenant.{ada.tenant_id}"
    entry = {"kind": "presence", "name": f"tenant.{ada.tenant_id}"}
    async with NodeClient(browser(live, ada, "pusher", subscribe=[entry]), name="ada") as ada_tab:
        await ada_tab.connected()
        await ada_tab.wait_for({"type": "subscribed", "channel": channel})
        async with NodeClient(
            browser(live, bob, "pusher", subscribe=[entry]), name="bob"
        ) as bob_tab:
            await bob_tab.connected()
            await bob_tab.wait_for({"type": "subscribed", "channel": channel})
            joined = await ada_tab.wait_for({"type": "presence", "action": "joining"})
            assert joined["member"]["id"] == str(bob.id)

            await bob_tab.send(
                {"cmd": "whisper", "channel": channel, "event": "typing", "data": {"who": "bob"}}
            )
            whisper = await ada_tab.wait_for({"type": "event", "event": "client-typing"})
            assert whisper["data"] == {"who": "bob"}
            await bob_tab.assert_silent({"type": "event", "event": "client-typing"})
        left = await ada_tab.wait_for({"type": "presence", "action": "leaving"})
        assert left["member"]["id"] == str(bob.id)


async def test_npm_server_sdk_triggers_and_reads_channel_info(
    live: LiveStack, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    settings = live.runtime.settings
    sdk = {
        "appId": settings.pusher_app_id,
        "key": settings.pusher_app_key,
        "secret": settings.pusher_app_secret,
        "host": "127.0.0.1",
        "port": live.api_port,
        "useTLS": False,
    }
    channel = f"private-notifications.{member.id}"
    config = browser(live, member, "pusher", subscribe=[{"kind": "private", "name": channel[8:]}])
    async with NodeClient(config, name="tab") as tab:
        await tab.connected()
        await tab.wait_for({"type": "subscribed", "channel": channel})
        answer = await run_sdk(
            sdk,
            {"action": "trigger", "channel": channel, "event": "InvoicePaid", "data": {"n": 1}},
        )
        assert answer["status"] == 200, answer
        event = await tab.wait_for({"type": "event", "event": "InvoicePaid"})
        assert event["data"] == {"n": 1}
        info = await run_sdk(
            sdk,
            {"action": "channel", "channel": channel, "params": {"info": "subscription_count"}},
        )
        assert info["body"] == {"occupied": True, "subscription_count": 1}
    wrong = await run_sdk(
        {**sdk, "secret": "not-the-secret-at-all"},
        {"action": "trigger", "channel": channel, "event": "X", "data": {}},
    )
    assert wrong["status"] == 401


async def test_encrypted_channel_end_to_end(live: LiveStack, make_member: MakeMember) -> None:
    """A backend encrypts with the master key; the browser decrypts with the shared secret that
    /broadcasting/auth hands out; the server only ever sees ciphertext."""
    member = await make_member("acme")
    master_key = base64.b64encode(b"k" * 32).decode()
    live.runtime.settings = live.runtime.settings.model_copy(
        update={"pusher_encryption_master_key": master_key}
    )
    settings = live.runtime.settings
    channel = f"private-encrypted-notifications.{member.id}"
    entry = {"kind": "encrypted", "name": f"notifications.{member.id}", "listen": [".Secret"]}
    async with NodeClient(browser(live, member, subscribe=[entry]), name="tab") as tab:
        await tab.connected()
        await tab.wait_for({"type": "subscribed", "channel": channel})
        answer = await run_sdk(
            {
                "appId": settings.pusher_app_id,
                "key": settings.pusher_app_key,
                "secret": settings.pusher_app_secret,
                "host": "127.0.0.1",
                "port": live.api_port,
                "useTLS": False,
                "encryptionMasterKeyBase64": master_key,
            },
            {"action": "trigger", "channel": channel, "event": "Secret", "data": {"pin": 1234}},
        )
        assert answer["status"] == 200, answer
        event = await tab.wait_for({"type": "event", "event": "Secret"})
        assert event["data"] == {"pin": 1234}


def signed_browser(
    live: LiveStack, user_id: int | str | None = None, **extra: Any
) -> dict[str, Any]:
    """pusher-js signing its own subscriptions, as a backend's authorizer would, with presence
    channel_data ``{"user_id": user_id}`` as given (a number stays a number)."""
    return {
        "wsHost": "127.0.0.1",
        "wsPort": live.ws_port,
        "key": live.key,
        "authEndpoint": f"{live.api_url}/broadcasting/auth",
        "mode": "pusher",
        "signAs": {"secret": live.secret, "user_id": user_id, "user_info": {"n": user_id}},
        **extra,
    }


def sdk_config(live: LiveStack) -> dict[str, Any]:
    settings = live.runtime.settings
    return {
        "appId": settings.pusher_app_id,
        "key": settings.pusher_app_key,
        "secret": settings.pusher_app_secret,
        "host": "127.0.0.1",
        "port": live.api_port,
        "useTLS": False,
    }


def same(actual: Any, expected: int | str) -> bool:
    """Equal and of the same JSON type (42 is not "42")."""
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize(
    ("ada_id", "bob_id"), [(42, 43), ("ada", "bob")], ids=["numbers", "strings"]
)
async def test_pusher_js_presence_ids_keep_their_type(
    live: LiveStack, ada_id: int | str, bob_id: int | str
) -> None:
    """An authorizer's numeric user_id reaches pusher-js as a number in member_added and
    member_removed, in client events' user_id and in the HTTP API's users: ``member.id ===
    members.me.id`` holds on the other tab of the same user."""
    channel = "presence-room"
    # bound by name: pusher-js hands a client event's user_id to named bindings only
    entry = {"kind": "presence", "name": channel, "listen": ["client-typing"]}
    async with NodeClient(signed_browser(live, ada_id, subscribe=[entry]), name="ada") as ada:
        here = await ada.wait_for({"type": "presence", "action": "here"})
        assert same(here["me"]["id"], ada_id)
        async with NodeClient(signed_browser(live, bob_id, subscribe=[entry]), name="bob") as bob:
            bob_here = await bob.wait_for({"type": "presence", "action": "here"})
            assert same(bob_here["me"]["id"], bob_id)
            assert bob_here["count"] == 2
            joined = await ada.wait_for({"type": "presence", "action": "joining"})
            assert same(joined["member"]["id"], bob_id), joined

            await bob.send({"cmd": "whisper", "channel": channel, "event": "typing", "data": {}})
            whisper = await ada.wait_for({"type": "event", "event": "client-typing"})
            assert same(whisper["user_id"], bob_id), whisper

            users = await run_sdk(sdk_config(live), {"action": "users", "channel": channel})
            assert users["status"] == 200, users
            ids = [user["id"] for user in users["body"]["users"]]
            assert sorted(ids, key=str) == sorted([ada_id, bob_id], key=str)
            assert all(type(user_id) is type(ada_id) for user_id in ids), ids
        left = await ada.wait_for({"type": "presence", "action": "leaving"})
        assert same(left["member"]["id"], bob_id), left


async def test_pusher_js_channel_hears_its_refused_client_events(live: LiveStack) -> None:
    """A client event refused for its name, its size or the rate limit comes back as
    pusher:error 4301 naming the channel, so pusher-js's channel.bind('pusher:error') fires,
    and the connection stays up."""
    channel = "private-chat"
    config = signed_browser(live, subscribe=[{"kind": "private", "name": channel}])
    async with NodeClient(config, name="tab") as tab:
        await tab.connected()
        await tab.wait_for({"type": "subscribed", "channel": channel})
        long_name = "x" * 250
        await tab.send({"cmd": "whisper", "channel": channel, "event": long_name, "data": {}})
        refused = await tab.wait_for({"type": "channel_error", "channel": channel})
        assert refused["error"]["code"] == 4301
        assert "at most 200" in refused["error"]["message"]

        big = {"text": "x" * 11_000}
        await tab.send({"cmd": "whisper", "channel": channel, "event": "big", "data": big})
        refused = await tab.wait_for({"type": "channel_error", "channel": channel})
        assert refused["error"]["code"] == 4301
        assert "too large" in refused["error"]["message"]

        for index in range(30):
            await tab.send(
                {"cmd": "whisper", "channel": channel, "event": "tick", "data": {"i": index}}
            )
        refused = await tab.wait_for(
            lambda m: m.get("type") == "channel_error" and "rate limit" in m["error"]["message"]
        )
        assert refused["error"]["code"] == 4301
        assert refused["channel"] == channel
        assert tab.received({"type": "closed"}) == []


@pytest.mark.parametrize("mode", ["pusher", "echo"])
async def test_an_over_long_channel_name_is_answered_on_that_channel(
    live: LiveStack, mode: str
) -> None:
    """pusher-js and Echo find a subscription_error's channel by its exact name: the answer to
    a name over 200 characters names it whole."""
    name = "news-" + "x" * 300
    config = signed_browser(live, mode=mode, subscribe=[{"kind": "public", "name": name}])
    async with NodeClient(config, name="tab") as tab:
        await tab.connected()
        error = await tab.wait_for({"type": "subscription_error", "channel": name})
        assert error["error"]["type"] == "LimitReached"
        assert error["error"]["status"] == 4009


async def test_npm_sdk_gets_the_statuses_of_pusher_http_api(live: LiveStack) -> None:
    """400 for invalid parameters, 413 for event data over 10 KB, user_count ignored on a
    single non-presence channel, batch info per event (signed by the npm SDK, sent raw so its
    own checks do not refuse first)."""
    sdk = sdk_config(live)
    event = {"name": "Ping", "data": "{}"}

    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await run_sdk(sdk, {"action": "post", "path": path, "body": body})

    async def get(path: str, params: dict[str, str]) -> dict[str, Any]:
        return await run_sdk(sdk, {"action": "get", "path": path, "params": params})

    refusals = [
        (await post("/events", {**event, "channels": [f"c{i}" for i in range(101)]}), 400),
        (await post("/events", {**event, "channel": "c" * 201}), 400),
        (await post("/events", {**event, "name": "n" * 201, "channel": "news"}), 400),
        (await post("/batch_events", {"batch": [{**event, "channel": "news"}] * 11}), 400),
        (await post("/events", {"name": "Big", "data": "x" * 10_241, "channel": "news"}), 413),
        (await get("/channels", {"info": "user_count"}), 400),
        (await get("/channels", {"filter_by_prefix": "private-", "info": "user_count"}), 400),
        (await get("/channels/news/users", {}), 400),
        (await get("/channels/" + "c" * 201, {}), 400),
    ]
    for answer, status in refusals:
        assert answer["status"] == status, answer
        assert answer["body"]["error"]["message"], answer
    assert refusals[0][0]["body"]["error"]["code"] == "invalid_parameters"
    assert refusals[4][0]["body"]["error"]["code"] == "payload_too_large"

    news = await get("/channels/news", {"info": "user_count,subscription_count"})
    assert news["status"] == 200, news
    assert news["body"] == {"occupied": False, "subscription_count": 0}

    presence = "presence-room"
    entry = {"kind": "presence", "name": presence}
    async with NodeClient(signed_browser(live, 7, subscribe=[entry]), name="member") as member:
        await member.wait_for({"type": "subscribed", "channel": presence})
        batch = await run_sdk(
            sdk,
            {
                "action": "triggerBatch",
                "batch": [
                    {"channel": presence, "name": "Ping", "data": "{}", "info": "user_count"},
                    {"channel": "news", "name": "Ping", "data": "{}"},
                ],
            },
        )
        assert batch["status"] == 200, batch
        assert batch["body"] == {"batch": [{"user_count": 1}, {}]}
        listed = await get("/channels", {"filter_by_prefix": "presence-", "info": "user_count"})
        assert listed["body"] == {"channels": {presence: {"user_count": 1}}}
