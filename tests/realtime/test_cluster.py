"""Two realtime nodes over a real Redis: delivery across nodes, one presence everywhere."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from notiflow.realtime.hub import Hub
from notiflow.realtime.protocol import ProtocolConfig
from notiflow.realtime.redis import Cluster, close_redis_hub, redis_hub
from notiflow.realtime.server import RealtimeServer
from notiflow.realtime.signing import channel_auth
from tests.realtime.wsclient import WsClient

KEY, SECRET = "cluster-key", "cluster-secret-0123456789"


class Node:
    def __init__(self, hub: Hub, cluster: Cluster, server: RealtimeServer) -> None:
        self.hub = hub
        self.cluster = cluster
        self.server = server


@pytest.fixture
async def nodes(redis: Redis) -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    for name in ("node-a", "node-b"):
        hub, cluster = await redis_hub(redis, name)
        server = RealtimeServer(ProtocolConfig(KEY, SECRET), hub)
        await server.start("127.0.0.1", 0)
        started.append(Node(hub, cluster, server))
    yield started
    for node in started:
        await node.server.stop()
        await close_redis_hub(node.hub, node.cluster)


async def join_presence(node: Node, channel: str, user_id: str, name: str) -> WsClient:
    client = await WsClient.open(node.server.port, KEY)
    channel_data = json.dumps({"user_id": user_id, "user_info": {"name": name}})
    client.subscribe(
        channel, channel_auth(KEY, SECRET, client.socket_id, channel, channel_data), channel_data
    )
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)
    return client


async def test_an_event_published_on_one_node_reaches_clients_on_the_other(
    nodes: list[Node], redis: Redis
) -> None:
    a, b = nodes
    on_a = await WsClient.open(a.server.port, KEY)
    on_b = await WsClient.open(b.server.port, KEY)
    for client in (on_a, on_b):
        client.subscribe(
            "private-orders", channel_auth(KEY, SECRET, client.socket_id, "private-orders")
        )
        await client.wait_for("pusher_internal:subscription_succeeded")

    await b.hub.publish("private-orders", "OrderShipped", '{"id":1}')
    for client in (on_a, on_b):
        event = await client.wait_for("OrderShipped")
        assert event["data"] == '{"id":1}'
    await asyncio.sleep(0.1)
    assert [m["event"] for m in on_a.messages].count("OrderShipped") == 1, "exactly once"

    # an API process (a hub with no sockets) reaches both nodes too, minus an excluded socket
    api_hub, api_cluster = await redis_hub(redis, "api-process")
    try:
        await api_hub.publish("private-orders", "OrderPaid", "{}", except_socket_id=on_b.socket_id)
        await on_a.wait_for("OrderPaid")
        assert [m for m in await on_b.quiet() if m["event"] == "OrderPaid"] == []
        assert (await api_hub.channel_counts("private-"))["private-orders"] == 2
    finally:
        await close_redis_hub(api_hub, api_cluster)


async def test_presence_is_the_same_on_every_node(nodes: list[Node]) -> None:
    a, b = nodes
    channel = "presence-team"
    ada = await join_presence(a, channel, "ada", "Ada")
    bob = await join_presence(b, channel, "bob", "Bob")

    added = await ada.wait_for("pusher_internal:member_added")
    assert json.loads(added["data"]) == {"user_id": "bob", "user_info": {"name": "Bob"}}
    succeeded = await bob.wait_for("pusher_internal:subscription_succeeded")
    assert json.loads(succeeded["data"])["presence"]["hash"] == {
        "ada": {"name": "Ada"},
        "bob": {"name": "Bob"},
    }
    for node in nodes:
        assert set(await node.hub.users(channel)) == {"ada", "bob"}
        info = await node.hub.channel_info(channel)
        assert (info.subscription_count, info.user_count) == (2, 2)

    # ada opens a second tab on the other node: not a new member anywhere
    ada_again = await join_presence(b, channel, "ada", "Ada")
    assert [m for m in await bob.quiet() if m["event"] == "pusher_internal:member_added"] == []
    await ada.close()
    assert [m for m in await bob.quiet() if m["event"] == "pusher_internal:member_removed"] == []
    await ada_again.close()
    removed = await bob.wait_for("pusher_internal:member_removed")
    assert json.loads(removed["data"]) == {"user_id": "ada"}
    for node in nodes:
        assert await node.hub.users(channel) == ["bob"]


async def test_a_dead_nodes_members_disappear(nodes: list[Node], redis: Redis) -> None:
    a, b = nodes
    channel = "presence-team"
    await join_presence(a, channel, "ada", "Ada")
    await join_presence(b, channel, "bob", "Bob")
    # node b dies without cleaning up: its heartbeat key simply expires
    await redis.delete(f"notiflow:rt:node:{b.cluster.node_id}")
    assert await a.hub.users(channel) == ["ada"]
    assert (await a.hub.channel_counts()).get(channel) == 1


async def test_a_node_keeps_a_working_subscription_when_another_of_its_parts_saw_redis_fail(
    nodes: list[Node],
) -> None:
    """A publish, the heartbeat or a stale pooled connection may fail while Redis and the
    node's pub/sub connection are fine. The node must not drop that subscription to make a new
    one: what other nodes publish meanwhile would be lost."""
    a, b = nodes
    on_b = await WsClient.open(b.server.port, KEY)
    on_b.subscribe("private-ticks", channel_auth(KEY, SECRET, on_b.socket_id, "private-ticks"))
    await on_b.wait_for("pusher_internal:subscription_succeeded")

    b.cluster.link.lost(RedisConnectionError("a pooled connection closed by the server"))
    ticks = 150
    for index in range(ticks):  # over about 1.5 s: longer than the reader's poll
        await a.hub.publish("private-ticks", "Tick", json.dumps({"i": index}))
        await asyncio.sleep(0.01)

    async def heard() -> list[int]:
        return [json.loads(m["data"])["i"] for m in on_b.messages if m["event"] == "Tick"]

    for _ in range(200):
        if len(await heard()) >= ticks and b.cluster.link.up:
            break
        await asyncio.sleep(0.05)
    assert await heard() == list(range(ticks)), "every event once, in order"
    assert b.cluster.link.up, "the node sees Redis again without reconnecting"
    # and it still publishes to the other nodes and hears them
    on_a = await WsClient.open(a.server.port, KEY)
    on_a.subscribe("private-ticks", channel_auth(KEY, SECRET, on_a.socket_id, "private-ticks"))
    await on_a.wait_for("pusher_internal:subscription_succeeded")
    await b.hub.publish("private-ticks", "Tock", "{}")
    await on_a.wait_for("Tock")


async def join_as(node: Node, channel: str, user_id: int | str) -> WsClient:
    """A connection that joins ``channel`` with channel_data whose user_id is ``user_id`` as it
    is (a Laravel authorizer gives the model's integer key)."""
    client = await WsClient.open(node.server.port, KEY)
    channel_data = json.dumps({"user_id": user_id, "user_info": {"id": user_id}})
    client.subscribe(
        channel, channel_auth(KEY, SECRET, client.socket_id, channel, channel_data), channel_data
    )
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)
    return client


