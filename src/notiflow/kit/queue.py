"""The job queue: Taskiq, with an in-memory broker embedded and Redis streams for scale-out.

The queue is only a wake-up call: every job's trigger can be found again in the
database (a pending delivery, a due post), so a lost message delays work and never loses it.
Jobs are plain ``async def job(context, payload) -> None`` functions registered under a
``domain.verb`` name with the :class:`JobPayload` model of their payload; :class:`JobQueue`
turns them into Taskiq tasks and hands them the process's context. A job is typed against the
narrowest context it needs: :class:`JobContext` here, or a domain's extension of it (a
Protocol declared in the domain); the composition root's runtime satisfies them all.

A payload travels and is stored (``job_attempts``, ``failed_jobs``) as a JSON object and is
validated into its model when the job starts::

    class WorkspacePayload(JobPayload):
        workspace_id: uuid.UUID
        tenant_id: uuid.UUID

    async def sync(context: InboxContext, payload: WorkspacePayload) -> None: ...

    Job("inbox.sync", sync, WorkspacePayload, max_attempts=3)
    await queue.enqueue("inbox.sync", WorkspacePayload(workspace_id=..., tenant_id=...))
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Generic, Protocol, TypeVar

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, PlainSerializer, ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from taskiq import AckableMessage, AsyncBroker, Context, InMemoryBroker, TaskiqDepends
from taskiq_redis import RedisStreamBroker

from notiflow.config import Settings
from notiflow.kit.db import database_unavailable
from notiflow.kit.failures import FinalFailure, JobAlerter, give_up
from notiflow.kit.ids import utcnow
from notiflow.kit.metrics import record_failed_job, record_job, record_retry, set_queue_depth
from notiflow.kit.outages import (
    BACKOFF_CAP_SECONDS,
    DATABASE,
    REDIS,
    REDIS_UNAVAILABLE_ERRORS,
    Backoff,
    Outage,
    redis_unavailable,
)
from notiflow.kit.retry import RetryPolicy
from notiflow.kit.throughput import JobThroughput
from notiflow.kit.uow import unit_of_work
from notiflow.models import JobAttempt

log = structlog.get_logger(__name__)


class JobContext(Protocol):
    """What every job is handed: the settings, the database, the queue and the alerter of the
    process it runs in. Domains extend it with what their jobs need besides."""

    @property
    def settings(self) -> Settings: ...
    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def queue(self) -> JobQueue | None: ...
    @property
    def alerter(self) -> JobAlerter | None: ...


class JobPayload(BaseModel):
    """The payload of a job, validated from its stored JSON object when the job starts.

    Frozen; keys a model does not name are ignored, so payloads stored by an older version
    (in ``job_attempts`` and ``failed_jobs``) still run.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")


class NoPayload(JobPayload):
    """The payload of a job that needs none (the periodic sweeps and fan-outs)."""


class WorkspacePayload(JobPayload):
    """The payload of a job that works on one workspace."""

    workspace_id: uuid.UUID
    tenant_id: uuid.UUID


# An aware timestamp stored as ``datetime.isoformat()`` gives it (``+00:00``, not Pydantic's
# ``Z``): the JSON of payloads stays what it was before they had models.
IsoDatetime = Annotated[
    AwareDatetime, PlainSerializer(datetime.isoformat, return_type=str, when_used="json")
]

P = TypeVar("P", bound=JobPayload)
# The context a job needs: a job typed against a narrow context may run wherever a wider one
# is handed out.
C = TypeVar("C", bound=JobContext, contravariant=True)


def payload_json(payload: JobPayload | Mapping[str, Any]) -> dict[str, Any]:
    """The JSON object a payload travels and is stored as."""
    if isinstance(payload, JobPayload):
        return payload.model_dump(mode="json")
    return dict(payload)


