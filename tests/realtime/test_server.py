"""The WebSocket server end to end over real sockets, with the API beside it."""

from __future__ import annotations

import asyncio
import json
import time
from unittest import mock

import httpx
import pusher
import pytest
from pusher.errors import PusherBadRequest
from pusher.pusher_client import PusherClient

from notiflow.models.tenancy import Role
from notiflow.realtime.protocol import ErrorCode, ProtocolConfig
from notiflow.realtime.server import RealtimeServer
from notiflow.realtime.signing import channel_auth
from tests.conftest import MakeMember, Member
from tests.realtime.conftest import LiveStack
from tests.realtime.wsclient import WsClient


async def authorize(
    live: LiveStack, member: Member, socket_id: str, channel: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.api_url) as client:
        return await client.post(
            "/broadcasting/auth",
            headers=member.headers,
            data={"socket_id": socket_id, "channel_name": channel},
        )


async def subscribed_to_own_channel(live: LiveStack, member: Member) -> WsClient:
    client = await WsClient.open(live.ws_port, live.key)
    channel = f"private-notifications.{member.id}"
    response = await authorize(live, member, client.socket_id, channel)
    assert response.status_code == 200, response.text
    client.subscribe(channel, response.json()["auth"])
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)
    # Every subscribe to it starts with the unread count of each tenant (the snapshot): the
    # tests below look at what comes after it.
    snapshot = await client.wait_for("UnreadCountChanged", channel=channel)
    assert json.loads(snapshot["data"])["tenant_id"] == str(member.tenant_id)
    client.messages.clear()
    return client


async def send(live: LiveStack, sender: Member, *user_ids, **fields) -> httpx.Response:
    body = {
        "user_ids": [str(user_id) for user_id in user_ids],
        "type": "new_comment",
        "title": "New comment",
        "message": "Nice post!",
        **fields,
    }
    async with httpx.AsyncClient(base_url=live.api_url) as client:
        response = await client.post(
            "/api/v1/notifications/send", headers=sender.headers, json=body
        )
    assert response.status_code == 202, response.text
    return response


async def test_handshake(live: LiveStack) -> None:
    client = await WsClient.open(live.ws_port, live.key)
    established = client.messages[0]
    data = json.loads(established["data"])
    assert data["activity_timeout"] == 30
    assert client.socket_id.count(".") == 1
    assert all(part.isdigit() for part in client.socket_id.split("."))
    other = await WsClient.open(live.ws_port, live.key)
    assert other.socket_id != client.socket_id
    await client.close()
    await other.close()


async def test_unknown_app_key_is_refused_with_4001(live: LiveStack) -> None:
    client = await WsClient.connect(f"ws://127.0.0.1:{live.ws_port}/app/not-the-key")
    error = await client.wait_for("pusher:error")
    assert error["data"]["code"] == ErrorCode.APP_NOT_FOUND
    assert await client.wait_closed() == ErrorCode.APP_NOT_FOUND


async def test_origin_allow_list() -> None:
    server = RealtimeServer(
        ProtocolConfig("k", "secret-0123456789"), allowed_origins=["app.example.com", "*.acme.io"]
    )
    await server.start("127.0.0.1", 0)
    try:
        evil = await WsClient.connect(
            f"ws://127.0.0.1:{server.port}/app/k", Origin="https://evil.example"
        )
        assert (await evil.wait_for("pusher:error"))["data"]["code"] == ErrorCode.UNAUTHORIZED
        assert await evil.wait_closed() == ErrorCode.UNAUTHORIZED
        for origin in ("https://app.example.com", "https://eu.acme.io:8443"):
            good = await WsClient.open(server.port, "k", Origin=origin)
            await good.close()
        no_origin = await WsClient.open(server.port, "k")  # not a browser
        await no_origin.close()
    finally:
        await server.stop()


