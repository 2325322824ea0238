"""Job throughput: how many job runs finished, were retried and failed, minute by minute, and
the queue's depth as sampled in each minute.

The runs of the last hours are counted where the jobs run, in one place every process can
read: a Redis hash per minute (``notiflow:jobs:minute:<epoch minute>``, kept two hours) when
the queue is Redis's, since workers are other processes than the API; without Redis the jobs
run in the process that serves the API, which counts them in memory. A run whose payload names
a tenant is also counted for that tenant, so a tenant's admins see their own share::

    throughput = build_throughput(redis)
    await throughput.record("ok", tenant_id)            # by the job runner, after each run
    await throughput.record_depth(42)                   # by the queue sampler, every few seconds
    minutes = await throughput.last_minutes(60, tenant_id)
    minutes[-1].finished, minutes[-1].tenant_failed, minutes[-1].queue_depth

Counting must never fail or slow down a job: a Redis outage loses the counts of its minutes
(said in the log by the outage's other observers), nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from redis.asyncio import Redis

from notiflow.kit.outages import REDIS_UNAVAILABLE_ERRORS

__all__ = [
    "KEEP_MINUTES",
    "JobThroughput",
    "MemoryThroughput",
    "MinuteCount",
    "RedisThroughput",
    "build_throughput",
]

# Minutes kept (and the most a reader may ask for).
KEEP_MINUTES = 120
# The longest a count may hold up the job that made it (Redis slow rather than down).
RECORD_TIMEOUT_SECONDS = 1.0
KEY_PREFIX = "notiflow:jobs:minute:"
# What a run's outcome is counted as: ok -> finished, retry -> retried, failed -> failed.
OUTCOMES = ("ok", "retry", "failed")
# The minute's field holding the queue depth last sampled in it.
DEPTH = "depth"


@dataclass(frozen=True, slots=True)
class MinuteCount:
    start: datetime
    finished: int
    retried: int
    failed: int
    # Runs whose payload named the tenant asked about.
    tenant_finished: int
    tenant_retried: int
    tenant_failed: int
    # The queue's depth last sampled in that minute; None where no sample was taken.
    queue_depth: int | None


class JobThroughput(Protocol):
    async def record(self, outcome: str, tenant_id: str | None) -> None:
        """Count one run's ``outcome`` (``ok``, ``retry`` or ``failed``) now."""
        ...

    async def record_depth(self, depth: int) -> None:
        """Keep ``depth`` as the queue's depth of this minute (the last sample wins)."""
        ...

    async def last_minutes(self, minutes: int, tenant_id: uuid.UUID) -> list[MinuteCount]:
        """The last ``minutes`` minutes, oldest first (the current one, still filling, last)."""
        ...


def _minute(now: float | None = None) -> int:
    return math.floor((time.time() if now is None else now) / 60)


def _fields(outcome: str, tenant_id: str | None) -> list[str]:
    return [outcome] if not tenant_id else [outcome, f"{tenant_id}:{outcome}"]


def _count(minute: int, counts: dict[str, int], tenant: str) -> MinuteCount:
    return MinuteCount(
        start=datetime.fromtimestamp(minute * 60, UTC),
        finished=counts.get("ok", 0),
        retried=counts.get("retry", 0),
        failed=counts.get("failed", 0),
        tenant_finished=counts.get(f"{tenant}:ok", 0),
        tenant_retried=counts.get(f"{tenant}:retry", 0),
        tenant_failed=counts.get(f"{tenant}:failed", 0),
        queue_depth=counts.get(DEPTH),
    )


def _window(minutes: int) -> range:
    minutes = max(1, min(minutes, KEEP_MINUTES))
    current = _minute()
    return range(current - minutes + 1, current + 1)


class MemoryThroughput:
    """The counts of this process's own runs (the embedded queue's)."""

    def __init__(self) -> None:
        self._minutes: dict[int, Counter[str]] = {}

    def _current(self) -> Counter[str]:
        minute = _minute()
        counts = self._minutes.get(minute)
        if counts is None:
            counts = self._minutes[minute] = Counter()
            for old in [key for key in self._minutes if key <= minute - KEEP_MINUTES]:
                del self._minutes[old]
        return counts

    async def record(self, outcome: str, tenant_id: str | None) -> None:
        self._current().update(_fields(outcome, tenant_id))

    async def record_depth(self, depth: int) -> None:
        self._current()[DEPTH] = depth

    async def last_minutes(self, minutes: int, tenant_id: uuid.UUID) -> list[MinuteCount]:
        return [
            _count(minute, dict(self._minutes.get(minute, {})), str(tenant_id))
            for minute in _window(minutes)
        ]


class RedisThroughput:
    """The counts of every worker's runs, in Redis."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def record(self, outcome: str, tenant_id: str | None) -> None:
        key = f"{KEY_PREFIX}{_minute()}"
        with contextlib.suppress(*REDIS_UNAVAILABLE_ERRORS, TimeoutError):
            async with (
                asyncio.timeout(RECORD_TIMEOUT_SECONDS),
                self.redis.pipeline(transaction=False) as pipe,
            ):
                for field in _fields(outcome, tenant_id):
                    pipe.hincrby(key, field, 1)
                pipe.expire(key, KEEP_MINUTES * 60)
                await pipe.execute()

    async def record_depth(self, depth: int) -> None:
        key = f"{KEY_PREFIX}{_minute()}"
        with contextlib.suppress(*REDIS_UNAVAILABLE_ERRORS, TimeoutError):
            async with (
                asyncio.timeout(RECORD_TIMEOUT_SECONDS),
                self.redis.pipeline(transaction=False) as pipe,
            ):
                pipe.hset(key, DEPTH, depth)
                pipe.expire(key, KEEP_MINUTES * 60)
                await pipe.execute()

    async def last_minutes(self, minutes: int, tenant_id: uuid.UUID) -> list[MinuteCount]:
        tenant = str(tenant_id)
        fields = [*OUTCOMES, *(f"{tenant}:{outcome}" for outcome in OUTCOMES), DEPTH]
        window = _window(minutes)
        async with self.redis.pipeline(transaction=False) as pipe:
            for minute in window:
                pipe.hmget(f"{KEY_PREFIX}{minute}", fields)
            rows = await pipe.execute()
        return [
            _count(
                minute,
                {
                    field: int(value)
                    for field, value in zip(fields, row, strict=True)
                    if value is not None
                },
                tenant,
            )
            for minute, row in zip(window, rows, strict=True)
        ]


def build_throughput(redis: Redis | None) -> JobThroughput:
    """Where a process counts job runs: Redis when its queue is Redis's, else in memory."""
    return RedisThroughput(redis) if redis is not None else MemoryThroughput()
