"""Time buckets for charts: a window of equal buckets, and the SQL that puts a row in one.

::

    window = BucketWindow.last(hours=24, bucket_minutes=60)  # 24 hourly buckets, the last open
    start = bucket_start(session, Model.created_at, window.bucket_seconds)
    select(start, func.count()).where(Model.created_at >= window.since).group_by(start)
    window.start_of(epoch_seconds)  # the bucket's start as an aware datetime

Buckets are aligned on the epoch (an hourly bucket starts on the hour, UTC), so two requests a
minute apart put a row in the same bucket. The bucket is computed by the database (PostgreSQL
``extract(epoch ...)``, SQLite ``strftime('%s', ...)``): only the counts travel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

from sqlalchemy import BigInteger, Integer, cast, func
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import InvalidInput
from notiflow.kit.ids import utcnow

__all__ = ["MAX_BUCKETS", "MAX_HOURS", "BucketMinutes", "BucketWindow", "bucket_start"]


class BucketMinutes(IntEnum):
    """The bucket sizes a chart may ask for: with at most ``MAX_HOURS``, never more than
    ``MAX_BUCKETS`` points, whatever the combination (so a valid request is always served)."""

    FIVE = 5
    FIFTEEN = 15
    HOUR = 60
    SIX_HOURS = 360
    DAY = 1440


MAX_HOURS = 168
MAX_BUCKETS = MAX_HOURS * 60 // min(BucketMinutes)


@dataclass(frozen=True, slots=True)
class BucketWindow:
    since: datetime  # the first bucket's start (inclusive)
    until: datetime  # now: the last bucket is still filling
    bucket_seconds: int
    count: int

    @classmethod
    def last(cls, *, hours: int, bucket_minutes: int, now: datetime | None = None) -> BucketWindow:
        """The buckets covering the last ``hours`` (the current, open one included)."""
        bucket_seconds = bucket_minutes * 60
        count = math.ceil(hours * 3600 / bucket_seconds)
        if count > MAX_BUCKETS:
            raise InvalidInput(
                f"{count} buckets is more than {MAX_BUCKETS}: ask for fewer hours or longer "
                "buckets",
                details=[{"loc": ["query", "bucket_minutes"], "msg": "too many buckets"}],
            )
        now = now or utcnow()
        current = math.floor(now.timestamp() / bucket_seconds) * bucket_seconds
        first = current - (count - 1) * bucket_seconds
        return cls(
            since=datetime.fromtimestamp(first, UTC),
            until=now,
            bucket_seconds=bucket_seconds,
            count=count,
        )

    def starts(self) -> list[datetime]:
        """Every bucket's start, oldest first."""
        return [self.since + timedelta(seconds=self.bucket_seconds * i) for i in range(self.count)]

    def start_of(self, epoch_seconds: float) -> datetime:
        return datetime.fromtimestamp(
            math.floor(epoch_seconds / self.bucket_seconds) * self.bucket_seconds, UTC
        )


def bucket_start(session: AsyncSession, column: Any, bucket_seconds: int) -> Any:
    """SQL: the epoch second at which ``column``'s bucket starts (an integer)."""
    if session.get_bind().dialect.name == "postgresql":
        epoch = func.floor(func.extract("epoch", column) / bucket_seconds)
        return cast(epoch, BigInteger) * bucket_seconds
    # SQLite keeps naive UTC text; strftime('%s') reads it as UTC.
    return cast(func.strftime("%s", column), Integer) / bucket_seconds * bucket_seconds
