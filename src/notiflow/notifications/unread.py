"""The unread-count cache: Redis when configured, process memory otherwise.

Entries are tagged with a per-(user, tenant) *generation*. Every change to a user's unread set bumps
the generation after commit; a reader that computed a count from the database before the bump can
only store it under the old generation, which no later read accepts. So a slow reader can never
put a stale count back into the cache (the usual delete-then-refill race).

The cache is never the only source: while Redis is unreachable, counts come from the database
and the outage is told once (:mod:`notiflow.kit.outages`). A change whose invalidation could
not reach Redis is made up for once it is back: one shared *epoch* is bumped, which retires every
cached count at once (each is recomputed on its next read).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Protocol

from redis.asyncio import Redis

from notiflow.kit.outages import REDIS, REDIS_UNAVAILABLE_ERRORS

UserTenant = tuple[uuid.UUID, uuid.UUID]

# The generation get() returns when it could not read one: store() keeps nothing under it.
UNCACHEABLE = -1


class UnreadCountCache(Protocol):
    async def get(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> tuple[int | None, int]:
        """Return (cached count or None, current generation)."""
        ...

    async def store(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, generation: int, count: int
    ) -> None: ...

    async def invalidate(self, keys: Iterable[UserTenant]) -> None: ...


class MemoryUnreadCountCache:
    """Single-process cache for the embedded deployment."""

    def __init__(self, ttl_seconds: int = 300) -> None:
        self._ttl = ttl_seconds
        self._generations: dict[UserTenant, int] = {}
        self._entries: dict[UserTenant, tuple[int, int, float]] = {}

    async def get(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> tuple[int | None, int]:
        key = (user_id, tenant_id)
        generation = self._generations.get(key, 0)
        entry = self._entries.get(key)
        if entry is not None:
            entry_generation, count, expires = entry
            if entry_generation == generation and expires > time.monotonic():
                return count, generation
        return None, generation

    async def store(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, generation: int, count: int
    ) -> None:
        key = (user_id, tenant_id)
        if self._generations.get(key, 0) == generation:
            self._entries[key] = (generation, count, time.monotonic() + self._ttl)

    async def invalidate(self, keys: Iterable[UserTenant]) -> None:
        for key in keys:
            self._generations[key] = self._generations.get(key, 0) + 1
            self._entries.pop(key, None)


class RedisUnreadCountCache:
    """Shared cache for scale-out: one MGET per read, one script call per thousand changes.

    A generation as get() returns it folds in the epoch (``epoch * EPOCH_SPAN + generation``),
    so an entry stored before an epoch bump never matches again.
    """

    # Generation keys outlive every count entry, so an expired generation can never
    # make an old entry look current again.
    GENERATION_TTL_SECONDS = 7 * 24 * 3600

    INVALIDATE_BATCH = 1_000
    # Far above any per-user generation (one INCR per change, keys expire after a week).
    EPOCH_SPAN = 1 << 40
    # After a failed call, Redis is left alone this long (reads go to the database): a Redis
    # that does not answer at all costs a socket timeout per call, not per request.
    RETRY_SECONDS = 1.0
    # KEYS: generation, count, generation, count, ...; ARGV[1]: generation TTL.
    _INVALIDATE_LUA = """
    local ttl = tonumber(ARGV[1])
    for i = 1, #KEYS, 2 do
        redis.call('INCR', KEYS[i])
        redis.call('EXPIRE', KEYS[i], ttl)
        redis.call('DEL', KEYS[i + 1])
    end
    return #KEYS / 2
    """

    def __init__(self, redis: Redis, ttl_seconds: int = 300, prefix: str = "notiflow") -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._prefix = prefix
        self._invalidate = redis.register_script(self._INVALIDATE_LUA)
        self._epoch_key = f"{prefix}:unread-epoch"
        # An invalidation was lost to an outage: the epoch must be bumped before trusting
        # Redis again.
        self._epoch_bump_owed = False
        self._retry_at = 0.0

    def _available(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _unavailable(self, error: BaseException, operation: str) -> None:
        self._retry_at = time.monotonic() + self.RETRY_SECONDS
        REDIS.failed(error, component="unread_count_cache", operation=operation)

    async def _settle_epoch(self) -> None:
        """Retire every cached count if one of our invalidations was lost (raises while Redis
        is still unreachable)."""
        if self._epoch_bump_owed:
            await self._redis.incr(self._epoch_key)
            self._epoch_bump_owed = False

    def _keys(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> tuple[str, str]:
        suffix = f"{user_id}:{tenant_id}"
        return f"{self._prefix}:unread-gen:{suffix}", f"{self._prefix}:unread:{suffix}"

    async def get(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> tuple[int | None, int]:
        if not self._available():
            return None, UNCACHEABLE
        generation_key, count_key = self._keys(user_id, tenant_id)
        began = time.monotonic()
        try:
            await self._settle_epoch()
            raw_epoch, raw_generation, raw_entry = await self._redis.mget(
                self._epoch_key, generation_key, count_key
            )
        except REDIS_UNAVAILABLE_ERRORS as error:
            self._unavailable(error, "get")
            return None, UNCACHEABLE
        REDIS.recovered(component="unread_count_cache", started=began)
        generation = int(raw_generation) if raw_generation is not None else 0
        if raw_epoch is not None:
            generation += int(raw_epoch) * self.EPOCH_SPAN
        if raw_entry is not None:
            entry_generation, _, count = _text(raw_entry).partition(":")
            if int(entry_generation) == generation:
                return int(count), generation
        return None, generation

    async def store(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, generation: int, count: int
    ) -> None:
        if generation == UNCACHEABLE or not self._available():
            return
        _, count_key = self._keys(user_id, tenant_id)
        try:
            await self._redis.set(count_key, f"{generation}:{count}", ex=self._ttl)
        except REDIS_UNAVAILABLE_ERRORS as error:
            self._unavailable(error, "store")

    async def invalidate(self, keys: Iterable[UserTenant]) -> None:
        if not self._available():
            self._epoch_bump_owed = True
            return
        try:
            await self._settle_epoch()
            await self._invalidate_batches(keys)
        except REDIS_UNAVAILABLE_ERRORS as error:
            # Whatever part was not done, the epoch retires it once Redis is back.
            self._epoch_bump_owed = True
            self._unavailable(error, "invalidate")

    async def _invalidate_batches(self, keys: Iterable[UserTenant]) -> None:
        # One server-side script call per thousand users: a 10,000-member fan-out costs ten
        # round trips instead of 30,000 pipelined commands (and their parsed replies).
        batch: list[str] = []
        for user_id, tenant_id in keys:
            batch.extend(self._keys(user_id, tenant_id))
            if len(batch) >= 2 * self.INVALIDATE_BATCH:
                await self._invalidate(keys=batch, args=[self.GENERATION_TTL_SECONDS])
                batch = []
        if batch:
            await self._invalidate(keys=batch, args=[self.GENERATION_TTL_SECONDS])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
