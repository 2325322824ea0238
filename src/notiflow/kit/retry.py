"""Retry timing: how long to wait before the next try, for every job, delivery and loop.

One exponential policy serves them all: the wait after the ``attempt``-th failed try is
``base * 2^(attempt - 1)``, at most ``cap``, times a random factor (the jitter) so that the tries
of many jobs failing together do not come back in the same second::

    policy = RetryPolicy(base=30.0, cap=3600.0)       # 15-30 s, 30-60 s, 60-120 s, ... <= 1 h
    next_attempt_at = now + timedelta(seconds=policy.delay(attempts))
    policy.delay(attempts, retry_after=120.0)          # the provider's Retry-After, if longer

A loop waiting out an outage keeps its count of failed tries in a :class:`Backoff`::

    backoff = Backoff(RetryPolicy(base=0.5, cap=30.0, jitter=FULL_JITTER))
    while True:
        try:
            await work()
        except ConnectionError:
            await asyncio.sleep(backoff.next_delay())
            continue
        backoff.reset()

Tries spread over a fixed time instead (an email's, over the retry horizon) use
:class:`HorizonPolicy`. Giving up after the last try is :mod:`notiflow.kit.failures`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = [
    "FULL_JITTER",
    "HALF_JITTER",
    "Backoff",
    "HorizonPolicy",
    "Jitter",
    "RetryPolicy",
]


@dataclass(frozen=True, slots=True)
class Jitter:
    """A wait's random factor, drawn uniformly from ``[low, high)``."""

    low: float
    high: float

    def apply(self, delay: float) -> float:
        factor = self.low + (self.high - self.low) * random.random()  # noqa: S311 - not security
        return delay * factor


# Anywhere from nothing to the whole wait: spreads a crowd of loops the most (AWS's "full jitter").
FULL_JITTER = Jitter(0.0, 1.0)
# Half to all of the wait: spread out, but never much earlier than the schedule says.
HALF_JITTER = Jitter(0.5, 1.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: ``base`` doubling after each failed try up to ``cap``, with jitter.

    A wait the caller was told by the other side (an HTTP ``Retry-After``, a rate limit's reset
    time) replaces the computed one when it is longer, up to ``retry_after_cap``.
    """

    base: float
    cap: float = math.inf
    jitter: Jitter = HALF_JITTER
    retry_after_cap: float = math.inf

    def ceiling(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failed try (from 1) before jitter."""
        try:
            # ldexp scales by a power of two exactly, like ``base * 2.0 ** n``, and only
            # overflows when the result does (a loop that failed a few thousand times).
            exponential = math.ldexp(self.base, attempt - 1)
        except OverflowError:
            exponential = math.inf
        return min(self.cap, exponential)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``attempt``-th failed try (from 1)."""
        delay = self.jitter.apply(self.ceiling(attempt))
        if retry_after is not None and retry_after > delay:
            return min(retry_after, self.retry_after_cap)
        return delay


@dataclass(frozen=True, slots=True)
class HorizonPolicy:
    """``tries`` tries spread over ``horizon`` seconds: each wait is ``growth`` times the one
    before and together they add up to the horizon before jitter (which should only lengthen a
    wait, so that the horizon stays the outage the tries survive)."""

    horizon: float
    tries: int
    growth: float
    jitter: Jitter

    def delay(self, attempt: int) -> float:
        """Seconds to wait after the ``attempt``-th failed try (from 1)."""
        retries = max(self.tries - 1, 1)
        step = min(max(attempt, 1), retries) - 1
        share = (self.growth - 1) * self.growth**step / (self.growth**retries - 1)
        return self.jitter.apply(self.horizon * share)


class Backoff:
    """The waits between the tries of one loop: the policy's delay after each failure so far."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return self.policy.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0
