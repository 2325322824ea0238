"""Cache channels on the WebSocket: the last event replayed on subscribe, pusher:cache_miss
otherwise; in one process (raw frames) and across nodes over a redis-server of the test's own."""

# ruff: noqa: ASYNC109 - small polling helpers with a timeout argument

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from notiflow.realtime import protocol
from notiflow.realtime.cache import (
    CachedEvent,
    ChannelCache,
    MemoryCacheStore,
    RedisCacheStore,
    cache_attribute,
    cache_replay,
    is_cache_channel,
)
from notiflow.realtime.hub import Hub, websocket_frame
from notiflow.realtime.protocol import ErrorCode, ProtocolConfig
from notiflow.realtime.redis import Cluster, close_redis_hub, redis_hub
from notiflow.realtime.server import RealtimeServer
from notiflow.realtime.signing import channel_auth
from tests.delivery.processes import eventually
from tests.fault_servers import OwnRedis
from tests.realtime.wsclient import WsClient

KEY, SECRET = "cache-key", "cache-secret-0123456789"
# One of each kind: public, private, presence, end-to-end encrypted.
CACHE_CHANNELS = [
    "cache-score.7",
    "private-cache-orders.7",
    "presence-cache-room.7",
    "private-encrypted-cache-inbox.7",
]
# What a backend's SDK sends on an encrypted channel: the server only ever sees ciphertext.
CIPHERTEXT = json.dumps({"nonce": "bm9uY2Vub25jZQ==", "ciphertext": "c2VjcmV0IHNjb3Jl"})


def score(home: int, channel: str) -> str:
    return (
        CIPHERTEXT.replace("c2V", f"{home}c2V") if "encrypted" in channel else f'{{"home":{home}}}'
    )


def cache_of(hub: Hub) -> ChannelCache:
    assert isinstance(hub.cache, ChannelCache)
    return hub.cache


async def start_server(hub: Hub) -> RealtimeServer:
    server = RealtimeServer(ProtocolConfig(KEY, SECRET), hub)
    await server.start("127.0.0.1", 0)
    return server


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    server = await start_server(Hub(cache=ChannelCache(MemoryCacheStore(), ttl=60)))
    yield server
    await server.stop()


async def subscribe(port: int, channel: str, user_id: str = "ada") -> WsClient:
    """A client subscribed to ``channel`` (signed as its authorizer would)."""
    client = await WsClient.open(port, KEY)
    if channel.startswith("presence-"):
        data = json.dumps({"user_id": user_id, "user_info": {"name": user_id.title()}})
        client.subscribe(channel, channel_auth(KEY, SECRET, client.socket_id, channel, data), data)
    elif channel.startswith("private-"):
        client.subscribe(channel, channel_auth(KEY, SECRET, client.socket_id, channel))
    else:
        client.subscribe(channel)
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel, timeout=10)
    return client


def on_channel(client: WsClient, channel: str) -> list[str]:
    """The events ``client`` got on ``channel``, member events aside."""
    return [
        message["event"]
        for message in client.messages
        if message.get("channel") == channel and "member_" not in message["event"]
    ]


