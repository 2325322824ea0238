"""The job queue: Taskiq, with an in-memory broker embedded and Redis streams for scale-out.

The queue is only a wake-up call (DESIGN §8): every job's trigger can be found again in the
database (a pending delivery, a due post), so a lost message delays work and never loses it.
Jobs are plain ``async def job(runtime, payload) -> None`` functions registered under a
``domain.verb`` name; :class:`JobQueue` turns them into Taskiq tasks and hands them the runtime.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from taskiq import AsyncBroker, Context, InMemoryBroker, TaskiqDepends
from taskiq_redis import RedisStreamBroker

if TYPE_CHECKING:
    from notiflow.runtime import Runtime

log = structlog.get_logger(__name__)

JobFunction = Callable[["Runtime", dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    function: JobFunction


class JobQueue:
    def __init__(self, broker: AsyncBroker, jobs: list[Job]) -> None:
        self.broker = broker
        self.jobs = {job.name: job for job in jobs}
        for job in jobs:
            broker.register_task(_taskiq_adapter(job), task_name=job.name)

    @property
    def embedded(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    async def start(self, runtime: Runtime) -> None:
        self.broker.state.runtime = runtime
        await self.broker.startup()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def enqueue(self, name: str, payload: dict[str, Any]) -> None:
        task = self.broker.find_task(name)
        if task is None:
            raise KeyError(f"unknown job {name}")
        await task.kiq(payload)


def _taskiq_adapter(job: Job) -> Callable[..., Awaitable[None]]:
    async def run(
        payload: dict[str, Any],
        context: Context = TaskiqDepends(),  # noqa: B008 - Taskiq's injection idiom
    ) -> None:
        runtime: Runtime = context.state.runtime
        await run_job(runtime, job, payload)

    run.__name__ = job.name.replace(".", "_")
    return run


async def run_job(runtime: Runtime, job: Job, payload: dict[str, Any]) -> None:
    """Run one job: one structured log line and metrics either way; a job that raises is written
    to ``failed_jobs`` and alerted (its trigger stays in the database for the next run)."""
    from notiflow.kit.metrics import record_failed_job, record_job
    from notiflow.models import FailedJob

    started = time.perf_counter()
    tenant_id = payload.get("tenant_id")
    workspace_id = payload.get("workspace_id")
    try:
        await job.function(runtime, payload)
    except Exception as error:
        seconds = time.perf_counter() - started
        record_job(job.name, "failed", seconds)
        record_failed_job()
        log.exception(
            "job",
            job=job.name,
            outcome="failed",
            seconds=round(seconds, 4),
            tenant_id=tenant_id,
            workspace_id=workspace_id,
        )
        async with runtime.sessionmaker() as session:
            session.add(
                FailedJob(
                    job_name=job.name,
                    args=payload,
                    tenant_id=uuid.UUID(tenant_id) if tenant_id else None,
                    workspace_id=uuid.UUID(workspace_id) if workspace_id else None,
                    exception=f"{type(error).__name__}: {error}"[:2000],
                    traceback=traceback.format_exc()[-10_000:],
                )
            )
            await session.commit()
        if runtime.alerter is not None:
            await runtime.alerter.job_failed(
                job.name,
                f"{type(error).__name__}: {error}",
                uuid.UUID(tenant_id) if tenant_id else None,
            )
        return
    seconds = time.perf_counter() - started
    record_job(job.name, "ok", seconds)
    log.info(
        "job",
        job=job.name,
        outcome="ok",
        seconds=round(seconds, 4),
        tenant_id=tenant_id,
        workspace_id=workspace_id,
    )


def build_broker(redis_url: str | None) -> AsyncBroker:
    if redis_url:
        # Streams with consumer groups: a message is acknowledged only after its job ran, and
        # one a dead worker held is claimed by another after the idle timeout.
        return RedisStreamBroker(
            redis_url, queue_name="notiflow:jobs", maxlen=1_000_000, idle_timeout=120_000
        )
    return InMemoryBroker(max_async_tasks=100)
