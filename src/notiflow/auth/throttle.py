"""Login throttling: fixed-window counters of failed logins per account and per client address.

The counters live in Redis when it is configured, so every API process shares them, and in memory
otherwise. While Redis is unreachable each process counts in its own memory: the limit then holds
per process instead of across them, and logins keep working.

A login takes a slot of both counters *before* its password is checked, so concurrent attempts
cannot overshoot a limit; a successful one clears its account's counter and gives its address slot
back, which leaves both counting failures only::

    throttle = LoginThrottle.from_settings(settings, redis)
    refused = await throttle.begin(email, address)      # a Refusal: answer 429, check nothing
    ...
    await throttle.succeeded(email, address)            # after a right password
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from notiflow.config import Settings

log = structlog.get_logger(__name__)

T = TypeVar("T")

KEY_PREFIX = "notiflow:login-throttle"
# A Redis call slower than this counts as Redis being down for this login (the memory counters
# answer instead): a login must not hang on a blackholed Redis.
REDIS_TIMEOUT_SECONDS = 0.5
# After a failure Redis is left alone this long, so an outage costs one timeout per interval
# rather than one per login.
REDIS_RETRY_SECONDS = 5.0
# Beyond this many keys the memory counters drop expired ones, then the oldest: a flood of
# distinct emails or addresses cannot grow a process without bound.
MEMORY_MAX_KEYS = 100_000

# INCR and set the window's expiry atomically (also repairing a key left without one).
_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
# DECR only a live, positive counter: a missing key must not come back as -1 without expiry.
_GIVE_BACK = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Hit:
    count: int
    seconds_left: float


class WindowCounters(Protocol):
    async def hit(self, key: str, window_seconds: int) -> Hit: ...

    async def give_back(self, key: str) -> None: ...

    async def clear(self, key: str) -> None: ...


class MemoryCounters:
    """Counters of one process (monotonic clock)."""

    def __init__(self, max_keys: int = MEMORY_MAX_KEYS) -> None:
        self._counts: dict[str, tuple[int, float]] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, window_seconds: int) -> Hit:
        now = time.monotonic()
        count, expires_at = self._counts.get(key, (0, 0.0))
        if expires_at <= now:
            count, expires_at = 0, now + window_seconds
            self._counts.pop(key, None)  # re-inserted last: the dict stays ordered by age
        self._counts[key] = (count + 1, expires_at)
        if len(self._counts) > self._max_keys:
            self._prune(now)
        return Hit(count + 1, expires_at - now)

    async def give_back(self, key: str) -> None:
        entry = self._counts.get(key)
        if entry is not None and entry[0] > 0:
            self._counts[key] = (entry[0] - 1, entry[1])

    async def clear(self, key: str) -> None:
        self._counts.pop(key, None)

    def _prune(self, now: float) -> None:
        self._counts = {key: entry for key, entry in self._counts.items() if entry[1] > now}
        while len(self._counts) > self._max_keys:
            del self._counts[next(iter(self._counts))]


class RedisCounters:
    """Counters shared by every process that uses this Redis."""

    def __init__(self, redis: Redis) -> None:
        self._hit = redis.register_script(_HIT)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._redis = redis

    async def hit(self, key: str, window_seconds: int) -> Hit:
        count, ttl_ms = await self._hit(keys=[key], args=[window_seconds * 1000])
        return Hit(int(count), int(ttl_ms) / 1000)

    async def give_back(self, key: str) -> None:
        await self._give_back(keys=[key])

    async def clear(self, key: str) -> None:
        await self._redis.delete(key)


class FallbackCounters:
    """Redis counters, or the memory ones while Redis does not answer (logged once each way)."""

    def __init__(self, primary: WindowCounters, fallback: MemoryCounters) -> None:
        self.primary = primary
        self.fallback = fallback
        self._down_until: float | None = None

    async def hit(self, key: str, window_seconds: int) -> Hit:
        return await self._call(
            lambda counters: counters.hit(key, window_seconds),
        )

    async def give_back(self, key: str) -> None:
        await self._call(lambda counters: counters.give_back(key))

    async def clear(self, key: str) -> None:
        await self._call(lambda counters: counters.clear(key))

    async def _call(self, operation: Callable[[WindowCounters], Awaitable[T]]) -> T:
        if self._down_until is not None and time.monotonic() < self._down_until:
            return await operation(self.fallback)
        try:
            with anyio.fail_after(REDIS_TIMEOUT_SECONDS):
                result = await operation(self.primary)
        except (RedisError, OSError, TimeoutError) as error:
            if self._down_until is None:
                log.warning(
                    "login_throttle_redis_unavailable",
                    error=f"{type(error).__name__}: {error}",
                    fallback="memory counters of this process",
                )
            self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
            return await operation(self.fallback)
        if self._down_until is not None:
            self._down_until = None
            log.info("login_throttle_redis_recovered")
        return result


@dataclass(frozen=True, slots=True)
class Limit:
    kind: str  # "account" or "address"
    max_failures: int
    window_seconds: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """A login refused by a limit: answer 429 with ``retry_after``. ``first`` is true for the
    first refusal of the key's window only (the one worth an audit entry)."""

    limit: Limit
    retry_after: float
    first: bool


def account_key(email: str) -> str:
    # Hashed: emails are not kept in Redis. Normalized like login normalizes them.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"{KEY_PREFIX}:account:{digest}"


def address_key(address: str | None) -> str:
    return f"{KEY_PREFIX}:address:{address_bucket(address)}"


def address_bucket(address: str | None) -> str:
    """The client's address, or its /64 for IPv6 (one host usually holds the whole /64)."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class LoginThrottle:
    def __init__(self, counters: WindowCounters, *, account: Limit, address: Limit) -> None:
        self.counters = counters
        self.account = account
        self.address = address

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None) -> LoginThrottle:
        counters: WindowCounters = MemoryCounters()
        if redis is not None:
            counters = FallbackCounters(RedisCounters(redis), MemoryCounters())
        return cls(
            counters,
            account=Limit(
                "account",
                settings.login_max_failures_per_account,
                settings.login_account_window_seconds,
            ),
            address=Limit(
                "address",
                settings.login_max_failures_per_address,
                settings.login_address_window_seconds,
            ),
        )

    async def begin(self, email: str, address: str | None) -> Refusal | None:
        """Take a slot for this attempt in both counters; a Refusal when either is full.

        The address is checked first: a refused address does not count against the account, so
        a flood from elsewhere locks an account out only through its own failures.
        """
        by_address = await self.counters.hit(address_key(address), self.address.window_seconds)
        if by_address.count > self.address.max_failures:
            return self._refusal(self.address, by_address)
        by_account = await self.counters.hit(account_key(email), self.account.window_seconds)
        if by_account.count > self.account.max_failures:
            # This attempt checks no password: its address slot is not a failure.
            await self.counters.give_back(address_key(address))
            return self._refusal(self.account, by_account)
        return None

    async def succeeded(self, email: str, address: str | None) -> None:
        await self.counters.clear(account_key(email))
        await self.counters.give_back(address_key(address))

    @staticmethod
    def _refusal(limit: Limit, hit: Hit) -> Refusal:
        return Refusal(limit, hit.seconds_left, first=hit.count == limit.max_failures + 1)
