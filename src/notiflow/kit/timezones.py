"""IANA timezones: validating names and turning a workspace's local wall time into a UTC instant.

    to_utc(datetime(2026, 3, 29, 9, 0), "Europe/Berlin")  # naive = local wall time
    -> 2026-03-29 07:00 UTC (CEST, the day clocks moved forward)

A time with an offset (``...+04:00`` / ``Z``) is taken as the instant it names. A wall time that
does not exist (skipped by a spring-forward) is refused; one that happens twice (fall-back) means
the first of the two, as calendars do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from notiflow.kit.errors import InvalidInput


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
