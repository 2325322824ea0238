"""The scheduler's loops: the outbox sweeper, the due-post scanner and the schedule of periodic
jobs (:mod:`notiflow.schedule`)."""

from __future__ import annotations

import asyncio

from notiflow.content.jobs import scan_forever
from notiflow.delivery.jobs import sweep_forever
from notiflow.main.runtime import Runtime
from notiflow.schedule import run_schedule


def start_background(runtime: Runtime) -> list[asyncio.Task[None]]:
    """Start the scheduler's loops on the running event loop."""
    settings = runtime.settings
    return [
        asyncio.create_task(sweep_forever(runtime, settings.sweep_interval_seconds)),
        asyncio.create_task(run_schedule(runtime)),
        asyncio.create_task(scan_forever(runtime, settings.publish_scan_interval_seconds)),
    ]
