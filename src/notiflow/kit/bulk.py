"""Inserts that work the same on PostgreSQL and SQLite: ON CONFLICT, many rows, COPY.

``dialect_insert(session, table)`` is the one place that picks the dialect's ``INSERT`` (both
extend it with ``on_conflict_do_nothing`` / ``on_conflict_do_update``)::

    statement = dialect_insert(session, Item).values(**row).on_conflict_do_nothing(
        index_elements=["owner_id", "external_id"]
    )

``bulk_insert`` writes many rows in the session's transaction (COPY on PostgreSQL),
``insert_new_rows`` many rows of which some may exist already. Statements with a list of ids
are cut by ``chunks(ids)`` to stay under the backends' bind parameter limits.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import JSON, Table, insert
from sqlalchemy.dialects.postgresql import Insert as PostgresqlInsert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.db import Base

T = TypeVar("T")

# Bound the number of bind parameters per statement (SQLite allows 32,766, PostgreSQL 32,767).
ID_CHUNK = 5_000


def chunks(items: Sequence[T], size: int = ID_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dialect_insert(
    session: AsyncSession, table: Table | type[Base]
) -> PostgresqlInsert | SqliteInsert:
    """``INSERT`` of the session's dialect, which both backends extend with ON CONFLICT."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


async def bulk_insert(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert many rows in the session's transaction: COPY on PostgreSQL (the fastest path,
    ~3x an INSERT executemany for fan-out), multi-row INSERTs elsewhere. Every row must have
    the same keys."""
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        for chunk in chunks(rows):
            await session.execute(insert(table), chunk)
        return
    columns = list(rows[0])
    json_columns = {name for name in columns if isinstance(table.c[name].type, JSON)}
    records = [
        tuple(
            json.dumps(row[name]) if name in json_columns and row[name] is not None else row[name]
            for name in columns
        )
        for row in rows
    ]
    raw = await connection.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        table.name, records=records, columns=columns
    )


async def insert_new_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    unique_on: Sequence[str],
) -> set[uuid.UUID]:
    """Insert the rows whose ``unique_on`` columns match no stored row (INSERT ... ON CONFLICT
    DO NOTHING, no savepoint); returns the ``id`` of each row inserted."""
    statement = (
        dialect_insert(session, table)
        .on_conflict_do_nothing(index_elements=list(unique_on))
        .returning(table.c.id)
    )
    inserted_ids: set[uuid.UUID] = set()
    for chunk in chunks(rows):
        result = await session.execute(statement, chunk)
        inserted_ids.update(result.scalars().all())
    return inserted_ids


__all__ = ["ID_CHUNK", "bulk_insert", "chunks", "dialect_insert", "insert_new_rows"]
