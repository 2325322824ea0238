"""Cache channels: the last event published to each ``cache-`` channel, replayed on subscribe.

A cache channel (``cache-``, ``private-cache-``, ``presence-cache-``, ``private-encrypted-cache-``)
remembers the last event the server published to it (through the Pusher HTTP API or
notiflow's own broadcasts; client events are relayed but never cached, as with Pusher) for
``NOTIFLOW_WS_CACHE_TTL_SECONDS``. A connection that subscribes gets, right after
``pusher_internal:subscription_succeeded``, that event exactly as it was published, or
``pusher:cache_miss`` when there is none::

    hub.cache = ChannelCache(RedisCacheStore(redis, cluster.link), ttl=1800)
    await hub.publish("cache-score.7", "ScoreChanged", '{"home":2}')  # remembered, delivered

    replay = cache_replay(hub, "cache-score.7", connection)  # a new subscriber
    await hub.join("cache-score.7", replay, None)  # what is published meanwhile is held
    connection.enqueue(subscription_succeeded)
    await replay.finish()  # the cached event (or pusher:cache_miss), then what was held

The events live in Redis (``notiflow:rt:cache:<channel>``, under the app's prefix for the apps of
``NOTIFLOW_PUSHER_APPS``, expiring by themselves) when the
cluster is configured, so any node replays what any process published; in this process's memory
otherwise. What happens while Redis is unreachable is in :class:`RedisCacheStore`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis

from notiflow.realtime import protocol
from notiflow.realtime.hub import Hub, Subscriber, websocket_frame
from notiflow.realtime.redis import PREFIX, UNREACHABLE, Link

log = structlog.get_logger(__name__)

CACHE_PREFIXES = ("cache-", "private-cache-", "presence-cache-", "private-encrypted-cache-")
CACHE_MISS = "pusher:cache_miss"
# Pusher keeps a cached event "up to 30 minutes".
DEFAULT_TTL_SECONDS = 1800.0


def is_cache_channel(channel: str) -> bool:
    return channel.startswith(CACHE_PREFIXES)


def cache_miss_message(channel: str) -> bytes:
    """``pusher:cache_miss`` for ``channel``, without data, as Soketi and Reverb send it."""
    return protocol.encode({"event": CACHE_MISS, "channel": channel})


@dataclass(frozen=True, slots=True)
class CachedEvent:
    message: bytes  # {"event", "channel", "data"}: exactly what the subscribers received
    ttl: float  # seconds before it expires

    def attribute(self) -> dict[str, Any]:
        """The ``cache`` attribute of the HTTP API's channel info: the cached event as a
        subscriber receives it, and the whole seconds it has left."""
        return {"value": self.message.decode(), "ttl": math.ceil(self.ttl)}


class CacheStore(Protocol):
    async def put(self, channel: str, message: bytes, ttl: float) -> None:
        """Keep ``message`` as ``channel``'s last event for ``ttl`` seconds."""
        ...

    async def get(self, channel: str) -> CachedEvent | None: ...


