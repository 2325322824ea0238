"""The after-commit buffer: side effects (live events, jobs, cache invalidation) of a session.

Services call :func:`after_commit` while they work; the edge that owns the transaction calls
:func:`commit_and_flush_effects`. Effects run only after a successful commit and are dropped on
rollback, so no one is told about data that never existed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.outages import told_as_outage

Effect = Callable[[], Awaitable[None]]

_KEY = "notiflow.after_commit"
log = structlog.get_logger(__name__)


def after_commit(session: AsyncSession, effect: Effect) -> None:
    """Run ``effect`` once the session's current transaction has committed."""
    session.info.setdefault(_KEY, []).append(effect)


def pending_effects(session: AsyncSession) -> list[Effect]:
    effects: list[Effect] = session.info.get(_KEY, [])
    return effects


def discard_effects(session: AsyncSession) -> None:
    session.info.pop(_KEY, None)


async def commit_and_flush_effects(session: AsyncSession) -> None:
    """Commit, then run the queued effects in order. A failing effect is logged, not raised:
    the data is committed and durable work is recovered from the database. An
    effect failing because Redis or the database is down is told once per outage instead."""
    await session.commit()
    effects = session.info.pop(_KEY, [])
    for effect in effects:
        try:
            await effect()
        except Exception as error:
            name = getattr(effect, "__qualname__", "?")
            if not told_as_outage(error, component="after_commit", effect=name):
                log.exception("after_commit_effect_failed", effect=name)
