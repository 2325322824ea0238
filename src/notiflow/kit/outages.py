"""Outages of the services notiflow depends on (Redis, the database), told once, waited out.

A loop that talks to a service which is down must neither spin nor write a traceback per try:
it backs off (exponentially, with full jitter, so that many processes do not come back in step)
and the process logs one ``<service>_unavailable`` warning when the outage starts and one
``<service>_recovered`` when it ends::

    backoff = Backoff()
    while True:
        try:
            await work()
        except Exception as error:
            if not redis_unavailable(error):
                raise
            REDIS.failed(error, component="worker")
            await asyncio.sleep(backoff.next_delay())
            continue
        REDIS.recovered()
        backoff.reset()

Code that tries once per request or per send and has a fallback (the sweeper enqueues later,
the database answers instead of the cache) reports the failure with :func:`told_as_outage`,
which says whether it was an outage (told once) or another error (to be logged in full).
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from notiflow.kit import retry
from notiflow.kit.db import database_unavailable

log = structlog.get_logger(__name__)

# The first retry comes within 0.5 s, then the ceiling doubles up to 30 s.
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0


class Backoff(retry.Backoff):
    """Delays between tries of one loop: full jitter, doubling from ``base`` up to ``cap``."""

    def __init__(self, base: float = BACKOFF_BASE_SECONDS, cap: float = BACKOFF_CAP_SECONDS):
        super().__init__(retry.RetryPolicy(base=base, cap=cap, jitter=retry.FULL_JITTER))


class Outage:
    """Whether one service is down for this process, and the two log lines of each outage.

    Shared by every loop of the process (one instance per service), so the outage is told once
    however many loops notice it.
    """

    def __init__(self, service: str) -> None:
        self.service = service
        self.down_since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException, **context: Any) -> None:
        """A try failed because the service is unreachable; the first one of an outage logs."""
        self.failures += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.warning(f"{self.service}_unavailable", error=_describe(error), **context)

    def recovered(self, *, started: float | None = None, **context: Any) -> None:
        """A try succeeded: ends the outage (and logs it) if there was one. A try that
        ``started`` (``time.monotonic()``) before the outage was noticed proves nothing."""
        if self.down_since is None or (started is not None and started < self.down_since):
            return
        seconds = time.monotonic() - self.down_since
        failures, self.down_since, self.failures = self.failures, None, 0
        log.warning(
            f"{self.service}_recovered",
            outage_seconds=round(seconds, 1),
            failed_tries=failures,
            **context,
        )


def _describe(error: BaseException) -> str:
    """The error at the root of ``error`` (a wrapper's own message rarely says what broke)."""
    for _ in range(5):
        if error.__cause__ is None:
            break
        error = error.__cause__
    return f"{type(error).__name__}: {error}"[:300]


REDIS = Outage("redis")
DATABASE = Outage("database")

# What an unreachable Redis raises (refused, reset, timed out, loading after a restart).
REDIS_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)


def redis_unavailable(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps: Taskiq raises SendTaskError from the Redis error
    when a job cannot be queued) means Redis is unreachable."""
    cause: BaseException | None = error
    for _ in range(5):
        if cause is None:
            return False
        if isinstance(cause, REDIS_UNAVAILABLE_ERRORS):
            return True
        cause = cause.__cause__
    return False


def outage_of(error: BaseException) -> Outage | None:
    """The outage ``error`` is a symptom of: Redis or the database unreachable; None for any
    other error (a defect, to be logged with its traceback)."""
    if database_unavailable(error):
        return DATABASE
    if redis_unavailable(error):
        return REDIS
    return None


def told_as_outage(error: BaseException, **context: Any) -> bool:
    """Whether ``error`` is an outage's symptom; if so it is counted there (the first failure
    of an outage logs one line) and the caller logs nothing more."""
    outage = outage_of(error)
    if outage is None:
        return False
    outage.failed(error, **context)
    return True
