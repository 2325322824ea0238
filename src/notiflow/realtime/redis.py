"""Scale-out over Redis: events, subscription counts and presence shared by every node.

- **Events**: one Redis pub/sub channel per Pusher channel (``notiflow:rt:ch:<name>``). A node
  subscribes only while it has local subscribers, so an event reaches only nodes that need it.
  Messages carry the origin node (which already delivered locally) and the excluded socket id.
- **Nodes**: each node keeps ``notiflow:rt:node:<id>`` alive with a TTL heartbeat. Whatever a dead
  node left behind (counts, presence) is ignored at once and cleaned up lazily.
- **Counts**: ``notiflow:rt:counts:<node>`` maps channel -> local subscriptions, so the HTTP API
  on any process answers for the whole cluster.
- **Presence**: ``notiflow:rt:presence:<channel>`` maps ``<node>|<user_id>`` -> connections, and
  ``notiflow:rt:presence-info:<channel>`` maps user_id -> user_info. A user is present while any
  live node counts a connection, so member_added/removed fire once per user cluster-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from notiflow.realtime.hub import Hub
from notiflow.realtime.protocol import Member

log = structlog.get_logger(__name__)

PREFIX = "notiflow:rt"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Cluster:
    """Node liveness shared by the backplane and the presence store."""

    def __init__(
        self, redis: Redis, node_id: str, *, heartbeat: float = 10.0, ttl: float = 30.0
    ) -> None:
        self.redis = redis
        self.node_id = node_id
        self.heartbeat = heartbeat
        self.ttl = ttl
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.redis.delete(f"{PREFIX}:counts:{self.node_id}")
        await self._beat()
        self._task = asyncio.create_task(self._beat_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(f"{PREFIX}:node:{self.node_id}", f"{PREFIX}:counts:{self.node_id}")
            pipe.srem(f"{PREFIX}:nodes", self.node_id)
            await pipe.execute()

    async def _beat(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(f"{PREFIX}:node:{self.node_id}", "1", px=int(self.ttl * 1000))
            pipe.sadd(f"{PREFIX}:nodes", self.node_id)
            await pipe.execute()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                await self._beat()
            except Exception:  # a Redis hiccup must not stop the heartbeat for good
                log.exception("realtime_heartbeat_failed", node=self.node_id)

    async def live_nodes(self) -> set[str]:
        nodes = [_text(node) for node in await self.redis.smembers(f"{PREFIX}:nodes")]
        if not nodes:
            return set()
        alive = await self.redis.mget([f"{PREFIX}:node:{node}" for node in nodes])
        dead = [node for node, flag in zip(nodes, alive, strict=True) if flag is None]
        if dead:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.srem(f"{PREFIX}:nodes", *dead)
                pipe.delete(*[f"{PREFIX}:counts:{node}" for node in dead])
                await pipe.execute()
        return {node for node, flag in zip(nodes, alive, strict=True) if flag is not None}


class RedisBackplane:
    def __init__(self, redis: Redis, cluster: Cluster) -> None:
        self.redis = redis
        self.cluster = cluster
        self.node = cluster.node_id.encode()
        self.hub: Hub | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()

    def attach(self, hub: Hub) -> None:
        self.hub = hub
        hub.backplane = self

    async def start(self) -> None:
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        # A pub/sub connection needs at least one subscription before it can be read.
        await self._pubsub.subscribe(f"{PREFIX}:node-inbox:{self.cluster.node_id}")
        self._reader = asyncio.create_task(self._read_forever())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    async def joined(self, channel: str, first_here: bool) -> None:
        if first_here and self._pubsub is not None and channel not in self._subscribed:
            self._subscribed.add(channel)
            await self._pubsub.subscribe(f"{PREFIX}:ch:{channel}")
        await self.redis.hincrby(f"{PREFIX}:counts:{self.cluster.node_id}", channel, 1)

    async def left(self, channel: str, last_here: bool) -> None:
        key = f"{PREFIX}:counts:{self.cluster.node_id}"
        if last_here:
            await self.redis.hdel(key, channel)
            if self._pubsub is not None and channel in self._subscribed:
                self._subscribed.discard(channel)
                await self._pubsub.unsubscribe(f"{PREFIX}:ch:{channel}")
        else:
            await self.redis.hincrby(key, channel, -1)

    async def publish(self, channel: str, frame: bytes, except_socket_id: str | None) -> None:
        message = b"\n".join((self.node, (except_socket_id or "").encode(), frame))
        await self.redis.publish(f"{PREFIX}:ch:{channel}", message)

    async def channel_counts(self, prefix: str | None = None) -> dict[str, int]:
        totals: dict[str, int] = {}
        for node in await self.cluster.live_nodes():
            counts = await self.redis.hgetall(f"{PREFIX}:counts:{node}")
            for raw_channel, raw_count in counts.items():
                channel, count = _text(raw_channel), int(raw_count)
                if count > 0 and (prefix is None or channel.startswith(prefix)):
                    totals[channel] = totals.get(channel, 0) + count
        return totals

    async def _read_forever(self) -> None:
        assert self._pubsub is not None  # noqa: S101 - set by start() before this task runs
        channel_prefix = f"{PREFIX}:ch:"
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message.get("type") != "message" or self.hub is None:
                        continue
                    redis_channel = _text(message["channel"])
                    if not redis_channel.startswith(channel_prefix):
                        continue
                    origin, excluded, frame = message["data"].split(b"\n", 2)
                    if origin == self.node:
                        continue  # delivered locally when it was published
                    self.hub.deliver(
                        redis_channel[len(channel_prefix) :], frame, excluded.decode() or None
                    )
            except asyncio.CancelledError:
                raise
            except Exception:
                # Reconnect and resubscribe rather than go silently deaf (a known failure of
                # other Pusher servers after a Redis restart).
                log.exception("realtime_backplane_reader_failed")
                await asyncio.sleep(1.0)
                await self._resubscribe()

    async def _resubscribe(self) -> None:
        if self._pubsub is None:
            return
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(
            f"{PREFIX}:node-inbox:{self.cluster.node_id}",
            *[f"{PREFIX}:ch:{channel}" for channel in self._subscribed],
        )


class RedisPresence:
    def __init__(self, redis: Redis, cluster: Cluster) -> None:
        self.redis = redis
        self.cluster = cluster

    def _field(self, user_id: str) -> str:
        return f"{self.cluster.node_id}|{user_id}"

    async def _present_elsewhere(self, channel: str, user_id: str) -> bool:
        live = await self.cluster.live_nodes()
        for raw_field, raw_count in (
            await self.redis.hgetall(f"{PREFIX}:presence:{channel}")
        ).items():
            node, _, user = _text(raw_field).partition("|")
            if user == user_id and node != self.cluster.node_id and node in live and int(raw_count):
                return True
        return False

    async def add(self, channel: str, member: Member) -> bool:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(f"{PREFIX}:presence:{channel}", self._field(member.user_id), 1)
            pipe.hset(
                f"{PREFIX}:presence-info:{channel}", member.user_id, json.dumps(member.user_info)
            )
            count, _ = await pipe.execute()
        return int(count) == 1 and not await self._present_elsewhere(channel, member.user_id)

    async def remove(self, channel: str, member: Member) -> bool:
        key = f"{PREFIX}:presence:{channel}"
        count = int(await self.redis.hincrby(key, self._field(member.user_id), -1))
        if count > 0:
            return False
        await self.redis.hdel(key, self._field(member.user_id))
        if await self._present_elsewhere(channel, member.user_id):
            return False
        await self.redis.hdel(f"{PREFIX}:presence-info:{channel}", member.user_id)
        return True

    async def members(self, channel: str) -> dict[str, Any]:
        live = await self.cluster.live_nodes()
        present: list[str] = []
        stale: list[str] = []
        for raw_field, raw_count in (
            await self.redis.hgetall(f"{PREFIX}:presence:{channel}")
        ).items():
            field = _text(raw_field)
            node, _, user = field.partition("|")
            if node not in live:
                stale.append(field)
            elif int(raw_count) > 0 and user not in present:
                present.append(user)
        if stale:
            await self.redis.hdel(f"{PREFIX}:presence:{channel}", *stale)
        if not present:
            return {}
        infos = await self.redis.hmget(f"{PREFIX}:presence-info:{channel}", present)
        return {
            user: json.loads(info) if info is not None else None
            for user, info in zip(present, infos, strict=True)
        }


async def redis_hub(
    redis: Redis, node_id: str, *, presence_limit: int = 100
) -> tuple[Hub, Cluster]:
    """A hub joined to the cluster: started, with backplane and presence on Redis."""
    cluster = Cluster(redis, node_id)
    backplane = RedisBackplane(redis, cluster)
    hub = Hub(presence=RedisPresence(redis, cluster), presence_limit=presence_limit)
    backplane.attach(hub)
    await cluster.start()
    await backplane.start()
    return hub, cluster


async def close_redis_hub(hub: Hub, cluster: Cluster) -> None:
    if isinstance(hub.backplane, RedisBackplane):
        await hub.backplane.stop()
    await cluster.stop()