class MemoryCacheStore:
    """The cache of a process on its own. Expired entries are dropped when read, and all of them
    once per TTL period, so memory is bounded by what is published within one TTL."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[bytes, float]] = {}  # channel -> (message, expires at)
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    async def put(self, channel: str, message: bytes, ttl: float) -> None:
        now = self._clock()
        self._entries[channel] = (message, now + ttl)
        if now >= self._next_sweep:
            self._next_sweep = now + ttl
            self._entries = {name: entry for name, entry in self._entries.items() if entry[1] > now}

    async def get(self, channel: str) -> CachedEvent | None:
        entry = self._entries.get(channel)
        if entry is None:
            return None
        message, expires_at = entry
        left = expires_at - self._clock()
        if left <= 0:
            del self._entries[channel]
            return None
        return CachedEvent(message, left)

    def entries(self) -> dict[str, CachedEvent]:
        """Every entry not expired yet (the expired ones are dropped)."""
        now = self._clock()
        self._entries = {
            channel: entry for channel, entry in self._entries.items() if entry[1] > now
        }
        return {
            channel: CachedEvent(message, expires_at - now)
            for channel, (message, expires_at) in self._entries.items()
        }

    def forget(self, written: dict[str, CachedEvent]) -> None:
        """Drop the entries of ``written`` that have not been replaced since."""
        for channel, cached in written.items():
            entry = self._entries.get(channel)
            if entry is not None and entry[0] is cached.message:
                del self._entries[channel]


class RedisCacheStore:
    """The cluster's cache: one Redis key per channel, ``SET ... PX``, so Redis expires it.

    While Redis is unreachable the node keeps serving its own clients, cache included: what this
    process publishes meanwhile is kept here (and only that: what other processes cached is not
    known here until Redis answers). Once Redis answers, the next read or write here hands it to
    Redis for the channels Redis has nothing for (a Redis restarted empty); an event Redis kept
    through the outage, or got from another node since, is not overwritten, since which one is
    newer cannot be told."""

    def __init__(
        self,
        redis: Redis,
        link: Link,
        *,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = PREFIX,
    ) -> None:
        self.redis = redis
        self.link = link
        self.prefix = prefix  # the app's (PusherApp.prefix)
        self.local = MemoryCacheStore(clock)
        # One write-back at a time, and this process's next event goes to Redis after it.
        self._write_back_lock = asyncio.Lock()

    def key(self, channel: str) -> str:
        return f"{self.prefix}:cache:{channel}"

    async def put(self, channel: str, message: bytes, ttl: float) -> None:
        if self.link.up:
            try:
                await self._write_back()
                async with self.link.gate:
                    await self.redis.set(self.key(channel), message, px=_milliseconds(ttl))
                return
            except UNREACHABLE as error:
                self.link.lost(error)
        await self.local.put(channel, message, ttl)

    async def get(self, channel: str) -> CachedEvent | None:
        if self.link.up:
            try:
                await self._write_back()
                async with self.link.gate, self.redis.pipeline(transaction=False) as pipe:
                    pipe.get(self.key(channel))
                    pipe.pttl(self.key(channel))
                    message, left_ms = await pipe.execute()
                if message is None or left_ms == -2:  # -2: expired between the two commands
                    return None
                return CachedEvent(bytes(message), max(int(left_ms), 0) / 1000)
            except UNREACHABLE as error:
                self.link.lost(error)
        return await self.local.get(channel)

    async def _write_back(self) -> None:
        """Hand what was cached here during an outage to Redis (where it has nothing for the
        channel), then forget it here. Raises what an unreachable Redis raises (the entries then
        stay here)."""
        if not len(self.local):
            return
        async with self._write_back_lock:
            written = self.local.entries()
            if written:
                async with self.link.gate, self.redis.pipeline(transaction=False) as pipe:
                    for channel, cached in written.items():
                        key = self.key(channel)
                        pipe.set(key, cached.message, px=_milliseconds(cached.ttl), nx=True)
                    await pipe.execute()
            self.local.forget(written)
            if written:
                log.info("realtime_cache_written_back", channels=len(written))


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class ChannelCache:
    """What the hub caches (``Hub.cache``): the last event of every cache channel, for ``ttl``
    seconds, in ``store`` (Redis for a cluster, memory for a single process)."""

    def __init__(self, store: CacheStore, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self.store = store
        self.ttl = ttl
        # Told of each subscription that found nothing cached: where a cache_miss webhook
        # plugs in (called once per such subscription; de-duplicating is the hook's to do).
        self.on_miss: Callable[[str], Awaitable[None]] | None = None

    def caches(self, channel: str) -> bool:
        return is_cache_channel(channel)

    async def remember(self, channel: str, message: bytes) -> None:
        """Keep ``message`` (the event as built for the subscribers) as ``channel``'s last.
        Never fails the publish it is part of: the event is still delivered."""
        try:
            await self.store.put(channel, message, self.ttl)
        except Exception:
            log.exception("realtime_cache_write_failed", channel=channel)

    async def cached(self, channel: str) -> CachedEvent | None:
        if not is_cache_channel(channel):
            return None
        return await self.store.get(channel)

    async def missed(self, channel: str) -> None:
        """A subscriber of ``channel`` found nothing cached (and got ``pusher:cache_miss``):
        the one place a cache miss is told beyond the subscriber."""
        if self.on_miss is None:
            return
        try:
            await self.on_miss(channel)
        except Exception:
            log.exception("realtime_cache_miss_hook_failed", channel=channel)


class CacheReplay:
    """Stands in for a connection in a cache channel while it subscribes.

    Frames published to the channel meanwhile are held, so the connection gets
    ``subscription_succeeded``, then the replay, then what was held, in that order. When what
    was held includes a server event, it is at least as new as anything the cache could give,
    so there is no replay (and no miss): a replay after it would take the client back to an
    older state. An event published while a client subscribes may reach it twice, as the replay
    and live."""

    __slots__ = ("cache", "channel", "held", "hub", "socket_id", "subscriber")

    def __init__(self, hub: Hub, cache: ChannelCache, channel: str, subscriber: Subscriber):
        self.hub = hub
        self.cache = cache
        self.channel = channel
        self.subscriber = subscriber
        self.socket_id = subscriber.socket_id
        self.held: list[bytes] = []

    def enqueue(self, frame: bytes) -> None:
        self.held.append(frame)

    async def finish(self) -> None:
        """Queue the replay and what was held to the connection, and give the channel back to
        it. Call once its subscription_succeeded is queued."""
        try:
            cached = await self.cache.cached(self.channel)
        except Exception:  # answered as a miss: the client then fetches the state itself
            log.exception("realtime_cache_read_failed", channel=self.channel)
            cached = None
        subscribers = self.hub.channels.get(self.channel)
        current = subscribers.get(self.socket_id) if subscribers is not None else None
        if subscribers is None or current is not self:
            if isinstance(current, CacheReplay):  # subscribed again meanwhile: it takes over
                current.held[:0] = self.held
            return  # otherwise unsubscribed or gone meanwhile
        missed = False
        if not any(_is_server_event(frame) for frame in self.held):
            if cached is not None:
                self.subscriber.enqueue(websocket_frame(cached.message))
            else:
                self.subscriber.enqueue(websocket_frame(cache_miss_message(self.channel)))
                missed = True
        for frame in self.held:
            self.subscriber.enqueue(frame)
        self.held = []
        subscribers[self.socket_id] = self.subscriber
        if missed:
            if self.hub.webhooks is not None:  # the cache_miss webhook (never blocks)
                self.hub.webhooks.cache_miss(self.channel)
            await self.cache.missed(self.channel)


def cache_replay(hub: Hub, channel: str, subscriber: Subscriber) -> CacheReplay | None:
    """The stand-in to subscribe with when ``channel`` is a cache channel of ``hub``."""
    cache = hub.cache
    if isinstance(cache, ChannelCache) and cache.caches(channel):
        return CacheReplay(hub, cache, channel, subscriber)
    return None


async def cache_attribute(hub: Hub, channel: str) -> dict[str, Any] | None:
    """``{"value", "ttl"}`` of ``channel``'s cached event; None when nothing is cached."""
    cache = hub.cache
    if not isinstance(cache, ChannelCache):
        return None
    cached = await cache.cached(channel)
    return cached.attribute() if cached is not None else None


def _is_server_event(frame: bytes) -> bool:
    """Whether a framed message is an event the server published (not a ``pusher:`` or
    ``pusher_internal:`` message, not a client event). Only held frames are parsed."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    try:
        message = json.loads(frame[start:])
    except ValueError:
        return False
    event = message.get("event") if isinstance(message, dict) else None
    return isinstance(event, str) and not event.startswith(("pusher", "client-"))
