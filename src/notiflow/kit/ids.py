"""Identifier and clock helpers used everywhere."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from uuid_utils.compat import uuid7


def new_id() -> uuid.UUID:
    """A time-ordered UUID (v7): unique like uuid4, but new rows land at the end of indexes."""
    value: uuid.UUID = uuid7()
    return value


def utcnow() -> datetime:
    return datetime.now(UTC)