@dataclass(frozen=True, slots=True)
class Job(Generic[C, P]):
    name: str
    function: Callable[[C, P], Awaitable[None]]
    # The model the stored payload is validated into before ``function`` runs.
    payload: type[P]
    # Tries in all, and the first retry delay (doubling after each failure, with jitter).
    max_attempts: int = 3
    backoff_seconds: float = 60.0
    # Runs once when the job gives up (a job's ``failed()`` hook): e.g. mark a post failed and
    # tell its author.
    on_failure: Callable[[C, P, BaseException], Awaitable[None]] | None = None

    @property
    def retry_policy(self) -> RetryPolicy:
        """Waits of 50-100 % of ``backoff_seconds``, doubling after each failed try."""
        return RetryPolicy(base=self.backoff_seconds)


ATTEMPT_KEY = "_attempt_id"
JOB_CONCURRENCY = 20
# A retry handed to the queue is not handed out again for this long (in case the message is lost).
RETRY_LEASE_SECONDS = 300.0


class JobQueue:
    def __init__(
        self,
        broker: AsyncBroker,
        jobs: list[Job[Any, Any]],
        *,
        throughput: JobThroughput | None = None,
    ) -> None:
        self.broker = broker
        self.jobs = {job.name: job for job in jobs}
        # Where the outcome of every run is counted per minute (none: not counted).
        self.throughput = throughput
        # The embedded queue's depth: runs handed over and waiting for a slot, and running.
        self.waiting = 0
        self.running = 0
        # Taskiq's in-memory broker starts every message's task at once (its max_async_tasks is
        # only honoured by listening receivers), so the embedded queue bounds itself: no more
        # jobs run at once than the database pool serves. Redis workers are bounded by
        # ``notiflow worker --concurrency``.
        self.slots: asyncio.Semaphore | None = (
            asyncio.Semaphore(JOB_CONCURRENCY) if isinstance(broker, InMemoryBroker) else None
        )
        for job in jobs:
            broker.register_task(_taskiq_adapter(job, self), task_name=job.name)

    @property
    def embedded(self) -> bool:
        return isinstance(self.broker, InMemoryBroker)

    async def start(self, context: JobContext) -> None:
        self.broker.state.context = context
        await self.broker.startup()

    async def close(self) -> None:
        await self.broker.shutdown()

    async def enqueue(self, name: str, payload: JobPayload | Mapping[str, Any]) -> None:
        """Hand ``name`` its payload: its model, or a JSON object as stored (a retry)."""
        task = self.broker.find_task(name)
        if task is None:
            raise KeyError(f"unknown job {name}")
        job = self.jobs.get(name)
        if isinstance(payload, JobPayload) and job and not isinstance(payload, job.payload):
            raise TypeError(
                f"{name} takes a {job.payload.__name__}, not a {type(payload).__name__}"
            )
        await task.kiq(payload_json(payload))


def _taskiq_adapter(job: Job[Any, Any], queue: JobQueue) -> Callable[..., Awaitable[None]]:
    async def run(
        payload: dict[str, Any],
        context: Context = TaskiqDepends(),  # noqa: B008 - Taskiq's injection idiom
    ) -> None:
        job_context: JobContext = context.state.context
        if queue.slots is None:
            await run_job(job_context, job, payload)
            return
        queue.waiting += 1
        waiting = True
        try:
            async with queue.slots:
                queue.waiting -= 1
                waiting = False
                queue.running += 1
                try:
                    await run_job(job_context, job, payload)
                finally:
                    queue.running -= 1
        finally:
            if waiting:  # cancelled before its turn
                queue.waiting -= 1

    run.__name__ = job.name.replace(".", "_")
    return run


