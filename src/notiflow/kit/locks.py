"""Leases on a job scope, kept in the database so they hold across processes and backends.

Per-workspace jobs (inbox sync, metrics) take ``workspace:{id}:{job}`` before working and give
it back after; a second run that finds it taken skips (the next run catches up). A holder that
dies loses the lease when it expires.

    async with job_lease(sessionmaker, f"inbox.sync:{workspace_id}", seconds=600) as held:
        if not held:
            return  # another run is at it
        ...
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.kit.ids import utcnow
from notiflow.kit.uow import unit_of_work
from notiflow.models import JobLock


async def acquire(
    sessionmaker: async_sessionmaker[AsyncSession], key: str, holder: str, seconds: float
) -> bool:
    """Take the lease if it is free or expired; True when this holder has it now."""
    now = utcnow()
    expires_at = now + timedelta(seconds=seconds)
    try:
        async with unit_of_work(sessionmaker) as session:
            taken_over = await session.execute(
                update(JobLock)
                .where(JobLock.key == key, JobLock.expires_at < now)
                .values(holder=holder, expires_at=expires_at)
            )
            if taken_over.rowcount == 1:  # type: ignore[attr-defined] # CursorResult has rowcount
                return True
            await session.execute(
                insert(JobLock).values(key=key, holder=holder, expires_at=expires_at)
            )
    except IntegrityError:  # held by someone else, and not expired
        return False
    return True


async def renew(
    sessionmaker: async_sessionmaker[AsyncSession], key: str, holder: str, seconds: float
) -> bool:
    """Extend a lease this holder has (from now); False when it is not this holder's any more
    (it expired and another took it, or it was released)."""
    async with unit_of_work(sessionmaker) as session:
        renewed = await session.execute(
            update(JobLock)
            .where(JobLock.key == key, JobLock.holder == holder)
            .values(expires_at=utcnow() + timedelta(seconds=seconds))
        )
    return bool(renewed.rowcount == 1)  # type: ignore[attr-defined] # CursorResult has rowcount


async def live_leases(sessionmaker: async_sessionmaker[AsyncSession], prefix: str) -> int:
    """How many unexpired leases have a key starting with ``prefix``."""
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(JobLock)
            .where(JobLock.key.startswith(prefix, autoescape=True), JobLock.expires_at > utcnow())
        )
    return int(count or 0)


async def forget_expired(
    sessionmaker: async_sessionmaker[AsyncSession], prefix: str, *, older_than: float
) -> None:
    """Delete leases under ``prefix`` that expired more than ``older_than`` seconds ago."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            delete(JobLock).where(
                JobLock.key.startswith(prefix, autoescape=True), JobLock.expires_at < cutoff
            )
        )


async def release(sessionmaker: async_sessionmaker[AsyncSession], key: str, holder: str) -> None:
    async with unit_of_work(sessionmaker) as session:
        await session.execute(delete(JobLock).where(JobLock.key == key, JobLock.holder == holder))


@asynccontextmanager
async def job_lease(
    sessionmaker: async_sessionmaker[AsyncSession], key: str, *, seconds: float
) -> AsyncIterator[bool]:
    """Hold ``key`` for the block (yields False, and holds nothing, when someone else has it)."""
    holder = secrets.token_hex(8)
    held = await acquire(sessionmaker, key, holder, seconds)
    try:
        yield held
    finally:
        if held:
            await release(sessionmaker, key, holder)