async def replay_of(client: WsClient, channel: str, timeout: float = 10.0) -> dict[str, Any]:
    """The first message after subscription_succeeded on ``channel``: a replay or a miss."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for message in client.messages:
            if message.get("channel") == channel and not message["event"].startswith(
                "pusher_internal:"
            ):
                return message
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no replay on {channel}: {client.messages}")
        client.listener.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.listener.changed.wait(), 0.5)


# ---------------------------------------------------------------------------- one process


def test_the_four_kinds_of_cache_channel() -> None:
    assert all(is_cache_channel(channel) for channel in CACHE_CHANNELS)
    for channel in ("private-encrypted-inbox", "presence-room", "cached-news", "news-cache-1"):
        assert not is_cache_channel(channel)


@pytest.mark.parametrize("channel", CACHE_CHANNELS)
async def test_a_subscriber_gets_the_last_event_right_after_subscribing(
    server: RealtimeServer, channel: str
) -> None:
    await server.hub.publish(channel, "ScoreChanged", score(1, channel))
    await server.hub.publish(channel, "ScoreChanged", score(2, channel))
    client = await subscribe(server.port, channel)
    replay = await client.wait_for("ScoreChanged", channel=channel)
    assert replay["data"] == score(2, channel), "the last event, as it was published"
    assert [message for message in await client.quiet() if message.get("channel")] == []
    assert on_channel(client, channel) == ["pusher_internal:subscription_succeeded", "ScoreChanged"]
    # later events arrive live as on any channel
    mark = len(client.messages)
    await server.hub.publish(channel, "ScoreChanged", score(3, channel))
    live = await client.wait_for("ScoreChanged", channel=channel, after=mark)
    assert live["data"] == score(3, channel)


@pytest.mark.parametrize("channel", CACHE_CHANNELS)
async def test_an_empty_cache_channel_answers_cache_miss(
    server: RealtimeServer, channel: str
) -> None:
    told: list[str] = []

    async def on_miss(name: str) -> None:
        told.append(name)

    cache_of(server.hub).on_miss = on_miss
    client = await subscribe(server.port, channel)
    miss = await client.wait_for("pusher:cache_miss", channel=channel)
    assert "data" not in miss
    assert on_channel(client, channel) == [
        "pusher_internal:subscription_succeeded",
        "pusher:cache_miss",
    ]
    assert told == [channel], "the one place a cache miss is told beyond the client"


async def test_other_channels_keep_no_event(server: RealtimeServer) -> None:
    for channel in ("news", "private-orders.7", "presence-room.7", "private-encrypted-inbox.7"):
        await server.hub.publish(channel, "ScoreChanged", score(1, channel))
        client = await subscribe(server.port, channel)
        assert [message for message in await client.quiet() if message.get("channel")] == []
        assert on_channel(client, channel) == ["pusher_internal:subscription_succeeded"]
        assert await cache_attribute(server.hub, channel) is None


async def test_client_events_are_relayed_but_never_cached(server: RealtimeServer) -> None:
    channel = "private-cache-chat.1"
    ada = await subscribe(server.port, channel)
    bob = await subscribe(server.port, channel)
    bob.send({"event": "client-typing", "channel": channel, "data": {"who": "bob"}})
    await ada.wait_for("client-typing", channel=channel)
    carol = await subscribe(server.port, channel)
    assert (await replay_of(carol, channel))["event"] == "pusher:cache_miss"

    # end-to-end encrypted channels take no client events at all (the server cannot encrypt)
    encrypted = "private-encrypted-cache-chat.1"
    dave = await subscribe(server.port, encrypted)
    dave.send({"event": "client-typing", "channel": encrypted, "data": {}})
    error = await dave.wait_for("pusher:error")
    assert error["data"]["code"] == ErrorCode.CLIENT_EVENT_REJECTED


async def test_the_cached_event_expires_after_the_ttl() -> None:
    server = await start_server(Hub(cache=ChannelCache(MemoryCacheStore(), ttl=1.0)))
    try:
        channel = "cache-score.7"
        await server.hub.publish(channel, "ScoreChanged", '{"home":1}')
        first = await subscribe(server.port, channel)
        assert (await replay_of(first, channel))["event"] == "ScoreChanged"

        async def expired() -> bool:
            client = await subscribe(server.port, channel)
            return (await replay_of(client, channel))["event"] == "pusher:cache_miss"

        await eventually(expired, timeout=15)
        assert await cache_attribute(server.hub, channel) is None
    finally:
        await server.stop()


async def test_the_memory_store_forgets_what_outlived_its_ttl() -> None:
    now = [100.0]
    store = MemoryCacheStore(clock=lambda: now[0])
    await store.put("cache-a", b"{}", 10)
    now[0] += 4
    assert await store.get("cache-a") == CachedEvent(b"{}", 6.0)
    now[0] += 6
    assert await store.get("cache-a") is None
    for index in range(50):
        await store.put(f"cache-{index}", b"{}", 1)
    now[0] += 20
    await store.put("cache-late", b"{}", 1)  # a put past the sweep time drops the expired
    assert len(store) == 1


class Recorder:
    """A subscriber that keeps the names of the events it was sent."""

    def __init__(self, socket_id: str) -> None:
        self.socket_id = socket_id
        self.events: list[str] = []

    def enqueue(self, frame: bytes) -> None:
        self.events.append(json.loads(frame[2:])["event"])


async def test_what_is_published_while_subscribing_follows_the_replay() -> None:
    channel = "private-cache-chat.1"
    hub = Hub(cache=ChannelCache(MemoryCacheStore()))
    await hub.publish(channel, "TopicChanged", '"cats"')
    connection = Recorder("1.1")
    replay = cache_replay(hub, channel, connection)
    assert replay is not None
    await hub.join(channel, replay, None)
    whisper = protocol.encode({"event": "client-typing", "channel": channel, "data": {}})
    hub.deliver(channel, websocket_frame(whisper), None)
    assert connection.events == [], "held until the replay is out"
    await replay.finish()
    assert connection.events == ["TopicChanged", "client-typing"]
    assert hub.channels[channel]["1.1"] is connection


class OvertakenRead(MemoryCacheStore):
    """A cache read that answers late, with what it read before: an event published meanwhile
    is newer than its answer."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()
        self.answer = asyncio.Event()

    async def get(self, channel: str) -> CachedEvent | None:
        cached = await super().get(channel)
        self.reading.set()
        await self.answer.wait()
        return cached