async def test_notification_created_reaches_only_its_user(
    live: LiveStack, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    other = await make_member("acme")
    mine = await subscribed_to_own_channel(live, owner)
    theirs = await subscribed_to_own_channel(live, other)

    response = await send(live, owner, owner.id, action_url="/posts/1")
    notification_id = response.json()["data"]["notifications"][0]["id"]

    created = await mine.wait_for("NotificationCreated")
    payload = json.loads(created["data"])
    assert payload["id"] == notification_id
    assert payload["title"] == "New comment"
    assert payload["is_read"] is False
    assert set(payload) == {
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
        "sequence",
    }
    assert payload["sequence"] == 1
    badge = await mine.wait_for("UnreadCountChanged")
    assert json.loads(badge["data"]) == {"count": 1, "tenant_id": str(owner.tenant_id)}
    assert await theirs.quiet() == []


async def test_another_users_channel_is_refused(live: LiveStack, make_member: MakeMember) -> None:
    me = await make_member("acme")
    victim = await make_member("acme")
    client = await WsClient.open(live.ws_port, live.key)
    channel = f"private-notifications.{victim.id}"
    response = await authorize(live, me, client.socket_id, channel)
    assert response.status_code == 403
    # A forged or replayed signature gets a subscription error, and nothing is delivered.
    stolen = channel_auth(live.key, live.secret, "1.2", channel)
    client.subscribe(channel, stolen)
    error = await client.wait_for("pusher:subscription_error", channel=channel)
    assert error["data"]["type"] == "AuthError"
    assert channel not in live.runtime.hub.channels


async def test_push_off_sends_no_notification_created_but_keeps_the_badge(
    live: LiveStack, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    client = await subscribed_to_own_channel(live, owner)
    async with httpx.AsyncClient(base_url=live.api_url) as api:
        response = await api.patch(
            "/api/v1/me/notification-preferences",
            headers=owner.headers,
            json={"push_notifications_enabled": False},
        )
        assert response.status_code == 200
    await send(live, owner, owner.id)
    badge = await client.wait_for("UnreadCountChanged")
    assert json.loads(badge["data"])["count"] == 1
    assert [m for m in await client.quiet() if m["event"] == "NotificationCreated"] == []
    assert not any(m["event"] == "NotificationCreated" for m in client.messages)


async def test_reading_updates_the_badge_in_every_tab(
    live: LiveStack, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    tab_one = await subscribed_to_own_channel(live, owner)
    tab_two = await subscribed_to_own_channel(live, owner)
    ids = []
    for _ in range(3):
        response = await send(live, owner, owner.id)
        ids.append(response.json()["data"]["notifications"][0]["id"])
    async with httpx.AsyncClient(base_url=live.api_url, headers=owner.headers) as api:
        mark = len(tab_two.messages)
        await api.post(f"/api/v1/notifications/{ids[0]}/read")
        assert await _badge_after(tab_two, mark) == 2
        mark = len(tab_two.messages)
        await api.post("/api/v1/notifications/read-multiple", json={"ids": [ids[1]]})
        assert await _badge_after(tab_two, mark) == 1
        mark = len(tab_one.messages)
        await api.post("/api/v1/notifications/read-all")
        assert await _badge_after(tab_one, mark) == 0


async def _badge_after(client: WsClient, index: int) -> int:
    message = await client.wait_for("UnreadCountChanged", after=index)
    return int(json.loads(message["data"])["count"])


async def test_bad_frames_do_not_disturb_other_connections(
    live: LiveStack, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    good = await subscribed_to_own_channel(live, owner)
    noisy = await WsClient.open(live.ws_port, live.key)
    for junk in ["{", "[]", '{"event":"pusher:nope"}', "x" * 20_000, b"\xff\xfe\xfd"]:
        noisy.send(junk)
    await asyncio.sleep(0.2)
    errors = [m for m in noisy.messages if m["event"] == "pusher:error"]
    assert len(errors) == 5
    assert noisy.close_code is None, "a bad frame is answered, not punished"
    await send(live, owner, owner.id)
    await good.wait_for("NotificationCreated")


async def test_client_event_flood_is_refused_then_disconnected(
    live: LiveStack, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    channel = f"private-tenant.{member.tenant_id}"
    flooder = await WsClient.open(live.ws_port, live.key)
    listener = await WsClient.open(live.ws_port, live.key)
    for client in (flooder, listener):
        response = await authorize(live, member, client.socket_id, channel)
        client.subscribe(channel, response.json()["auth"])
        await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)
    for index in range(300):
        flooder.send({"event": "client-typing", "channel": channel, "data": {"n": index}})
    assert await flooder.wait_closed() == ErrorCode.CLIENT_EVENT_REJECTED
    rejected = [m for m in flooder.messages if m["event"] == "pusher:error"]
    assert rejected
    assert rejected[0]["data"]["code"] == ErrorCode.CLIENT_EVENT_REJECTED
    relayed = [m for m in listener.messages if m["event"] == "client-typing"]
    assert 1 <= len(relayed) <= 20, "only what the rate limit lets through reaches others"
    assert not any(m["event"] == "client-typing" for m in flooder.messages), "not echoed"
    # the listener is fine and still subscribed
    await live.runtime.hub.publish(channel, "still-here", "{}")
    await listener.wait_for("still-here")


async def test_presence_across_members(live: LiveStack, make_member: MakeMember) -> None:
    ada = await make_member("acme")
    bob = await make_member("acme")
    channel = f"presence-tenant.{ada.tenant_id}"

    async def join(member: Member) -> WsClient:
        client = await WsClient.open(live.ws_port, live.key)
        grant = (await authorize(live, member, client.socket_id, channel)).json()
        client.subscribe(channel, grant["auth"], grant["channel_data"])
        return client

    ada_tab = await join(ada)
    succeeded = await ada_tab.wait_for("pusher_internal:subscription_succeeded")
    presence = json.loads(succeeded["data"])["presence"]
    assert presence["ids"] == [str(ada.id)]
    assert presence["hash"][str(ada.id)] == {"name": ada.user.name}

    bob_tab = await join(bob)
    added = await ada_tab.wait_for("pusher_internal:member_added")
    assert json.loads(added["data"])["user_id"] == str(bob.id)
    bob_presence = json.loads(
        (await bob_tab.wait_for("pusher_internal:subscription_succeeded"))["data"]
    )
    assert set(bob_presence["presence"]["ids"]) == {str(ada.id), str(bob.id)}

    # a second tab of bob's is not a new member; closing one of two tabs removes nobody
    bob_second = await join(bob)
    await bob_second.wait_for("pusher_internal:subscription_succeeded")
    await bob_second.close()
    assert [m for m in await ada_tab.quiet() if "member" in m["event"]] == []
    await bob_tab.close()
    removed = await ada_tab.wait_for("pusher_internal:member_removed")
    assert json.loads(removed["data"]) == {"user_id": str(bob.id)}


async def test_outsiders_cannot_join_tenant_channels(
    live: LiveStack, make_member: MakeMember
) -> None:
    insider = await make_member("acme")
    outsider = await make_member("globex")
    client = await WsClient.open(live.ws_port, live.key)
    for prefix in ("presence-tenant.", "private-tenant."):
        response = await authorize(
            live, outsider, client.socket_id, prefix + str(insider.tenant_id)
        )
        assert response.status_code == 403


async def test_no_state_is_kept_for_closed_connections(
    live: LiveStack, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    presence = f"presence-tenant.{member.tenant_id}"
    for _ in range(60):
        client = await WsClient.open(live.ws_port, live.key)
        grant = (await authorize(live, member, client.socket_id, presence)).json()
        client.subscribe(presence, grant["auth"], grant["channel_data"])
        client.subscribe("public-news")
        await client.wait_for("pusher_internal:subscription_succeeded", channel=presence)
        await client.wait_for("pusher_internal:subscription_succeeded", channel="public-news")
        if _ % 2:
            await client.close()
        else:
            client.transport.disconnect(graceful=False)  # a dropped network
            await client.transport.wait_disconnected()
    await asyncio.sleep(0.2)
    assert live.realtime.connection_count == 0
    assert live.runtime.hub.channels == {}
    assert await live.runtime.hub.presence.members(presence) == {}


async def test_pypi_sdk_triggers_and_reads_channels(
    live: LiveStack, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    settings = live.runtime.settings
    sdk = pusher.Pusher(
        app_id=settings.pusher_app_id,
        key=settings.pusher_app_key,
        secret=settings.pusher_app_secret,
        host="127.0.0.1",
        port=live.api_port,
        ssl=False,
    )
    listener = await subscribed_to_own_channel(live, member)
    sender = await subscribed_to_own_channel(live, member)
    channel = f"private-notifications.{member.id}"

    await asyncio.to_thread(sdk.trigger, [channel], "OrderShipped", {"order": 7})
    shipped = await listener.wait_for("OrderShipped")
    assert json.loads(shipped["data"]) == {"order": 7}

    # socket_id excludes the sender (Laravel's toOthers())
    mark = len(sender.messages)
    await asyncio.to_thread(sdk.trigger, channel, "Echoed", {"x": 1}, sender.socket_id)
    await listener.wait_for("Echoed")
    assert [m for m in sender.messages[mark:] if m["event"] == "Echoed"] == []

    await asyncio.to_thread(
        sdk.trigger_batch, [{"channel": channel, "name": "Batched", "data": {"n": 1}}]
    )
    await listener.wait_for("Batched")

    channels = await asyncio.to_thread(sdk.channels_info, "private-notifications.")
    assert channels["channels"] == {channel: {}}
    info = await asyncio.to_thread(sdk.channel_info, channel, ["subscription_count"])
    assert info == {"occupied": True, "subscription_count": 2}

    grant_client = await WsClient.open(live.ws_port, live.key)
    presence = f"presence-tenant.{member.tenant_id}"
    grant = (await authorize(live, member, grant_client.socket_id, presence)).json()
    grant_client.subscribe(presence, grant["auth"], grant["channel_data"])
    await grant_client.wait_for("pusher_internal:subscription_succeeded")
    users = await asyncio.to_thread(sdk.users_info, presence)
    assert users == {"users": [{"id": str(member.id)}]}
    with_counts = await asyncio.to_thread(sdk.channels_info, "presence-", ["user_count"])
    assert with_counts["channels"][presence] == {"user_count": 1}


@pytest.mark.parametrize("problem", ["secret", "stale", "body", "key"])
async def test_http_api_refuses_bad_signatures(live: LiveStack, problem: str) -> None:
    settings = live.runtime.settings
    sdk = PusherClient(
        app_id=settings.pusher_app_id,
        key="someone-elses-key" if problem == "key" else settings.pusher_app_key,
        secret="wrong-secret-0123456789" if problem == "secret" else settings.pusher_app_secret,
        host="127.0.0.1",
        port=live.api_port,
        ssl=False,
    )
    signed_at = time.time() - 660 if problem == "stale" else time.time()
    # the SDK signs with its own clock: an 11-minute-old request is a replay
    with mock.patch("pusher.http.time.time", return_value=signed_at):
        request = sdk.trigger.make_request(["news"], "Event", {"a": 1})
    body = request.body.replace(b"1", b"2") if problem == "body" else request.body
    async with httpx.AsyncClient(base_url=live.api_url) as client:
        response = await client.post(
            request.signed_path, content=body, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_pypi_sdk_gets_pusher_statuses_and_member_ids_as_given(live: LiveStack) -> None:
    """The PyPI SDK raises its bad-request error on a 400 (a 422 was an unknown status to it),
    reads user_count of a non-presence channel as simply absent, and gets numeric member ids
    as numbers."""
    settings = live.runtime.settings
    sdk = pusher.Pusher(
        app_id=settings.pusher_app_id,
        key=settings.pusher_app_key,
        secret=settings.pusher_app_secret,
        host="127.0.0.1",
        port=live.api_port,
        ssl=False,
    )
    with pytest.raises(PusherBadRequest, match="filter_by_prefix"):
        await asyncio.to_thread(sdk.channels_info, None, ["user_count"])
    info = await asyncio.to_thread(sdk.channel_info, "news", ["user_count"])
    assert info == {"occupied": False}

    channel = "presence-room"
    client = await WsClient.open(live.ws_port, live.key)
    channel_data = json.dumps({"user_id": 42, "user_info": {"name": "Ada"}})
    client.subscribe(
        channel,
        channel_auth(live.key, live.secret, client.socket_id, channel, channel_data),
        channel_data,
    )
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)
    users = await asyncio.to_thread(sdk.users_info, channel)
    assert users == {"users": [{"id": 42}]}
    assert type(users["users"][0]["id"]) is int
    batch = await asyncio.to_thread(
        sdk.trigger_batch,
        [
            {"channel": channel, "name": "Ping", "data": {}, "info": "user_count"},
            {"channel": "news", "name": "Ping", "data": {}, "info": "user_count"},
        ],
    )
    assert batch == {"batch": [{"user_count": 1}, {}]}
    await client.close()