async def run_job(context: JobContext, job: Job[Any, Any], payload: dict[str, Any]) -> None:
    """Run one job: one structured log line and metrics either way; a job that raises is written
    to ``failed_jobs`` and alerted (its trigger stays in the database for the next run).

    A payload that does not validate into the job's model fails at once, without retries (it
    would fail again) and without the failure hook (there is no payload to hand it)."""
    started = time.perf_counter()
    began = time.monotonic()
    attempt_id = payload.get(ATTEMPT_KEY)
    args = {key: value for key, value in payload.items() if key != ATTEMPT_KEY}
    tenant_id = args.get("tenant_id")
    workspace_id = args.get("workspace_id")
    try:
        typed = job.payload.model_validate(args)
    except ValidationError as error:
        seconds = time.perf_counter() - started
        record_job(job.name, "failed", seconds)
        record_failed_job()
        await _count_run(context, "failed", tenant_id)
        log.error(
            "job",
            job=job.name,
            outcome="failed",
            reason="invalid_payload",
            error=str(error),
            seconds=round(seconds, 4),
            tenant_id=tenant_id,
            workspace_id=workspace_id,
        )
        try:
            await _reject(context, job, args, attempt_id, error)
        except Exception as reject_error:
            if not database_unavailable(reject_error):
                raise
            DATABASE.failed(reject_error, component="job", job=job.name)
        return
    try:
        await job.function(context, typed)
    except Exception as error:
        seconds = time.perf_counter() - started
        if database_unavailable(error):
            # Nothing can be written to a database that is down (no retry row, no failed
            # job), and a traceback per job would only repeat the outage. The job's trigger
            # is still in the database (a pending delivery, a due post, a handed-out retry
            # row), where the sweeper and the scanners find it again once it is back.
            record_job(job.name, "database_unavailable", seconds)
            DATABASE.failed(error, component="job", job=job.name)
            return
        try:
            attempts = await _schedule_retry(context, job, args, attempt_id, error)
        except Exception as retry_error:
            if not database_unavailable(retry_error):
                raise
            record_job(job.name, "database_unavailable", seconds)
            DATABASE.failed(retry_error, component="job", job=job.name)
            return
        if attempts is not None:
            record_job(job.name, "retry", seconds)
            record_retry(job.name)
            await _count_run(context, "retry", tenant_id)
            log.warning(
                "job",
                job=job.name,
                outcome="retry",
                attempt=attempts,
                error=f"{type(error).__name__}: {error}",
                seconds=round(seconds, 4),
                tenant_id=tenant_id,
                workspace_id=workspace_id,
            )
            return
        record_job(job.name, "failed", seconds)
        record_failed_job()
        await _count_run(context, "failed", tenant_id)
        log.exception(
            "job",
            job=job.name,
            outcome="failed",
            seconds=round(seconds, 4),
            tenant_id=tenant_id,
            workspace_id=workspace_id,
        )
        hook = (
            functools.partial(job.on_failure, context, typed, error)
            if job.on_failure is not None
            else None
        )
        failure = FinalFailure.of_error(job.name, args, error, attempts=job.max_attempts)
        async with unit_of_work(context.sessionmaker) as session:
            await give_up(session, failure, alerter=context.alerter, on_failure=hook)
        return
    if attempt_id is not None:
        async with unit_of_work(context.sessionmaker) as session:
            await session.execute(delete(JobAttempt).where(JobAttempt.id == uuid.UUID(attempt_id)))
    seconds = time.perf_counter() - started
    DATABASE.recovered(component="job", started=began)
    record_job(job.name, "ok", seconds)
    await _count_run(context, "ok", tenant_id)
    log.info(
        "job",
        job=job.name,
        outcome="ok",
        seconds=round(seconds, 4),
        tenant_id=tenant_id,
        workspace_id=workspace_id,
    )


async def _count_run(context: JobContext, outcome: str, tenant_id: object) -> None:
    """Count the run in its minute (``kit/throughput.py``), never failing the job for it."""
    throughput = context.queue.throughput if context.queue is not None else None
    if throughput is None:
        return
    try:
        await throughput.record(outcome, tenant_id if isinstance(tenant_id, str) else None)
    except Exception:
        log.exception("job_throughput_not_counted", outcome=outcome)


async def _reject(
    context: JobContext,
    job: Job[Any, Any],
    args: dict[str, Any],
    attempt_id: str | None,
    error: ValidationError,
) -> None:
    """Give up on a run whose payload does not validate: its ``failed_jobs`` row and alert, and
    no further try (a retry row it came from is deleted)."""
    async with unit_of_work(context.sessionmaker) as session:
        attempt = await session.get(JobAttempt, uuid.UUID(attempt_id)) if attempt_id else None
        attempts = (attempt.attempts if attempt is not None else 0) + 1
        if attempt is not None:
            await session.delete(attempt)
        failure = FinalFailure.of_error(job.name, args, error, attempts=attempts)
        await give_up(session, failure, alerter=context.alerter)


