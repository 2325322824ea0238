"""Replay of missed notifications, focused: the signed last sequence, the race between the
replay and live events, and what a subscriber gets when the database does not answer.

The end-to-end cases (two nodes, a dropped socket, a killed node, the real npm clients) are in
``test_replay_cluster.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from notiflow.kit.db import create_engine
from notiflow.kit.uow import create_sessionmaker
from notiflow.models.tenancy import Role
from notiflow.realtime.notifier import DatabaseReplaySource
from notiflow.realtime.protocol import Join, ProtocolConfig, PusherConnection, Send
from notiflow.realtime.replay import MissedReplay, ReplayBatch, ReplaySource
from notiflow.realtime.signing import channel_auth
from tests.conftest import MakeMember, Member
from tests.delivery.processes import free_port
from tests.realtime.conftest import LiveStack
from tests.realtime.node import run_sdk
from tests.realtime.wsclient import WsClient

KEY, SECRET = "replay-key", "replay-secret-0123456789"


async def authorize(
    live: LiveStack, member: Member, socket_id: str, channel: str, **fields: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=live.api_url, timeout=30) as client:
        return await client.post(
            "/broadcasting/auth",
            headers=member.headers,
            data={"socket_id": socket_id, "channel_name": channel, **fields},
        )


async def send(live: LiveStack, member: Member, title: str) -> str:
    async with httpx.AsyncClient(base_url=live.api_url, timeout=30) as client:
        response = await client.post(
            "/api/v1/notifications/send",
            headers=member.headers,
            json={
                "user_ids": [str(member.id)],
                "type": "new_comment",
                "title": title,
                "message": "Nice post!",
            },
        )
    assert response.status_code == 202, response.text
    return str(response.json()["data"]["notifications"][0]["id"])


async def subscribe(
    live: LiveStack, member: Member, last_sequence: int | None = None
) -> tuple[WsClient, str]:
    client = await WsClient.open(live.ws_port, live.key)
    channel = f"private-notifications.{member.id}"
    fields = {} if last_sequence is None else {"last_sequence": str(last_sequence)}
    response = await authorize(live, member, client.socket_id, channel, **fields)
    assert response.status_code == 200, response.text
    reply = response.json()
    client.subscribe(channel, reply["auth"], reply.get("channel_data"))
    return client, channel


def events(client: WsClient, name: str) -> list[dict[str, Any]]:
    return [json.loads(message["data"]) for message in client.messages if message["event"] == name]


async def settle(client: WsClient, check: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"condition not met; got {client.messages}"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------- authorization


async def test_the_auth_endpoint_signs_the_last_sequence_into_channel_data(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme")
    channel = f"private-notifications.{ada.id}"
    response = await authorize(live, ada, "1.2", channel, last_sequence="41")
    assert response.status_code == 200
    reply = response.json()
    assert reply["channel_data"] == '{"last_sequence":41}'
    assert reply["auth"] == channel_auth(
        live.key, live.secret, "1.2", channel, '{"last_sequence":41}'
    )

    # JSON bodies may give it as a number; other channels ignore it (pusher-js sends the same
    # params for every channel)
    async with httpx.AsyncClient(base_url=live.api_url, timeout=30) as client:
        as_json = await client.post(
            "/broadcasting/auth",
            headers=ada.headers,
            json={"socket_id": "1.2", "channel_name": channel, "last_sequence": 41},
        )
    assert as_json.json() == reply
    tenant_channel = f"private-tenant.{ada.tenant_id}"
    other = await authorize(live, ada, "1.2", tenant_channel, last_sequence="41")
    assert other.json() == {"auth": channel_auth(live.key, live.secret, "1.2", tenant_channel)}
    empty = await authorize(live, ada, "1.2", channel, last_sequence="")
    assert "channel_data" not in empty.json()


async def test_a_last_sequence_that_is_not_a_whole_number_is_refused(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme")
    channel = f"private-notifications.{ada.id}"
    for bad in ("-1", "4.5", "abc", "1" * 25):
        response = await authorize(live, ada, "1.2", channel, last_sequence=bad)
        assert response.status_code == 422, (bad, response.text)
        assert "last_sequence" in response.json()["error"]["message"]


def test_private_channel_data_counts_only_when_signed() -> None:
    channel = "private-notifications.0b6c6a8e-4a8f-4f7e-9f61-0d6b1b7c2a11"
    data = '{"last_sequence":3}'
    connection = PusherConnection("1.2", ProtocolConfig(KEY, SECRET), now=0.0)

    def subscribe(auth: str, channel_data: str) -> list[Any]:
        message = {"channel": channel, "auth": auth, "channel_data": channel_data}
        return connection.receive(json.dumps({"event": "pusher:subscribe", "data": message}), 0)

    signed = channel_auth(KEY, SECRET, "1.2", channel, data)
    assert subscribe(signed, data) == [Join(channel, None, data)]
    # a plain private signature with channel_data added: subscribed, the data ignored
    plain = channel_auth(KEY, SECRET, "1.2", channel)
    assert subscribe(plain, '{"last_sequence":0}') == [Join(channel, None, None)]
    # signed data changed on the way: refused
    (refusal,) = subscribe(signed, '{"last_sequence":0}')
    assert isinstance(refusal, Send)
    assert json.loads(refusal.frame)["data"]["type"] == "AuthError"


# ---------------------------------------------------------------------------- the race


class GatedSource:
    """The real database source, stopped twice so the test can send meanwhile: before it reads
    and after it has read (before the replay is queued)."""

    def __init__(self, inner: ReplaySource) -> None:
        self.inner = inner
        self.entered = asyncio.Event()
        self.may_read = asyncio.Event()
        self.has_read = asyncio.Event()
        self.may_finish = asyncio.Event()

    async def replay(self, user_id: str, after: int | None) -> ReplayBatch:
        self.entered.set()
        await self.may_read.wait()
        batch = await self.inner.replay(user_id, after)
        self.has_read.set()
        await self.may_finish.wait()
        return batch


def held(live: LiveStack, channel: str, client: WsClient) -> list[bytes]:
    stand_in = live.realtime.hub.channels[channel][client.socket_id]
    assert isinstance(stand_in, MissedReplay)
    return stand_in.held


async def test_live_events_racing_the_replay_arrive_once_and_in_order(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme", role=Role.OWNER)
    missed = [await send(live, ada, "one"), await send(live, ada, "two")]
    assert live.realtime.replay is not None
    gate = GatedSource(live.realtime.replay)
    live.realtime.replay = gate

    client, channel = await subscribe(live, ada, last_sequence=0)
    await asyncio.wait_for(gate.entered.wait(), 15)
    # committed and published while the replay has not read yet: held, then replayed
    during_read = await send(live, ada, "three")
    await settle(client, lambda: len(held(live, channel, client)) >= 2)
    gate.may_read.set()
    await asyncio.wait_for(gate.has_read.wait(), 15)
    # committed after the replay read: held, delivered after it
    after_read = await send(live, ada, "four")
    await settle(client, lambda: len(held(live, channel, client)) >= 4)
    gate.may_finish.set()

    await settle(client, lambda: len(events(client, "NotificationCreated")) >= 4)
    await client.quiet(0.5)
    created = events(client, "NotificationCreated")
    assert [event["id"] for event in created] == [*missed, during_read, after_read]
    assert [event["sequence"] for event in created] == [1, 2, 3, 4]
    names = [m["event"] for m in client.messages if not m["event"].startswith("pusher")]
    assert names[:4] == [
        "NotificationCreated",
        "NotificationCreated",
        "NotificationCreated",
        "UnreadCountChanged",  # the snapshot, after the replay
    ]
    assert events(client, "UnreadCountChanged")[0] == {
        "count": 3,
        "tenant_id": str(ada.tenant_id),
        "sequence": 3,
    }
    assert events(client, "UnreadCountChanged")[-1]["count"] == 4
    assert events(client, "ResyncRequired") == []
    # the connection has its channel back: no stand-in any more
    assert live.realtime.hub.channels[channel][client.socket_id] is not None
    assert not isinstance(live.realtime.hub.channels[channel][client.socket_id], MissedReplay)
    await client.close()


async def test_a_sequence_ahead_of_the_servers_gets_resync_required(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme", role=Role.OWNER)
    await send(live, ada, "one")
    client, _ = await subscribe(live, ada, last_sequence=99)
    await settle(client, lambda: bool(events(client, "ResyncRequired")))
    assert events(client, "ResyncRequired") == [{"sequence": 1, "reason": "unknown_sequence"}]
    await settle(client, lambda: bool(events(client, "UnreadCountChanged")))
    assert events(client, "NotificationCreated") == []
    await client.close()


async def test_without_the_database_the_subscription_and_live_events_stand(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme", role=Role.OWNER)
    nowhere = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing")
    live.realtime.replay = DatabaseReplaySource(
        create_sessionmaker(nowhere), max_events=100, max_age_seconds=3600
    )
    try:
        client, channel = await subscribe(live, ada, last_sequence=0)
        await client.wait_for("pusher_internal:subscription_succeeded", channel=channel, timeout=15)
        await settle(client, lambda: bool(events(client, "ResyncRequired")))
        assert events(client, "ResyncRequired") == [{"sequence": None, "reason": "unavailable"}]
        # the API's own database is fine: a send still reaches the subscriber live
        sent = await send(live, ada, "live")
        await settle(client, lambda: bool(events(client, "NotificationCreated")))
        assert [event["id"] for event in events(client, "NotificationCreated")] == [sent]
        await client.close()
    finally:
        await nowhere.dispose()


async def test_a_backends_own_authorizer_can_sign_the_last_sequence_with_a_pusher_sdk(
    live: LiveStack, make_member: MakeMember
) -> None:
    """A backend that authorizes channels itself (the npm ``pusher`` SDK's authorizeChannel with
    data, as for presence) gets the same replay: the data is signed as notiflow signs it."""
    ada = await make_member("acme", role=Role.OWNER)
    missed = [await send(live, ada, "one"), await send(live, ada, "two")]
    client = await WsClient.open(live.ws_port, live.key)
    channel = f"private-notifications.{ada.id}"
    signed = await run_sdk(
        {"appId": "1", "key": live.key, "secret": live.secret, "useTLS": False},
        {
            "action": "authorizeChannel",
            "socket_id": client.socket_id,
            "channel": channel,
            "presenceData": {"last_sequence": 0},
        },
    )
    client.subscribe(channel, signed["result"]["auth"], signed["result"]["channel_data"])
    await settle(client, lambda: len(events(client, "NotificationCreated")) == 2)
    assert [event["id"] for event in events(client, "NotificationCreated")] == missed
    await client.close()
