"""IANA timezones: validating names and turning a workspace's local wall time into a UTC instant.

    to_utc(datetime(2026, 3, 29, 9, 0), "Europe/Berlin")  # naive = local wall time
    -> 2026-03-29 07:00 UTC (CEST, the day clocks moved forward)

A time with an offset (``...+04:00`` / ``Z``) is taken as the instant it names. A wall time that
does not exist (skipped by a spring-forward) is refused; one that happens twice (fall-back) means
the first of the two, as calendars do.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AwareDatetime, BeforeValidator

from notiflow.kit.errors import InvalidInput

# RFC 3339 date-time, what an OpenAPI ``format: date-time`` means: pydantic alone would also
# take a number (seconds since the epoch) or a time without seconds.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339(value: Any) -> Any:
    if isinstance(value, str) and _RFC3339.fullmatch(value) is None:
        raise ValueError(
            "must be an RFC 3339 date-time with a time zone, e.g. 2026-03-29T09:00:00Z"
        )
    if not isinstance(value, str | datetime):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


# A timezone-aware datetime given exactly as ``format: date-time`` says (query parameters).
Rfc3339Datetime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]

# The zone names a client may choose: the IANA names this process knows (tzdata), in order. The
# OpenAPI document lists them, and :func:`require_zone_name` accepts exactly these, so a name the
# schema offers is never refused (ZoneInfo alone would also load aliases such as posix/UTC).
ZONE_NAMES: tuple[str, ...] = tuple(sorted(available_timezones()))
_ZONE_NAMES = frozenset(ZONE_NAMES)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The zone called ``name``; a 422 for anything that is not an IANA zone name."""
    if not name or len(name) > 64 or name != name.strip() or name.startswith(("/", ".")):
        raise InvalidInput(f"unknown timezone {name!r}: use an IANA name like Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown timezone {name!r}: use an IANA name like Europe/Berlin",
            code="invalid_timezone",
        ) from None


def require_zone_name(name: str) -> ZoneInfo:
    """The zone called ``name`` when it is one of :data:`ZONE_NAMES`; a 422 otherwise."""
    if name not in _ZONE_NAMES:
        raise InvalidInput(
            f"unknown timezone {name!r}: use an IANA name like Europe/Berlin",
            code="invalid_timezone",
        )
    return zone(name)


def to_utc(value: datetime, zone_name: str) -> datetime:
    """The UTC instant of ``value``: as given when it carries an offset, else as wall time in
    ``zone_name``."""
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    tz = zone(zone_name)
    first = value.replace(tzinfo=tz, fold=0)
    # A wall time in a spring-forward gap does not survive the round trip through UTC.
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != value:
        raise InvalidInput(
            f"{value.isoformat()} does not exist in {zone_name} (the clocks skip it); "
            "pick another time or give an offset",
            code="nonexistent_local_time",
        )
    return first.astimezone(UTC)


def local_iso(value: datetime | None, zone_name: str) -> str | None:
    """``value`` as ISO 8601 with the zone's offset at that instant."""
    if value is None:
        return None
    return value.astimezone(zone(zone_name)).isoformat()
