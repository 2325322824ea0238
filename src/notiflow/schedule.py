"""The schedule of periodic jobs (spec 003 §9), in one place, and the loop that runs it.

Exactly one scheduler runs it: ``notiflow serve`` in the embedded deployment, ``notiflow
scheduler`` in a scale-out one. Each entry only enqueues its job; the job does the work (and, being
idempotent, does no harm if a restart makes it run twice).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog
from croniter import croniter

from notiflow.config import Settings
from notiflow.kit.ids import utcnow

if TYPE_CHECKING:
    from notiflow.runtime import Runtime

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    job: str
    cron: str  # minute hour day-of-month month day-of-week, in ``timezone``
    timezone: str
    description: str
    payload: dict[str, Any] | None = None

    def next_run(self, after: datetime) -> datetime:
        local = after.astimezone(ZoneInfo(self.timezone))
        upcoming: datetime = croniter(self.cron, local).get_next(datetime)
        return upcoming.astimezone(ZoneInfo("UTC"))


def build_schedule(settings: Settings) -> list[ScheduleEntry]:
    hour, zone = settings.maintenance_hour, settings.maintenance_timezone
    return [
        ScheduleEntry(
            job="notifications.cleanup",
            cron=f"0 {hour} * * *",
            timezone=zone,
            description="Daily: delete notifications older than 90 days and read ones read "
            "more than 30 days ago (spec 003 §8.8, §14)",
        ),
    ]


def describe(settings: Settings, now: datetime | None = None) -> list[dict[str, str]]:
    now = now or utcnow()
    rows = [
        {
            "job": "delivery.sweep",
            "when": f"every {settings.sweep_interval_seconds:g} s",
            "next_run": "continuous",
            "description": "Hand out due retries and deliveries a crash left behind",
        }
    ]
    for entry in build_schedule(settings):
        rows.append(
            {
                "job": entry.job,
                "when": f"{entry.cron} ({entry.timezone})",
                "next_run": entry.next_run(now).isoformat(),
                "description": entry.description,
            }
        )
    return rows


async def run_schedule(runtime: Runtime) -> None:
    """Sleep until the next entry is due, enqueue it, repeat (forever)."""
    schedule = build_schedule(runtime.settings)
    upcoming = {entry.job: entry.next_run(utcnow()) for entry in schedule}
    while True:
        entry = min(schedule, key=lambda item: upcoming[item.job])
        delay = (upcoming[entry.job] - utcnow()).total_seconds()
        if delay > 0:
            await asyncio.sleep(min(delay, 60.0))
            continue
        if runtime.queue is not None:
            try:
                await runtime.queue.enqueue(entry.job, entry.payload or {})
                log.info("scheduled_job_enqueued", job=entry.job)
            except Exception:
                log.exception("scheduled_job_enqueue_failed", job=entry.job)
        upcoming[entry.job] = entry.next_run(utcnow())