async def _schedule_retry(
    context: JobContext,
    job: Job[Any, Any],
    args: dict[str, Any],
    attempt_id: str | None,
    error: BaseException,
) -> int | None:
    """Record the next try of a failed run; None when the job has no tries left."""
    now = utcnow()
    message = f"{type(error).__name__}: {error}"[:2000]
    async with unit_of_work(context.sessionmaker) as session:
        attempt = await session.get(JobAttempt, uuid.UUID(attempt_id)) if attempt_id else None
        attempts = (attempt.attempts if attempt is not None else 0) + 1
        if attempts >= job.max_attempts:
            if attempt is not None:
                await session.delete(attempt)
            return None
        delay = job.retry_policy.delay(attempts)
        if attempt is None:
            attempt = JobAttempt(job_name=job.name, payload=args)
            session.add(attempt)
        attempt.attempts = attempts
        attempt.next_attempt_at = now + timedelta(seconds=delay)
        attempt.last_error = message
        return attempts


async def enqueue_due_retries(context: JobContext, limit: int = 1_000) -> int:
    """Hand the due retries to the queue (called by the sweeper)."""
    if context.queue is None:
        return 0
    now = utcnow()
    async with unit_of_work(context.sessionmaker) as session:
        due = (
            await session.execute(
                update(JobAttempt)
                .where(
                    JobAttempt.id.in_(
                        select(JobAttempt.id)
                        .where(JobAttempt.next_attempt_at <= now)
                        .order_by(JobAttempt.next_attempt_at)
                        .limit(limit)
                    )
                )
                .values(next_attempt_at=now + timedelta(seconds=RETRY_LEASE_SECONDS))
                .returning(JobAttempt.id, JobAttempt.job_name, JobAttempt.payload)
            )
        ).all()
    for attempt_id, job_name, payload in due:
        await context.queue.enqueue(job_name, {**payload, ATTEMPT_KEY: str(attempt_id)})
    return len(due)


class JobStreamBroker(RedisStreamBroker):
    """Taskiq's Redis stream broker, surviving Redis outages and the loss of its consumer group.

    While Redis is down, Taskiq's receiver would restart its listener at once, for ever (tens
    of tracebacks a second and a busy CPU): this listener waits instead, backing off with
    jitter, logs ``redis_unavailable`` once and ``redis_recovered`` when Redis answers again.
    If Redis was flushed or restarted without persistence, the group a worker reads from is
    gone and every read fails with NOGROUP; the group is declared again and reading goes on.
    Messages lost with Redis only delay work: the sweeper and the scanners find it again in
    the database.
    """

    # Set by shutdown(): a listener then ends instead of waiting for Redis to come back (its
    # pool was closed on purpose, and Taskiq may leave a read of it running in a task).
    _closing = False

    async def shutdown(self) -> None:
        self._closing = True
        await super().shutdown()

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        while not self._closing:
            try:
                # Closed with this generator, not whenever it is collected: Taskiq's listener
                # holds a Redis connection while it reads.
                async with contextlib.aclosing(super().listen()) as messages:
                    async for message in messages:
                        yield message
            except ResponseError as error:
                if self._closing:
                    return
                # NOGROUP: the group is gone; UNBLOCKED: the stream was deleted (a flush) while
                # this listener was blocked reading it. Either way: declare it again.
                if "NOGROUP" not in str(error) and "UNBLOCKED" not in str(error):
                    raise
                log.warning("job_stream_group_recreated", stream=self.queue_name)
                await self._wait_for_redis(None)
            except REDIS_UNAVAILABLE_ERRORS as error:
                if self._closing:
                    return
                await self._wait_for_redis(error)

    async def _wait_for_redis(self, error: BaseException | None) -> None:
        """Return once Redis answers and the consumer group exists (again)."""
        if error is not None:
            REDIS.failed(error, component="job_listener", stream=self.queue_name)
        backoff = Backoff()
        while not self._closing:
            try:
                await self._declare_consumer_group()
            except REDIS_UNAVAILABLE_ERRORS as still_down:
                REDIS.failed(still_down, component="job_listener", stream=self.queue_name)
                await asyncio.sleep(backoff.next_delay())
                continue
            REDIS.recovered(component="job_listener")
            return


