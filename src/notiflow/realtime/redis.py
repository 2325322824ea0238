"""Scale-out over Redis: events, subscription counts and presence shared by every node.

- **Events**: one Redis pub/sub channel per Pusher channel (``notiflow:rt:ch:<name>``). A node
  subscribes only while it has local subscribers, so an event reaches only nodes that need it.
  Messages carry the origin node (which already delivered locally) and the excluded socket id.
- **Nodes**: each node keeps ``notiflow:rt:node:<id>`` alive with a TTL heartbeat. Whatever a dead
  node left behind (counts, presence) is ignored at once and cleaned up lazily.
- **Counts**: ``notiflow:rt:counts:<node>`` maps channel -> local subscriptions, so the HTTP API
  on any process answers for the whole cluster.
- **Node stats**: a node that serves WebSocket connections also writes, with each heartbeat,
  ``notiflow:rt:stats:<node>`` (``connections``, ``started_at``, ``reported_at``; the same TTL),
  which the admin API reads (``notiflow.realtime.node_stats``).
- **Presence**: ``notiflow:rt:presence:<channel>`` maps ``<node>|<member key>`` -> connections,
  and ``notiflow:rt:presence-info:<channel>`` maps the member key (the user id's string form) to
  ``{"user_id", "user_info"}``, the id kept as its JSON type. A user is present while any live
  node counts a connection, so member_added/removed fire once per user cluster-wide.
- **Apps**: each app has a backplane and a presence store of its own, keyed under its prefix
  (``PusherApp.prefix``): the default app's is ``notiflow:rt`` (the keys above), another app's
  ``notiflow:rt:app:<id>`` (``...:app:<id>:ch:<name>`` and so on). Node liveness is shared.

What a node writes to Redis is a mirror of its own state (the hub's channels, its presence
members), written as absolute values, never increments: so a lost write, a Redis restarted empty
or a reconnect are all repaired by writing the mirror again. Counts and pub/sub subscriptions of
one loop tick go out together (one pipeline, one SUBSCRIBE), and at most ``MAX_IN_FLIGHT``
commands per process wait on Redis at once, so a connection storm queues instead of exhausting
redis-py's pool. While Redis is unreachable the node keeps serving its own clients (joins, leaves
and delivery are local) and one reader task reconnects with backoff; once it is back, the node
re-registers, resubscribes and rewrites its mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notiflow.kit.outages import REDIS
from notiflow.kit.retry import HALF_JITTER, Backoff, RetryPolicy
from notiflow.realtime.hub import Hub, MemoryPresence
from notiflow.realtime.protocol import Member

log = structlog.get_logger(__name__)

PREFIX = "notiflow:rt"
# What an unreachable Redis raises (refused, reset, timed out, pool exhausted); anything else is
# a defect and is logged as one.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# Redis commands of one process waiting at once. redis-py's pool raises past 100 connections
# (64 handshakes in flight did it); above this, commands queue on the event loop.
MAX_IN_FLIGHT = 32
# Reconnect backoff: the first retry at once-ish, then doubling to a cap that keeps a node's
# return within a couple of seconds of Redis's; jittered so nodes do not reconnect in lockstep.
RECONNECT_FIRST = 0.1
RECONNECT_MAX = 2.0
RECONNECT_RETRY = RetryPolicy(base=RECONNECT_FIRST, cap=RECONNECT_MAX, jitter=HALF_JITTER)
# How long a join waits for its Redis round before answering the client anyway (it is then
# reconciled with the rest of the node's state).
JOIN_WAIT = 5.0
# The reader checks this often whether someone else saw Redis go away.
READ_POLL = 1.0
# When another part of the node saw Redis fail, the reader asks its own connection (PING) and
# keeps it if the answer comes within this many seconds: a pub/sub connection that still works
# is not dropped (messages published while a new one subscribes would be lost).
PROBE_TIMEOUT = 2.0
PROBE_MESSAGE = b"notiflow-backplane-probe"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Link:
    """Whether this process reaches Redis. An outage is logged once when it starts and once when
    it ends, not once per failed command or retry."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.up = True
        self.gate = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._down_since = 0.0
        self._back = asyncio.Event()
        self._back.set()
        self._lost = asyncio.Event()

    def lost(self, error: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self._down_since = time.monotonic()
        self._back.clear()
        self._lost.set()
        log.warning("realtime_redis_unreachable", node=self.node_id, error=repr(error))
        # The process's view of Redis too (one outage however many parts of it notice).
        REDIS.failed(error, component="realtime_backplane")

    def restored(self) -> None:
        if self.up:
            return
        self.up = True
        self._lost.clear()
        self._back.set()
        log.info(
            "realtime_redis_restored",
            node=self.node_id,
            outage_seconds=round(time.monotonic() - self._down_since, 1),
        )
        REDIS.recovered(component="realtime_backplane")

    async def wait_up(self) -> None:
        await self._back.wait()


class Cluster:
    """Node liveness shared by the backplane and the presence store."""

    def __init__(
        self, redis: Redis, node_id: str, *, heartbeat: float = 10.0, ttl: float = 30.0
    ) -> None:
        self.redis = redis
        self.node_id = node_id
        self.heartbeat = heartbeat
        self.ttl = ttl
        self.link = Link(node_id)
        # The key prefix of every app whose backplane runs on this cluster (each has its own
        # subscription counts per node); the default app's is PREFIX.
        self.prefixes: list[str] = [PREFIX]
        self._task: asyncio.Task[None] | None = None
        # This node's open WebSocket connections, when it serves them (its stats are written
        # with each heartbeat); None for a process without a WebSocket server (the API).
        self.connections: Callable[[], int] | None = None
        self.started_at = time.time()

    def _counts_keys(self, node_id: str) -> list[str]:
        return [f"{prefix}:counts:{node_id}" for prefix in self.prefixes]

    async def start(self) -> None:
        """Register this node; with Redis unreachable now, start as in any outage (the
        backplane registers the node once Redis answers)."""
        try:
            await self.redis.delete(*self._counts_keys(self.node_id))
            await self._beat()
        except UNREACHABLE as error:
            self.link.lost(error)
        self._task = asyncio.create_task(self._beat_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.link.up:
            return  # nothing to say goodbye to; our heartbeat key expires on its own
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(
                    f"{PREFIX}:node:{self.node_id}",
                    f"{PREFIX}:stats:{self.node_id}",
                    *self._counts_keys(self.node_id),
                )
                pipe.srem(f"{PREFIX}:nodes", self.node_id)
                await pipe.execute()
        except UNREACHABLE as error:
            log.warning("realtime_leave_cluster_failed", node=self.node_id, error=repr(error))

    def register(self, pipe: Pipeline) -> None:
        pipe.set(f"{PREFIX}:node:{self.node_id}", "1", px=int(self.ttl * 1000))
        pipe.sadd(f"{PREFIX}:nodes", self.node_id)
        if self.connections is not None:
            stats = f"{PREFIX}:stats:{self.node_id}"
            pipe.hset(
                stats,
                mapping={
                    "connections": self.connections(),
                    "started_at": self.started_at,
                    "reported_at": time.time(),
                },
            )
            pipe.pexpire(stats, int(self.ttl * 1000))

    async def _beat(self) -> None:
        async with self.link.gate, self.redis.pipeline(transaction=False) as pipe:
            self.register(pipe)
            await pipe.execute()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            if not self.link.up:
                continue  # the backplane re-registers the node when Redis is back
            try:
                await self._beat()
            except UNREACHABLE as error:
                self.link.lost(error)
            except Exception:  # a defect must not stop the heartbeat for good
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
                pipe.delete(*[key for node in dead for key in self._counts_keys(node)])
                await pipe.execute()
        return {node for node, flag in zip(nodes, alive, strict=True) if flag is not None}


class RedisBackplane:
    """One app's channels across nodes (``prefix``: the app's keys, ``PusherApp.prefix``)."""

    def __init__(self, redis: Redis, cluster: Cluster, prefix: str = PREFIX) -> None:
        self.redis = redis
        self.cluster = cluster
        self.prefix = prefix
        if prefix not in cluster.prefixes:
            cluster.prefixes.append(prefix)
        self.link = cluster.link
        self.node = cluster.node_id.encode()
        self.hub: Hub | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._syncer: asyncio.Task[None] | None = None
        self._subscribed: set[str] = set()
        # Channels whose count (and pub/sub subscription) Redis has not seen yet, and the joins
        # waiting for that round.
        self._dirty: set[str] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._closing = False

    def attach(self, hub: Hub) -> None:
        self.hub = hub
        hub.backplane = self

    @property
    def connected(self) -> bool:
        """True while Redis is reachable and this node's state is mirrored there."""
        return self.link.up

    async def start(self) -> None:
        """Subscribe and write this node's state; with Redis unreachable now, serve local
        clients only and let the reader connect once Redis answers (as after an outage)."""
        connected = False
        if self.link.up:
            try:
                await self._connect()
                connected = True
            except UNREACHABLE as error:
                self.link.lost(error)
        self._reader = asyncio.create_task(self._read_forever(connected=connected))
        self._syncer = asyncio.create_task(self._sync_forever())

    async def stop(self) -> None:
        # redis-py can turn a cancellation in mid-command into a connection error, which the
        # loops would take for an outage: the flag ends them whatever they caught.
        self._closing = True
        for task in (self._syncer, self._reader):
            if task is None:
                continue
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # stopping must not fail because a task once did
                log.exception("realtime_backplane_task_failed")
        self._release_waiters()
        if self._pubsub is not None:
            with contextlib.suppress(*UNREACHABLE):
                await self._pubsub.aclose()

    # ------------------------------------------------------------------ what the hub calls

    async def joined(self, channel: str, first_here: bool) -> None:
        self._mark(channel)
        if not self.link.up:
            return  # served locally; the reconnect writes it
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), JOIN_WAIT)

    async def left(self, channel: str, last_here: bool) -> None:
        self._mark(channel)

    async def publish(self, channel: str, frame: bytes, except_socket_id: str | None) -> None:
        if not self.link.up:
            return  # other nodes cannot be reached; local subscribers already have it
        message = b"\n".join((self.node, (except_socket_id or "").encode(), frame))
        try:
            async with self.link.gate:
                await self.redis.publish(f"{self.prefix}:ch:{channel}", message)
        except UNREACHABLE as error:
            self.link.lost(error)

    async def connections_elsewhere(self, here: int) -> int | None:
        """Write this node's open connections of the app (``here``) and return those of the
        other live nodes; None while Redis is unreachable."""
        if not self.link.up:
            return None
        key = f"{self.prefix}:connections"
        node = self.cluster.node_id
        try:
            async with self.link.gate:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.hset(key, node, here)
                    pipe.hgetall(key)
                    _, entries = await pipe.execute()
                live = await self.cluster.live_nodes()
                counts = {_text(name): int(count) for name, count in entries.items()}
                stale = [name for name in counts if name not in live and name != node]
                if stale:
                    await self.redis.hdel(key, *stale)
        except UNREACHABLE as error:
            self.link.lost(error)
            return None
        return sum(count for name, count in counts.items() if name != node and name in live)

    async def channel_counts(self, prefix: str | None = None) -> dict[str, int]:
        if self.link.up:
            try:
                return await self._cluster_counts(prefix)
            except UNREACHABLE as error:
                self.link.lost(error)
        # This node's own subscribers are all that is known while Redis is away.
        channels = self.hub.channels if self.hub is not None else {}
        return {
            name: len(subscribers)
            for name, subscribers in channels.items()
            if prefix is None or name.startswith(prefix)
        }

    async def _cluster_counts(self, prefix: str | None) -> dict[str, int]:
        totals: dict[str, int] = {}
        async with self.link.gate:
            live = await self.cluster.live_nodes()
            async with self.redis.pipeline(transaction=False) as pipe:
                for node in live:
                    pipe.hgetall(f"{self.prefix}:counts:{node}")
                per_node = await pipe.execute()
        for counts in per_node:
            for raw_channel, raw_count in counts.items():
                channel, count = _text(raw_channel), int(raw_count)
                if count > 0 and (prefix is None or channel.startswith(prefix)):
                    totals[channel] = totals.get(channel, 0) + count
        return totals

    # ------------------------------------------------------------------ the mirror

    def _mark(self, channel: str) -> None:
        self._dirty.add(channel)
        self._wake.set()

    def _release_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _sync_forever(self) -> None:
        """Write the counts and subscriptions that changed since the last round, in one go."""
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if not self.link.up:
                self._release_waiters()  # their joins stand locally
                await self.link.wait_up()
                continue  # the reconnect wrote everything
            channels, self._dirty = self._dirty, set()
            waiters, self._waiters = self._waiters, []
            try:
                await self._sync(channels)
            except UNREACHABLE as error:
                self._dirty |= channels
                if not self._closing:
                    self.link.lost(error)
            except Exception:
                self._dirty |= channels
                log.exception("realtime_backplane_sync_failed")
                await asyncio.sleep(RECONNECT_MAX)
                self._wake.set()
            finally:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _sync(self, channels: set[str]) -> None:
        if self.hub is None or self._pubsub is None:
            return
        local = self.hub.channels
        subscribe = [name for name in channels if name in local and name not in self._subscribed]
        unsubscribe = [name for name in channels if name not in local and name in self._subscribed]
        if subscribe:
            self._subscribed.update(subscribe)
            await self._pubsub.subscribe(*[f"{self.prefix}:ch:{name}" for name in subscribe])
        if unsubscribe:
            self._subscribed.difference_update(unsubscribe)
            await self._pubsub.unsubscribe(*[f"{self.prefix}:ch:{name}" for name in unsubscribe])
        key = f"{self.prefix}:counts:{self.cluster.node_id}"
        counts = {name: len(local[name]) for name in channels if name in local}
        gone = [name for name in channels if name not in local]
        if not counts and not gone:
            return
        async with self.link.gate, self.redis.pipeline(transaction=False) as pipe:
            if counts:
                pipe.hset(key, mapping=counts)  # type: ignore[arg-type]  # redis-py's mapping type is invariant
            if gone:
                pipe.hdel(key, *gone)
            await pipe.execute()

    async def _connect(self) -> None:
        """A fresh pub/sub connection subscribed to every local channel, and this node's whole
        state written again (Redis may have come back empty)."""
        if self._pubsub is not None:
            with contextlib.suppress(*UNREACHABLE):
                await self._pubsub.aclose()
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        wanted = set(self.hub.channels) if self.hub is not None else set()
        # A pub/sub connection needs at least one subscription before it can be read.
        await self._pubsub.subscribe(
            f"{self.prefix}:node-inbox:{self.cluster.node_id}",
            *[f"{self.prefix}:ch:{name}" for name in wanted],
        )
        self._subscribed = wanted
        await self._restore()

    async def _restore(self) -> None:
        node = self.cluster.node_id
        key = f"{self.prefix}:counts:{node}"
        channels = self.hub.channels if self.hub is not None else {}
        presence = self.hub.presence if self.hub is not None else None
        # Channels still marked are synced again afterwards: one joined while this runs may
        # miss the SUBSCRIBE sent above.
        written: set[tuple[str, str]] = set()
        try:
            async with self.link.gate, self.redis.pipeline(transaction=False) as pipe:
                self.cluster.register(pipe)
                pipe.delete(key)
                if channels:
                    pipe.hset(key, mapping={name: len(subs) for name, subs in channels.items()})
                if isinstance(presence, RedisPresence):
                    written = presence.restore(pipe)
                await pipe.execute()
        except BaseException:
            if isinstance(presence, RedisPresence):
                presence.unwritten(written)
            raise

    async def _read_forever(self, *, connected: bool = True) -> None:
        backoff = Backoff(RECONNECT_RETRY)
        reconnect = not connected
        while not self._closing:
            try:
                if reconnect:
                    await self._connect()
                    backoff.reset()
                    self.link.restored()
                    self._wake.set()  # anything marked during the reconnect
                reconnect = True
                await self._listen()
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as error:
                if self._closing:
                    return
                self.link.lost(error)
            except Exception:
                # A defect, not an outage: say so, then start over rather than go deaf.
                log.exception("realtime_backplane_reader_failed")
                self.link.lost(RuntimeError("backplane reader failed"))
            await asyncio.sleep(backoff.next_delay())

    async def _listen(self) -> None:
        """Deliver messages from other nodes until this connection fails.

        Another part of the node may see Redis fail first (a publish, the heartbeat, a stale
        pooled connection after an outage). The reader then pings over its own connection: an
        answer means Redis is reachable and this subscription intact, so the link is restored
        in place (the node's state written again); no answer within ``PROBE_TIMEOUT`` ends the
        listening and the reader reconnects.
        """
        pubsub = self._pubsub
        assert pubsub is not None  # noqa: S101 - set by _connect() before this runs
        channel_prefix = f"{self.prefix}:ch:"
        probe_sent: float | None = None
        while not self._closing:
            if not self.link.up:
                if probe_sent is None:
                    await pubsub.ping(PROBE_MESSAGE)
                    probe_sent = time.monotonic()
                elif time.monotonic() - probe_sent > PROBE_TIMEOUT:
                    return
            timeout = READ_POLL if probe_sent is None else PROBE_TIMEOUT / 10
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            if message is None:
                continue
            if message.get("type") == "pong" and message.get("data") == PROBE_MESSAGE:
                if probe_sent is not None and not self.link.up:
                    await self._restore()
                    self.link.restored()
                    self._wake.set()  # joins and leaves of the outage
                probe_sent = None
                continue
            if message.get("type") != "message" or self.hub is None:
                continue
            redis_channel = _text(message["channel"])
            if not redis_channel.startswith(channel_prefix):
                continue
            try:
                origin, excluded, frame = message["data"].split(b"\n", 2)
            except ValueError:
                log.warning("realtime_backplane_bad_message", channel=redis_channel)
                continue
            if origin == self.node:
                continue  # delivered locally when it was published
            self.hub.deliver(redis_channel[len(channel_prefix) :], frame, excluded.decode() or None)