async def test_a_replay_never_takes_a_subscriber_back_to_an_older_event() -> None:
    store = OvertakenRead()
    server = await start_server(Hub(cache=ChannelCache(store)))
    try:
        channel = "cache-score.7"
        await server.hub.publish(channel, "ScoreChanged", '{"home":1}')
        client = await WsClient.open(server.port, KEY)
        client.subscribe(channel)
        await store.reading.wait()
        await server.hub.publish(channel, "ScoreChanged", '{"home":2}')
        store.answer.set()
        await client.wait_for("ScoreChanged", channel=channel)
        await client.quiet()
        events = [
            (message["event"], message["data"])
            for message in client.messages
            if message.get("channel") == channel
        ]
        assert events == [
            ("pusher_internal:subscription_succeeded", "{}"),
            ("ScoreChanged", '{"home":2}'),
        ]
    finally:
        await server.stop()


# ---------------------------------------------------------------------------- across nodes


class Node:
    def __init__(self, hub: Hub, cluster: Cluster, server: RealtimeServer, redis: Redis) -> None:
        self.hub = hub
        self.cluster = cluster
        self.server = server
        self.redis = redis

    @property
    def port(self) -> int:
        return self.server.port


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    with OwnRedis() as redis_server:
        yield redis_server


async def start_nodes(url: str, ttl: float = 60.0) -> list[Node]:
    nodes = []
    for name in ("node-a", "node-b"):
        redis = Redis.from_url(url)
        hub, cluster = await redis_hub(redis, name)
        hub.cache = ChannelCache(RedisCacheStore(redis, cluster.link), ttl=ttl)
        nodes.append(Node(hub, cluster, await start_server(hub), redis))
    return nodes


async def stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:
        await node.server.stop()
        await close_redis_hub(node.hub, node.cluster)
        await node.redis.aclose()


async def test_a_node_replays_what_another_node_published(own_redis: OwnRedis) -> None:
    a, b = nodes = await start_nodes(own_redis.url)
    try:
        for channel in CACHE_CHANNELS:
            await a.hub.publish(channel, "ScoreChanged", score(1, channel))
            await a.hub.publish(channel, "ScoreChanged", score(2, channel))
        for channel in CACHE_CHANNELS:
            client = await subscribe(b.port, channel)
            replay = await replay_of(client, channel)
            assert (replay["event"], replay["data"]) == ("ScoreChanged", score(2, channel))
            attribute = await cache_attribute(b.hub, channel)
            assert attribute is not None
            assert json.loads(attribute["value"]) == replay
            assert 0 < attribute["ttl"] <= 60
        client = await subscribe(b.port, "cache-score.8")
        assert (await replay_of(client, "cache-score.8"))["event"] == "pusher:cache_miss"
    finally:
        await stop_nodes(nodes)


async def test_redis_expires_the_cached_event(own_redis: OwnRedis) -> None:
    a, b = nodes = await start_nodes(own_redis.url, ttl=1.0)
    try:
        channel = "presence-cache-room.7"
        await a.hub.publish(channel, "ScoreChanged", '{"home":1}')
        first = await subscribe(b.port, channel, "bob")
        assert (await replay_of(first, channel))["event"] == "ScoreChanged"

        async def expired() -> bool:
            client = await subscribe(b.port, channel, "bob")
            return (await replay_of(client, channel))["event"] == "pusher:cache_miss"

        await eventually(expired, timeout=15)
    finally:
        await stop_nodes(nodes)


async def test_a_node_replays_what_it_published_while_redis_was_away(
    own_redis: OwnRedis,
) -> None:
    a, b = nodes = await start_nodes(own_redis.url)
    channel = "private-cache-orders.7"
    try:
        own_redis.stop()
        await a.hub.publish(channel, "OrderShipped", '{"n":1}')
        on_a = await subscribe(a.port, channel)
        assert (await replay_of(on_a, channel))["data"] == '{"n":1}'

        own_redis.start()  # empty
        await eventually(lambda: _links_up(nodes), timeout=15)
        again_on_a = await subscribe(a.port, channel)  # its next read writes the event back
        assert (await replay_of(again_on_a, channel))["data"] == '{"n":1}'
        on_b = await subscribe(b.port, channel)
        assert (await replay_of(on_b, channel))["data"] == '{"n":1}'
    finally:
        await stop_nodes(nodes)


async def _links_up(nodes: list[Node]) -> bool:
    return all(node.cluster.link.up for node in nodes)
