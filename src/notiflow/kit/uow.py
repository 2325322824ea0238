"""The unit of work: how every edge (an HTTP request, a job, a worker, the scheduler, a CLI
command) opens its transaction.

Services take a session, flush and queue after-commit effects; they never commit. The edge
wraps its work in one unit::

    async with unit_of_work(sessionmaker) as session:
        await service.do_something(session, ...)
    # committed here, then the effects ran (live events, jobs, cache invalidation)

On an exception the transaction rolls back, the effects are dropped and the exception goes
on. :func:`session_scope` is the same unit as a FastAPI dependency.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from notiflow.kit.after_commit import commit_and_flush_effects, discard_effects, pending_effects
from notiflow.kit.outages import DATABASE

log = structlog.get_logger(__name__)

# The test suite sets this: a session left with effects raises instead of logging an error.
STRICT_EFFECTS = False


class UnflushedEffects(RuntimeError):
    """A session ended normally with after-commit effects still queued: it was committed
    outside a unit of work, or not at all, and those effects would silently never run."""


class UnitSession(AsyncSession):
    """The session every sessionmaker of notiflow makes: a rollback drops the queued effects
    (they belong to work that never happened), and effects left behind are noticed."""

    async def rollback(self) -> None:
        discard_effects(self)
        await super().rollback()

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        left = pending_effects(self) if type_ is None else []
        names = [getattr(effect, "__qualname__", repr(effect)) for effect in left]
        discard_effects(self)
        await super().__aexit__(type_, value, traceback)
        if not names:
            return
        if STRICT_EFFECTS:
            raise UnflushedEffects(f"session closed with after-commit effects queued: {names}")
        log.error("after_commit_effects_dropped", effects=names)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=UnitSession, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends, then its after-commit effects run;
    rolled back, effects dropped, when the block raises."""
    async with sessionmaker() as session:
        try:
            yield session
            await commit_and_flush_effects(session)
        except BaseException:
            discard_effects(session)
            await session.rollback()
            raise


async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """:func:`unit_of_work` for one HTTP request (a FastAPI dependency); a request that commits
    ends the database outage this process saw, if one started before it."""
    started = time.monotonic()
    async with unit_of_work(sessionmaker) as session:
        yield session
    DATABASE.recovered(component="api", started=started)