class RedisPresence:
    """Presence across nodes. This node's members are kept here too (``local``): they answer
    while Redis is unreachable and are written back when it returns."""

    def __init__(self, redis: Redis, cluster: Cluster, prefix: str = PREFIX) -> None:
        self.redis = redis
        self.cluster = cluster
        self.prefix = prefix
        self.link = cluster.link
        self.local = MemoryPresence()
        # (channel, member key) changed while Redis could not be written.
        self._unsynced: set[tuple[str, str]] = set()

    def _field(self, key: str) -> str:
        return f"{self.cluster.node_id}|{key}"

    def _write(self, pipe: Pipeline, channel: str, key: str) -> None:
        """This node's entry for one user, as it is now."""
        member, count = self.local.connections(channel, key)
        if member is not None and count:
            pipe.hset(f"{self.prefix}:presence:{channel}", self._field(key), count)
            pipe.hset(
                f"{self.prefix}:presence-info:{channel}",
                key,
                json.dumps({"user_id": member.user_id, "user_info": member.user_info}),
            )
        else:
            pipe.hdel(f"{self.prefix}:presence:{channel}", self._field(key))

    def restore(self, pipe: Pipeline) -> set[tuple[str, str]]:
        """Queue every entry of this node (and the removal of those that ended meanwhile);
        returns what was queued, for :meth:`unwritten` if the pipeline fails."""
        written, self._unsynced = self._unsynced, set()
        written.update((channel, key) for channel, key, _, _ in self.local.entries())
        for channel, key in written:
            self._write(pipe, channel, key)
        return written

    def unwritten(self, entries: set[tuple[str, str]]) -> None:
        self._unsynced |= entries

    async def _others(self, channel: str, key: str, entries: dict[Any, Any]) -> bool:
        """Whether another live node holds a connection of the member ``key``."""
        others = set()
        for raw_field, raw_count in entries.items():
            node, _, user = _text(raw_field).partition("|")
            if user == key and node != self.cluster.node_id and int(raw_count):
                others.add(node)
        if not others:
            return False
        async with self.link.gate:
            return bool(others & await self.cluster.live_nodes())

    async def _update(self, channel: str, key: str) -> dict[Any, Any] | None:
        """Write this node's entry and read the channel's entries; None while Redis is away."""
        if self.link.up:
            try:
                async with self.link.gate, self.redis.pipeline(transaction=False) as pipe:
                    self._write(pipe, channel, key)
                    pipe.hgetall(f"{self.prefix}:presence:{channel}")
                    results = await pipe.execute()
                entries: dict[Any, Any] = results[-1]
                return entries
            except UNREACHABLE as error:
                self.link.lost(error)
        self._unsynced.add((channel, key))
        return None

    async def add(self, channel: str, member: Member) -> bool:
        first_here = await self.local.add(channel, member)
        entries = await self._update(channel, member.key)
        if entries is None or not first_here:
            return first_here
        try:
            return not await self._others(channel, member.key, entries)
        except UNREACHABLE as error:
            self.link.lost(error)
            return True

    async def remove(self, channel: str, member: Member) -> bool:
        last_here = await self.local.remove(channel, member)
        entries = await self._update(channel, member.key)
        if entries is None or not last_here:
            return last_here
        try:
            if await self._others(channel, member.key, entries):
                return False
            async with self.link.gate:
                await self.redis.hdel(f"{self.prefix}:presence-info:{channel}", member.key)
        except UNREACHABLE as error:
            self.link.lost(error)
        return True

    async def members(self, channel: str) -> dict[str, Member]:
        here = await self.local.members(channel)
        if not self.link.up:
            return here
        try:
            async with self.link.gate:
                elsewhere = await self._cluster_members(channel)
        except UNREACHABLE as error:
            self.link.lost(error)
            return here
        return {**elsewhere, **here}

    async def _cluster_members(self, channel: str) -> dict[str, Member]:
        live = await self.cluster.live_nodes()
        present: list[str] = []
        stale: list[str] = []
        for raw_field, raw_count in (
            await self.redis.hgetall(f"{self.prefix}:presence:{channel}")
        ).items():
            field = _text(raw_field)
            node, _, user = field.partition("|")
            if node not in live:
                stale.append(field)
            elif int(raw_count) > 0 and user not in present:
                present.append(user)
        if stale:
            await self.redis.hdel(f"{self.prefix}:presence:{channel}", *stale)
        if not present:
            return {}
        infos = await self.redis.hmget(f"{self.prefix}:presence-info:{channel}", present)
        return {key: _stored_member(key, info) for key, info in zip(present, infos, strict=True)}


def _stored_member(key: str, stored: bytes | str | None) -> Member:
    """A member as a node wrote it; its key alone when the entry is gone (the member left
    between reading the counts and reading the entries)."""
    if stored is None:
        return Member(key)
    entry = json.loads(stored)
    return Member(entry["user_id"], entry["user_info"])


def backplane_status(hub: Hub) -> str:
    """``ok``, ``disabled`` (a single node) or the error a health check reports."""
    backplane = hub.backplane
    if not isinstance(backplane, RedisBackplane):
        return "disabled"
    return "ok" if backplane.connected else "error: redis unreachable, serving local clients only"


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
    """Leave the cluster; never fails because Redis is away (a clean shutdown exits 0)."""
    if isinstance(hub.backplane, RedisBackplane):
        await hub.backplane.stop()
    await cluster.stop()