async def repeat_forever(
    interval: float, work: Callable[[], Awaitable[object]], *, failure_event: str
) -> None:
    """Run ``work`` every ``interval`` seconds for ever (the scheduler's loops).

    A failure is logged under ``failure_event`` and the next round tries again, except while
    Redis or the database is unreachable: then the outage is logged once (see
    :mod:`notiflow.kit.outages`) and the rounds back off, with jitter, up to ten intervals
    (and 30 s) apart, so the loop is back within a few intervals of the outage's end.
    """
    backoff = Backoff(cap=min(BACKOFF_CAP_SECONDS, 10 * interval))
    loop_name = failure_event.removesuffix("_failed")
    waiting_out: Outage | None = None  # the outage this loop is backing off from
    while True:
        try:
            await work()
        except Exception as error:
            outage = _outage_of(error)
            if outage is None:
                log.exception(failure_event)
                await asyncio.sleep(interval)
                continue
            waiting_out = outage
            outage.failed(error, component=loop_name)
            await asyncio.sleep(max(interval, backoff.next_delay()))
            continue
        if waiting_out is not None:
            waiting_out.recovered(component=loop_name)
            waiting_out = None
            backoff.reset()
        await asyncio.sleep(interval)


def _outage_of(error: BaseException) -> Outage | None:
    if database_unavailable(error):
        return DATABASE
    if redis_unavailable(error):
        return REDIS
    return None


# The Redis stream of jobs (with NOTIFLOW_REDIS_URL).
JOB_STREAM = "notiflow:jobs"
QUEUE_SAMPLE_SECONDS = 5.0


def build_broker(redis_url: str | None) -> AsyncBroker:
    if redis_url:
        # Streams with consumer groups: a message is acknowledged only after its job ran, and
        # one a dead worker held is claimed by another after the idle timeout.
        return JobStreamBroker(
            redis_url, queue_name=JOB_STREAM, maxlen=1_000_000, idle_timeout=120_000
        )
    # No more jobs at once than the database pool can serve (10 + 20 overflow): beyond that,
    # jobs only wait for a connection and time out.
    return InMemoryBroker(max_async_tasks=JOB_CONCURRENCY)


async def job_queue_depth(redis: Redis) -> int:
    """Jobs waiting in the Redis stream: not yet handed to a worker (the group's ``lag``) plus
    handed out and not acknowledged (``pending``: running, or held by a dead worker)."""
    try:
        groups = await redis.xinfo_groups(JOB_STREAM)
        if not groups:  # no worker has read yet: every entry waits
            return int(await redis.xlen(JOB_STREAM))
    except ResponseError:  # no stream yet: nothing was ever queued
        return 0
    return sum(int(group.get("lag") or 0) + int(group.get("pending") or 0) for group in groups)


async def sample_queue_depth_forever(
    redis: Redis,
    interval: float = QUEUE_SAMPLE_SECONDS,
    throughput: JobThroughput | None = None,
) -> None:
    """Keep ``notiflow_queue_depth{queue="jobs"}`` current in this process's /metrics, and the
    minute's depth in ``throughput`` (the admin API's chart of the last hours)."""
    while True:
        # An outage is told by the process's other loops; the gauge keeps its last value.
        with contextlib.suppress(*REDIS_UNAVAILABLE_ERRORS):
            depth = await job_queue_depth(redis)
            set_queue_depth("jobs", depth)
            if throughput is not None:
                await throughput.record_depth(depth)
        await asyncio.sleep(interval)


async def sample_embedded_depth_forever(
    queue: JobQueue, interval: float = QUEUE_SAMPLE_SECONDS
) -> None:
    """The embedded queue's depth (runs waiting for a slot, and running) into the gauge and the
    minute's depth, as :func:`sample_queue_depth_forever` does for the Redis stream."""
    while True:
        depth = queue.waiting + queue.running
        set_queue_depth("jobs", depth)
        if queue.throughput is not None:
            await queue.throughput.record_depth(depth)
        await asyncio.sleep(interval)
