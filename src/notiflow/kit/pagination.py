"""Pagination: Laravel-style page/per_page with totals, and opaque keyset cursors for feeds."""

from __future__ import annotations

import base64
import binascii
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from notiflow.kit.errors import InvalidInput

ItemT = TypeVar("ItemT")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Position after the last item of a page ordered by (created_at DESC, id DESC)."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        try:
            padded = value + "=" * (-len(value) % 4)
            created_at_text, _, id_text = (
                base64.urlsafe_b64decode(padded.encode()).decode().partition("|")
            )
            created_at = datetime.fromisoformat(created_at_text)
            if created_at.tzinfo is None:
                raise ValueError("naive cursor timestamp")
            return cls(created_at=created_at, id=uuid.UUID(id_text))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise InvalidInput(
                "cursor is not valid: pass the next_cursor value of a previous page",
                details=[{"loc": ["query", "cursor"], "msg": "invalid cursor"}],
            ) from None


@dataclass(frozen=True, slots=True)
class Page(Generic[ItemT]):
    items: list[ItemT]
    per_page: int
    next_cursor: str | None
    # Offset mode only (cursor pages do not count the whole set):
    page: int | None = None
    total: int | None = None


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
