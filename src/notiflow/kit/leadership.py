"""One leader among any number of processes, and heartbeats that say who is alive.

Both are leases in the database (:mod:`notiflow.kit.locks`), the one store every process of a
deployment shares, with or without Redis::

    # Any number of processes run this; one at a time runs the loops that start() starts.
    await lead_forever(sessionmaker, "scheduler", start, lease_seconds=15)

    # Each worker process: "heartbeat:worker:<holder>" stays unexpired while it lives.
    await beat_forever(sessionmaker, "heartbeat:worker:", lease_seconds=15)

The leader renews its lease every third of it. A leader that cannot renew (the database is
unreachable) keeps its loops only while the lease it last renewed has not run out — by then
another may have taken it — and then stops them; a leader that finds the lease taken stops at
once. A leader killed without a goodbye is replaced once its lease expires; one that stops
cleanly releases it, and the next takes over at its next try. Between a lease running out
unnoticed and the old leader's next try, two may lead for up to a third of the lease: what the
scheduler runs tolerates that (claims in the database, idempotent jobs).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.kit.db import database_unavailable
from notiflow.kit.locks import acquire, forget_expired, release, renew
from notiflow.kit.outages import DATABASE

log = structlog.get_logger(__name__)

# Heartbeat rows of processes that died stay this long (for a look at what ran), then go.
FORGET_DEAD_AFTER_SECONDS = 3600.0


def new_holder() -> str:
    """A name for this process's leases: where it runs, and unique per start."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


async def lead_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    key: str,
    start: Callable[[], list[asyncio.Task[None]]],
    *,
    lease_seconds: float,
    role: str = "scheduler",
) -> None:
    """Take ``key`` when it is free and run ``start()``'s tasks for as long as it is held."""
    holder = new_holder()
    tasks: list[asyncio.Task[None]] = []
    renewed_at = 0.0
    try:
        while True:
            tried_at = time.monotonic()
            try:
                if tasks:
                    held = await renew(sessionmaker, key, holder, lease_seconds)
                else:
                    held = await acquire(sessionmaker, key, holder, lease_seconds)
            except Exception as error:
                if not database_unavailable(error):
                    raise
                DATABASE.failed(error, component=role)
                held = bool(tasks) and time.monotonic() - renewed_at < lease_seconds * 2 / 3
            else:
                DATABASE.recovered(started=tried_at, component=role)
                if held:
                    renewed_at = tried_at
            if held and not tasks:
                tasks = start()
                log.info(f"{role}_elected", holder=holder, lease_seconds=lease_seconds)
            elif not held and tasks:
                log.warning(f"{role}_stepped_down", holder=holder)
                await _stop(tasks)
                tasks = []
            await asyncio.sleep(lease_seconds / 3)
    finally:
        if tasks:
            await _stop(tasks)
            try:
                await release(sessionmaker, key, holder)
            except Exception as error:  # stopping anyway: the lease expires by itself
                log.warning(f"{role}_lease_not_released", error=str(error))


async def beat_forever(
    sessionmaker: async_sessionmaker[AsyncSession], prefix: str, *, lease_seconds: float
) -> None:
    """Keep ``<prefix><holder>`` unexpired while this process lives (and clean up old ones)."""
    holder = new_holder()
    key = f"{prefix}{holder}"
    beats = 0
    while True:
        tried_at = time.monotonic()
        try:
            if not await renew(sessionmaker, key, holder, lease_seconds):
                await acquire(sessionmaker, key, holder, lease_seconds)
            if beats % 100 == 0:
                await forget_expired(sessionmaker, prefix, older_than=FORGET_DEAD_AFTER_SECONDS)
        except Exception as error:
            if not database_unavailable(error):
                raise
            DATABASE.failed(error, component="heartbeat")
        else:
            DATABASE.recovered(started=tried_at, component="heartbeat")
        beats += 1
        await asyncio.sleep(lease_seconds / 3)


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.warning("background_task_had_failed", exc_info=outcome)