def unique(prefix: str) -> str:
    """A channel name of this test alone: Redis pub/sub channels are shared by every database
    of the server, so another test run on the same Redis must not hear this one."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def presence_of(client: WsClient, channel: str) -> dict[str, object]:
    for message in client.messages:
        if (
            message.get("event") == "pusher_internal:subscription_succeeded"
            and message.get("channel") == channel
        ):
            presence: dict[str, object] = json.loads(message["data"])["presence"]
            return presence
    raise AssertionError(f"no subscription_succeeded on {channel}: {client.messages}")


async def test_member_ids_keep_their_json_type_across_nodes(nodes: list[Node]) -> None:
    """42 from an authorizer stays the number 42 everywhere a member id appears, on both nodes;
    the hash is keyed by its string form, as JSON keys are."""
    a, b = nodes
    channel = unique("presence-room")
    ada = await join_as(a, channel, 42)
    bob = await join_as(b, channel, "bob")

    added = json.loads((await ada.wait_for("pusher_internal:member_added"))["data"])
    assert added == {"user_id": "bob", "user_info": {"id": "bob"}}
    assert presence_of(bob, channel) == {
        "ids": [42, "bob"],
        "hash": {"42": {"id": 42}, "bob": {"id": "bob"}},
        "count": 2,
    }
    for node in nodes:
        assert sorted(await node.hub.users(channel), key=str) == [42, "bob"]

    # a client event of ada's carries her id as a number on the other node
    ada.send({"event": "client-typing", "channel": channel, "data": {}})
    whisper = await bob.wait_for("client-typing")
    assert whisper["user_id"] == 42

    await ada.close()
    removed = json.loads((await bob.wait_for("pusher_internal:member_removed"))["data"])
    assert removed == {"user_id": 42}


async def test_a_member_is_one_whatever_the_type_of_its_id(nodes: list[Node]) -> None:
    """pusher-js keys members by the id's string form (presence.hash is a JSON object), so 42
    and "42" must be one member: two tabs, two authorizers, one user, on two nodes."""
    a, b = nodes
    channel = unique("presence-room")
    watcher = await join_as(a, channel, "watcher")
    as_number = await join_as(a, channel, 42)
    added = json.loads((await watcher.wait_for("pusher_internal:member_added"))["data"])
    assert added["user_id"] == 42
    as_text = await join_as(b, channel, "42")
    assert presence_of(as_text, channel)["count"] == 2
    assert [m for m in await watcher.quiet() if m["event"].endswith("member_added")] == []
    for node in nodes:
        assert len(await node.hub.users(channel)) == 2

    await as_number.close()
    assert [m for m in await watcher.quiet() if m["event"].endswith("member_removed")] == []
    await as_text.close()
    removed = json.loads((await watcher.wait_for("pusher_internal:member_removed"))["data"])
    assert str(removed["user_id"]) == "42"
    for node in nodes:
        assert await node.hub.users(channel) == ["watcher"]
