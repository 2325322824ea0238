"""Pagination: Laravel-style page/per_page with totals, and opaque keyset cursors for feeds."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import InvalidInput

ItemT = TypeVar("ItemT")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A cursor is a position in the (created_at, id) order: microseconds since the epoch, a dot and
# the id's 32 hex digits. Every string of this form is a position (17 digits reach the year
# 5138, within what a datetime holds), so the pattern below is the whole validation and the
# OpenAPI document can state it. An empty cursor is the first page.
CURSOR_PATTERN = r"^(?:[0-9]{1,17}\.[0-9a-f]{32})?$"
_CURSOR = re.compile(CURSOR_PATTERN)

CursorQuery = Annotated[
    str | None,
    Query(
        description="``meta.next_cursor`` of the previous page (opaque; empty for the first)",
        max_length=50,
        json_schema_extra={"pattern": CURSOR_PATTERN},
    ),
]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the last item of a page ordered by (created_at DESC, id DESC)."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        delta = self.created_at - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return f"{micros}.{self.id.hex}"

    @classmethod
    def decode(cls, value: str) -> Cursor:
        if _CURSOR.fullmatch(value) is None or not value:
            raise InvalidInput(
                "cursor is not valid: pass the next_cursor value of a previous page",
                details=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
            )
        micros, _, id_hex = value.partition(".")
        return cls(
            created_at=_EPOCH + timedelta(microseconds=int(micros)), id=uuid.UUID(hex=id_hex)
        )

    @classmethod
    def from_query(cls, value: str | None) -> Cursor | None:
        """The cursor of a ``cursor`` query parameter; ``None`` (first page) when absent or
        empty."""
        return cls.decode(value) if value else None


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    items: list[ItemT]
    per_page: int
    next_cursor: str | None
    # Offset mode only (cursor pages do not count the whole set):
    page: int | None = None
    total: int | None = None


async def paginate(
    session: AsyncSession,
    query: Select[ItemT],
    *,
    key: tuple[Any, Any],
    position: Callable[[ItemT], tuple[datetime, uuid.UUID]],
    page: int,
    per_page: int,
    cursor: Cursor | None,
    rows: bool = False,
) -> Page[ItemT]:
    """One page of ``query`` (ordered by ``key``, a (timestamp, id) column pair, descending).
    With ``cursor`` it pages by key, a row comparison that is an index bound, so a page deep in
    the history costs as little as the first (no totals); otherwise by page number with the
    total. ``position`` gives an item's (timestamp, id) for the next cursor. Items are the
    first column's values, or whole rows with ``rows=True`` (a query of several columns)."""
    total: int | None = None
    if cursor is not None:
        query = query.where(tuple_(*key) < tuple_(cursor.created_at, cursor.id))
    else:
        total = await session.scalar(
            select(func.count()).select_from(query.order_by(None).subquery())
        )
        query = query.offset((page - 1) * per_page)
    limited = query.limit(per_page + 1)
    found: list[Any] = list(
        (await session.execute(limited)).all() if rows else (await session.scalars(limited)).all()
    )
    items = found[:per_page]
    next_cursor = None
    if len(found) > per_page and items:
        created_at, last_id = position(items[-1])
        next_cursor = Cursor(created_at=created_at, id=last_id).encode()
    return Page(
        items=items,
        per_page=per_page,
        next_cursor=next_cursor,
        page=None if cursor is not None else page,
        total=total,
    )


class PageMeta(BaseModel):
    """Laravel paginator fields (offset mode) plus ``next_cursor`` for keyset paging."""

    model_config = ConfigDict(populate_by_name=True)

    current_page: int | None = None
    per_page: int
    total: int | None = None
    last_page: int | None = None
    from_: int | None = Field(default=None, alias="from")
    to: int | None = None
    next_cursor: str | None = None


def page_meta(page: Page[Any]) -> PageMeta:
    """The ``meta`` object of a paginated response."""
    meta = PageMeta(per_page=page.per_page, next_cursor=page.next_cursor)
    if page.page is not None and page.total is not None:
        first = (page.page - 1) * page.per_page + 1
        meta.current_page = page.page
        meta.total = page.total
        meta.last_page = max(1, math.ceil(page.total / page.per_page))
        meta.from_ = first if page.items else None
        meta.to = first + len(page.items) - 1 if page.items else None
    return meta
