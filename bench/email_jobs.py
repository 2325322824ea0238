"""Benchmark: delivered emails per second and jobs per second, notiflow versus the bare tools.

The send path and the job runner (docs/delivery.md); one run, side by side, loopback only.

Part 1 -- delivered emails per second to a local SMTP sink. An SMTP sink runs in its own process
pinned to one CPU and accepts and discards every message: ``aiosmtpd`` (what the tests use) and
``raw``, a minimal asyncio SMTP responder (EHLO/MAIL/RCPT/DATA/QUIT, same EHLO answer) that shows
whether aiosmtpd itself is the limit. For every round, ``send_to_tenant`` (channels in-app +
email, no listener: nothing is enqueued) writes N pending email deliveries for a tenant of N
members on PostgreSQL; then, timed, notiflow's real path drains them:

  notiflow 1 sender        ``DeliveryWorker.process`` over batches of 500 ids, one after the
                           other, as successive ``delivery.send`` jobs do, with one ``EmailSender``
  notiflow 1 sender, 4 jobs at once
                           the same four batches processed concurrently by ONE DeliveryWorker and
                           ONE EmailSender: what one ``notiflow worker`` process does with four
                           jobs (the runtime wires a single EmailSender per process)
  notiflow 4 senders       K=4 DeliveryWorkers, each with its own EmailSender (own connection),
                           processing disjoint batches concurrently in one process

versus the bare figure: aiosmtplib ``send_message`` of the same N messages (rendered beforehand
with notiflow's ``build_email``, so only the SMTP transfer is timed) over one reused connection,
and over 4 connections at once; no database. Every run checks that all N emails reached the sink
and (notiflow) that all N ledger rows are ``sent``. Reported per email: CPU ms of this process,
of the PostgreSQL backends of the scratch database and of the sink.

Where notiflow's time per email goes: a profiled pass of "notiflow 1 sender" (its own engine,
instrumented) splits the wall time into claim, re-check, render, SMTP, the commit point, the
record, the log line, and within them SQL in the driver, COMMIT and session close; then a
cProfile pass counting CPU time (``--cpu-profile`` emails) charges this process's CPU per email
to code areas (sqlalchemy, stdlib email, asyncpg, ...; a C function to whoever called it).

Part 2 -- job throughput, enqueue -> done (acknowledged). A worker process pinned to one CPU
runs ``taskiq.api.run_receiver_task`` on a Taskiq ``RedisStreamBroker`` with the same options as
``build_broker`` but a dedicated stream and consumer group of this run (``notiflow worker``
cannot be pointed at another stream: ``build_broker`` hard-codes ``notiflow:jobs``), with
``notiflow worker``'s default concurrency (``JOB_CONCURRENCY``). This process enqueues M jobs
one after the other and polls the consumer group (XINFO GROUPS: entries-read and pending) until
all are acknowledged:

  taskiq redis no-op               the engine's own bare figure: a no-op task (same payload size)
  notiflow redis delivery.send []  ``JobQueue.enqueue("delivery.send")`` with no ids: notiflow's
                                   adapter and ``run_job`` (log line, metrics) around nothing
  notiflow redis delivery.send x1  M jobs, one pending email delivery each, to the SMTP sink
  taskiq in-memory no-op           ``build_broker(None)`` (the embedded InMemoryBroker), here
  EXP ... + TaskiqDepends(Context) the bare no-op with the dependency notiflow's adapter declares
  notiflow in-memory ...           the same two notiflow jobs through the embedded broker

"raised" counts jobs that raised (their retry rows in ``job_attempts``), "sent" the deliveries
that reached ``sent``; a run with either short is marked INCOMPLETE (its rate is still shown).

The notiflow worker process is a copy of ``notiflow worker``'s main (create_runtime, gc.freeze,
run_receiver_task) on the dedicated stream, without joining the realtime cluster (not on the
delivery path). Logs are production's JSON lines at INFO (in this process written to /dev/null,
in the worker to a temporary file). CPUs (2 or more): this process on the first in part 1 and on
the second in part 2; the sinks on the second; the job workers on the first; PostgreSQL and
Redis where the kernel puts them. Before every measured run the script waits (up to
``--wait-quiet`` s) until no core is busier than ``--quiet-threshold``. Warm-up rounds use
``--warmup-size`` emails/jobs. The scratch database, the stream keys and the children's logs
are removed at the end.

Run::

    .venv/bin/python bench/email_jobs.py          # N=2,000, M=5,000, 2 rounds + warm-up: ~11 min
    .venv/bin/python bench/email_jobs.py --emails 300 --jobs 1000 --rounds 1 --sinks raw  # ~2 min
    .venv/bin/python bench/email_jobs.py --jobs 0          # part 1 only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import aiosmtplib
import asyncpg
from redis.asyncio import Redis
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from taskiq import AsyncBroker, Context, InMemoryBroker, TaskiqDepends
from taskiq.api import run_receiver_task
from taskiq_redis import RedisStreamBroker

from _common import (
    REDIS_URL,
    check_local,
    drop_database,
    emit_json,
    git_revision,
    loop_name,
    machine_info,
    pg_dsn,
    print_table,
    reset_database,
    run,
    server_versions,
    sqlalchemy_url,
)
from notiflow.config import Environment, Settings, SmtpTls
from notiflow.delivery import email as email_module
from notiflow.delivery import service as service_module
from notiflow.delivery.email import EmailSender, build_email
from notiflow.delivery.jobs import BATCH
from notiflow.delivery.service import DeliveryWorker
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.db import create_engine
from notiflow.kit.ids import new_id, utcnow
from notiflow.kit.logging import configure_logging
from notiflow.kit.migrate import upgrade
from notiflow.kit.queue import JOB_CONCURRENCY, JobQueue, build_broker
from notiflow.kit.uow import create_sessionmaker
from notiflow.main.jobs import ALL_JOBS
from notiflow.main.runtime import Runtime, create_runtime
from notiflow.models import Notification, NotificationDelivery, User
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.types import NotificationChannel, NotificationType
from notiflow.notifications.unread import MemoryUnreadCountCache
from ws_fanout import CoreSample, cpu_seconds, wait_for_quiet

HOST = "127.0.0.1"
BENCH_FILE = Path(__file__).resolve()
NOTIFICATION_TYPE = NotificationType.SYSTEM_ANNOUNCEMENT  # email on by default
CHANNELS = [NotificationChannel.IN_APP, NotificationChannel.EMAIL]
MAIL_FROM = "notiflow <no-reply@notiflow.bench.example>"
PUBLIC_URL = "https://notiflow.bench.example"
NOOP_TASK = "bench.noop"
NOOP_CONTEXT_TASK = "bench.noop_context"
SINK_KINDS = ("raw", "aiosmtpd")
# The EHLO answer of aiosmtpd 1.4 with its defaults, so both sinks offer the client the same.
EHLO_REPLY = b"250-sink\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250 HELP\r\n"


# ============================================================================ child: SMTP sink


@dataclass
class SinkStats:
    messages: int = 0
    sessions: int = 0


class RawSmtpSink(asyncio.Protocol):
    """The least an SMTP server can do and still be one: answer every command, find the end of
    DATA, count the message, forget it."""

    def __init__(self, stats: SinkStats) -> None:
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.stats.sessions += 1
        self.transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        buffer = self.buffer + data
        while buffer:
            if self.in_data:
                end = buffer.find(b"\r\n.\r\n")
                if end < 0:
                    self.buffer = buffer[-4:]  # the terminator may straddle two reads
                    return
                buffer = buffer[end + 5 :]
                self.in_data = False
                self.stats.messages += 1
                transport.write(b"250 2.0.0 OK: queued\r\n")
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                self.buffer = buffer
                return
            verb = buffer[:4].upper()
            buffer = buffer[end + 2 :]
            if verb in (b"EHLO", b"HELO"):
                transport.write(EHLO_REPLY)
            elif verb == b"DATA":
                self.in_data = True
                buffer = b"\r\n" + buffer  # an empty body ends with the very next ".\r\n"
                transport.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                transport.write(b"221 Bye\r\n")
                transport.close()
                return
            else:  # MAIL, RCPT, RSET, NOOP
                transport.write(b"250 OK\r\n")
        self.buffer = b""


class DiscardHandler:
    """aiosmtpd handler: accept every message and drop it."""

    def __init__(self, stats: SinkStats) -> None:
        self.stats = stats

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.stats.messages += 1
        return "250 2.0.0 OK: queued"


async def stdin_lines() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        yield line.decode().strip()


def say(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def sink_main(args: argparse.Namespace) -> None:
    stats = SinkStats()
    loop = asyncio.get_running_loop()
    factory: Callable[[], asyncio.Protocol]
    if args.sink_kind == "raw":

        def factory() -> asyncio.Protocol:
            return RawSmtpSink(stats)

    else:
        from aiosmtpd.smtp import SMTP

        handler = DiscardHandler(stats)

        def factory() -> asyncio.Protocol:
            stats.sessions += 1
            return SMTP(handler, hostname="sink")

    server = await loop.create_server(factory, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    say({"kind": args.sink_kind, "port": port, "pid": os.getpid(), "loop": loop_name()})
    async for command in stdin_lines():  # EOF ends the sink
        if command == "stats":
            say({"messages": stats.messages, "sessions": stats.sessions})
    server.close()


# ============================================================================ child: job worker


def bench_settings(database: str, smtp_port: int, redis_url: str | None) -> Settings:
    return Settings(
        env=Environment.DEVELOPMENT,
        database_url=sqlalchemy_url(database),
        redis_url=redis_url,
        smtp_host=HOST,
        smtp_port=smtp_port,
        smtp_tls=SmtpTls.NONE,
        smtp_timeout_seconds=10.0,
        mail_from=MAIL_FROM,
        public_url=PUBLIC_URL,
        push_rollout="all",
        log_level="INFO",
        log_json=True,
    )


def stream_broker(redis_url: str, stream: str, group: str) -> RedisStreamBroker:
    """``build_broker``'s Redis broker (same maxlen and idle timeout) on this run's own stream
    and consumer group."""
    return RedisStreamBroker(
        redis_url,
        queue_name=stream,
        consumer_group_name=group,
        maxlen=1_000_000,
        idle_timeout=120_000,
    )


async def noop_job(payload: dict[str, Any]) -> None:
    return None


async def noop_context_job(
    payload: dict[str, Any],
    context: Context = TaskiqDepends(),  # noqa: B008 - Taskiq's injection idiom
) -> None:
    """EXPERIMENT: the no-op with the Context dependency notiflow's job adapter declares."""
    return None


async def worker_main(args: argparse.Namespace) -> None:
    configure_logging("INFO", json=True)  # stderr: a log file the parent chose
    runtime: Runtime | None = None
    broker: AsyncBroker
    if args.mode == "noop":
        broker = stream_broker(args.redis_url, args.stream, args.group)
        broker.register_task(noop_job, task_name=NOOP_TASK)
        await broker.startup()
    else:
        # ``notiflow worker``: create_runtime + the queue started + gc.freeze + run_receiver_task;
        # only the stream differs (and the realtime cluster is not joined).
        runtime = create_runtime(bench_settings(args.database, args.smtp_port, args.redis_url))
        runtime.queue = JobQueue(stream_broker(args.redis_url, args.stream, args.group), ALL_JOBS)
        await runtime.queue.start(runtime)
        broker = runtime.queue.broker
    gc.collect()
    gc.freeze()
    broker.is_worker_process = True
    receiver = asyncio.create_task(run_receiver_task(broker, max_async_tasks=args.concurrency))
    say({"pid": os.getpid(), "mode": args.mode, "loop": loop_name()})
    async for _ in stdin_lines():  # EOF ends the worker
        pass
    receiver.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await receiver
    if runtime is not None:
        await runtime.close()
    else:
        await broker.shutdown()


# ============================================================================ parent: children


class Child:
    """A child process of this script (``--role sink|worker``), spoken to in JSON lines."""

    def __init__(self, name: str, argv: list[str], cpu: int | None, log: Path) -> None:
        self.name = name
        self.argv = argv
        self.cpu = cpu
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.hello: dict[str, Any] = {}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, within: float = 60.0) -> Child:
        pin = [] if self.cpu is None else ["--cpu", str(self.cpu)]
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(BENCH_FILE),
                *self.argv,
                *pin,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self.hello = await self.read(within)
        return self

    async def read(self, within: float = 10.0) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not line:
            raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
        return dict(json.loads(line))

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc is not None
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.read()

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the child shuts down cleanly
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# ============================================================================ parent: measuring


def safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuWatch:
    """CPU seconds of this process, the PostgreSQL backends of the scratch database, Redis and
    the children over one measured stretch, and how busy each core was."""

    def __init__(self, database: str, redis_pid: int | None, children: dict[str, int]) -> None:
        self.database = database
        self.redis_pid = redis_pid
        self.children = children
        self.before: dict[str, Any] = {}

    async def pg_pids(self) -> list[int]:
        connection = await asyncpg.connect(pg_dsn(self.database))
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                self.database,
            )
        finally:
            await connection.close()
        return [int(row["pid"]) for row in rows]

    async def start(self) -> None:
        self.before = {
            "own": time.process_time(),
            "pg": {pid: safe_cpu(pid) for pid in await self.pg_pids()},
            "redis": safe_cpu(self.redis_pid) if self.redis_pid else 0.0,
            "children": {name: safe_cpu(pid) for name, pid in self.children.items()},
            "cores": CoreSample(),
        }

    async def stop(self) -> dict[str, Any]:
        own = time.process_time() - self.before["own"]
        pg_before: dict[int, float] = self.before["pg"]
        pg = sum(safe_cpu(pid) - pg_before.get(pid, 0.0) for pid in await self.pg_pids())
        redis = (safe_cpu(self.redis_pid) - self.before["redis"]) if self.redis_pid else 0.0
        children = {
            name: safe_cpu(pid) - self.before["children"][name]
            for name, pid in self.children.items()
        }
        cores = CoreSample().busy_since(self.before["cores"])
        return {
            "own": own,
            "pg": pg,
            "redis": redis,
            **children,
            "cores": {str(k): round(v, 3) for k, v in sorted(cores.items())},
        }


@dataclass
class Sample:
    variant: str
    count: int
    seconds: float
    cpu: dict[str, Any]
    quiet_before: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Results:
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def declare(self, names: Sequence[str]) -> None:
        """Report in this order (runs rotate the order of the variants)."""
        for name in names:
            self.samples.setdefault(name, [])

    def add(self, sample: Sample) -> None:
        self.samples.setdefault(sample.variant, []).append(sample)

    def median_rate(self, variant: str) -> float:
        return statistics.median(s.rate for s in self.samples[variant])

    def has(self, variant: str) -> bool:
        return bool(self.samples.get(variant))


# ============================================================================ parent: data


async def seed(database: str, members: int) -> uuid.UUID:
    """One tenant with ``members`` members, all with email on and no per-type preference, so a
    send with channels in-app + email writes exactly one pending email delivery per member."""
    now = utcnow()
    tenant_id = new_id()
    users = []
    memberships = []
    for index in range(members):
        user_id = new_id()
        users.append(
            (
                user_id,
                f"member{index}@bench.example",
                f"Member {index}",
                "en",
                "UTC",
                True,
                True,
                now,
                now,
            )
        )
        role = "owner" if index == 0 else "member"
        memberships.append((new_id(), tenant_id, user_id, role, now, now))
    connection = await asyncpg.connect(pg_dsn(database))
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO tenants (id, name, plan, settings, created_at, updated_at) "
                "VALUES ($1, 'bench-email-tenant', 'business', '{}'::jsonb, $2, $2)",
                tenant_id,
                now,
            )
            await connection.copy_records_to_table(
                "users",
                records=users,
                columns=[
                    "id",
                    "email",
                    "name",
                    "locale",
                    "timezone",
                    "email_notifications_enabled",
                    "push_notifications_enabled",
                    "created_at",
                    "updated_at",
                ],
            )
            await connection.copy_records_to_table(
                "memberships",
                records=memberships,
                columns=["id", "tenant_id", "user_id", "role", "created_at", "updated_at"],
            )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return tenant_id


def payload(index: int) -> NotificationPayload:
    return NotificationPayload(
        type=NOTIFICATION_TYPE,
        title=f"Scheduled maintenance #{index}",
        message="The publishing service will be unavailable on Sunday from 02:00 to 03:00 UTC "
        "while we upgrade the database. Scheduled posts will go out right after.",
        data={"announcement_id": index, "severity": "info"},
        action_url="https://status.example.com/incidents/maintenance",
    )


class Outbox:
    """Writes pending email deliveries with the real ``send_to_tenant`` (nothing listening, so
    nothing is enqueued) and checks what became of them."""

    def __init__(self, runtime: Runtime, database: str, tenant_id: uuid.UUID) -> None:
        self.runtime = runtime
        self.database = database
        self.tenant_id = tenant_id
        self.sends = 0

    async def pending(self, count: int) -> tuple[list[uuid.UUID], uuid.UUID]:
        ids: list[uuid.UUID] = []
        event_id: uuid.UUID | None = None
        while len(ids) < count:
            self.sends += 1
            async with self.runtime.sessionmaker() as session:
                service = self.runtime.notification_service(session)
                result = await service.send_to_tenant(
                    self.tenant_id, payload(self.sends), channels=CHANNELS
                )
                await commit_and_flush_effects(session)
            event_id = event_id or result.event_id
            ids += [d for record in result.notifications for d in record.pending_delivery_ids]
        assert event_id is not None
        return ids[:count], event_id

    async def statuses(self, ids: Sequence[uuid.UUID]) -> dict[str, int]:
        connection = await asyncpg.connect(pg_dsn(self.database))
        try:
            rows = await connection.fetch(
                "SELECT status, count(*) AS n FROM notification_deliveries "
                "WHERE id = ANY($1::uuid[]) GROUP BY status",
                list(ids),
            )
        finally:
            await connection.close()
        return {str(row["status"]): int(row["n"]) for row in rows}

    async def job_failures(self, reset: bool = False) -> dict[str, int]:
        """Jobs that raised since the last reset: retries scheduled in ``job_attempts`` (by
        error) and ``failed_jobs`` rows."""
        connection = await asyncpg.connect(pg_dsn(self.database))
        try:
            if reset:
                await connection.execute("DELETE FROM job_attempts; DELETE FROM failed_jobs")
                return {}
            rows = await connection.fetch(
                "SELECT left(coalesce(last_error, '?'), 100) AS error, count(*) AS n "
                "FROM job_attempts GROUP BY 1"
            )
            failed = await connection.fetchval("SELECT count(*) FROM failed_jobs")
        finally:
            await connection.close()
        out = {f"retry: {row['error']}": int(row["n"]) for row in rows}
        if failed:
            out["failed_jobs rows"] = int(failed)
        return out

    async def messages(self, event_id: uuid.UUID) -> list[tuple[EmailMessage, str]]:
        """The emails notiflow sends for one send, rendered with its own ``build_email`` (for
        the bare path, which then only transfers them)."""
        settings = self.runtime.settings
        async with self.runtime.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(NotificationDelivery, Notification, User)
                    .join(Notification, Notification.id == NotificationDelivery.notification_id)
                    .join(User, User.id == NotificationDelivery.user_id)
                    .where(
                        Notification.event_id == event_id,
                        NotificationDelivery.channel == NotificationChannel.EMAIL,
                    )
                )
            ).all()
        domain = email_module.mail_domain(settings)
        return [
            (
                build_email(notification, user, settings, message_id=f"<{delivery.id}@{domain}>"),
                user.email,
            )
            for delivery, notification, user in rows
        ]


# ============================================================================ part 1: emails


def batches(ids: Sequence[uuid.UUID]) -> list[list[uuid.UUID]]:
    return [list(ids[start : start + BATCH]) for start in range(0, len(ids), BATCH)]


async def drain(workers: Sequence[DeliveryWorker], ids: Sequence[uuid.UUID], mode: str) -> None:
    """sequential: one worker, batch after batch; shared: one worker, all batches at once;
    parallel: worker k takes batches k, k+K, ... (one after the other), all workers at once."""
    chunks = batches(ids)
    if mode == "sequential":
        for chunk in chunks:
            await workers[0].process(chunk)
    elif mode == "shared":
        await asyncio.gather(*(workers[0].process(chunk) for chunk in chunks))
    else:

        async def one(worker: DeliveryWorker, mine: list[list[uuid.UUID]]) -> None:
            for chunk in mine:
                await worker.process(chunk)

        await asyncio.gather(
            *(one(worker, chunks[k :: len(workers)]) for k, worker in enumerate(workers))
        )


class BareSmtp:
    """aiosmtplib clients kept connected (as EmailSender keeps its connection)."""

    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.clients = [
            aiosmtplib.SMTP(hostname=HOST, port=port, use_tls=False, start_tls=False, timeout=10.0)
            for _ in range(connections)
        ]

    async def connect(self) -> None:
        for client in self.clients:
            if not client.is_connected:
                await client.connect()

    async def send(self, messages: Sequence[tuple[EmailMessage, str]]) -> None:
        async def one(client: aiosmtplib.SMTP, mine: Sequence[tuple[EmailMessage, str]]) -> None:
            for message, recipient in mine:
                await client.send_message(message, recipients=[recipient])

        count = len(self.clients)
        await asyncio.gather(
            *(one(client, messages[k::count]) for k, client in enumerate(self.clients))
        )

    async def close(self) -> None:
        for client in self.clients:
            if client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await client.quit()


class PhaseClock:
    """Exclusive wall time per phase (phases nest: a parent's figure excludes its children),
    plus SQL-in-driver, COMMIT and session-close time attributed to the phase running. Valid for
    one sequential worker only."""

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.sql: dict[str, float] = defaultdict(float)
        self.statements: dict[str, int] = defaultdict(int)
        self.commit: dict[str, float] = defaultdict(float)
        self.commits: dict[str, int] = defaultdict(int)
        self.close: dict[str, float] = defaultdict(float)
        self._stack: list[list[Any]] = []

    def reset(self) -> None:
        for totals in (
            self.exclusive,
            self.calls,
            self.sql,
            self.statements,
            self.commit,
            self.commits,
            self.close,
        ):
            totals.clear()
        self._stack.clear()

    @property
    def current(self) -> str:
        return str(self._stack[-1][0]) if self._stack else "outside"

    def enter(self, name: str) -> None:
        self._stack.append([name, time.perf_counter(), 0.0])

    def leave(self) -> None:
        name, start, child = self._stack.pop()
        elapsed = time.perf_counter() - start
        self.exclusive[name] += elapsed - child
        self.calls[name] += 1
        if self._stack:
            self._stack[-1][2] += elapsed

    def wrap(self, name: str, function: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        async def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter(name)
            try:
                return await function(*args, **kwargs)
            finally:
                self.leave()

        return timed

    def wrap_sync(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.enter(name)
            try:
                return function(*args, **kwargs)
            finally:
                self.leave()

        return timed

    def attach(self, engine: AsyncEngine) -> None:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            conn.info["bench_t0"] = time.perf_counter()

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            phase = self.current
            self.sql[phase] += time.perf_counter() - conn.info.pop("bench_t0", 0.0)
            self.statements[phase] += 1


class TimedLog:
    """The delivery module's logger, with ``info`` (the per-delivery JSON line) timed."""

    def __init__(self, inner: Any, clock: PhaseClock) -> None:
        self.inner = inner
        self.info = clock.wrap_sync("log line (structlog JSON)", inner.info)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


PHASES = (
    ("claim", "claim (UPDATE..RETURNING + SELECT, per 500)"),
    ("recheck", "re-check (tenant, role, preference)"),
    ("render", "render (Jinja2 + EmailMessage)"),
    ("smtp", "SMTP exchange (MAIL, RCPT, DATA, body, dot)"),
    ("commit_point", "commit point (2 UPDATE + COMMIT)"),
    ("record", "record (UPDATE + COMMIT)"),
    ("log line (structlog JSON)", "log line (structlog JSON)"),
    ("glue", "rest of process/_deliver (metrics, context)"),
)


class ProfiledWorker:
    """One sequential DeliveryWorker with its own EmailSender on an instrumented engine of its
    own (created once, so its statement caches are as warm as the others')."""

    def __init__(self, settings: Settings) -> None:
        self.clock = PhaseClock()
        self.engine = create_engine(settings.database_url)
        self.clock.attach(self.engine)
        self.sender = EmailSender(settings)
        clock = self.clock
        worker = DeliveryWorker(create_sessionmaker(self.engine), settings, {"email": self.sender})
        worker.process = clock.wrap("glue", worker.process)  # type: ignore[method-assign]
        worker.claim = clock.wrap("claim", worker.claim)  # type: ignore[method-assign]
        worker._still_wanted = clock.wrap(  # type: ignore[method-assign]
            "recheck", worker._still_wanted
        )
        worker._mark_handed_over = clock.wrap(  # type: ignore[method-assign]
            "commit_point", worker._mark_handed_over
        )
        worker._record = clock.wrap("record", worker._record)  # type: ignore[method-assign]
        self.sender.send = clock.wrap("smtp", self.sender.send)  # type: ignore[method-assign]
        self.worker = worker

    async def drain(self, ids: Sequence[uuid.UUID]) -> tuple[float, PhaseClock]:
        clock = self.clock
        clock.reset()
        original_build = email_module.build_email
        original_log = service_module.log
        original_commit = AsyncSession.commit
        original_close = AsyncSession.close

        async def timed_commit(session: AsyncSession) -> None:
            start = time.perf_counter()
            try:
                await original_commit(session)
            finally:
                clock.commit[clock.current] += time.perf_counter() - start
                clock.commits[clock.current] += 1

        async def timed_close(session: AsyncSession) -> None:
            start = time.perf_counter()
            try:
                await original_close(session)
            finally:
                clock.close[clock.current] += time.perf_counter() - start

        email_module.build_email = clock.wrap_sync("render", original_build)
        service_module.log = TimedLog(original_log, clock)
        AsyncSession.commit = timed_commit  # type: ignore[method-assign,assignment]
        AsyncSession.close = timed_close  # type: ignore[method-assign,assignment]
        try:
            start = time.perf_counter()
            await drain([self.worker], ids, "sequential")
            seconds = time.perf_counter() - start
        finally:
            AsyncSession.commit = original_commit  # type: ignore[method-assign]
            AsyncSession.close = original_close  # type: ignore[method-assign]
            email_module.build_email = original_build
            service_module.log = original_log
        return seconds, clock

    async def close(self) -> None:
        await self.sender.close()
        await self.engine.dispose()


def code_area(filename: str, function: str) -> str:
    """Who owns a profiled function: an installed package, a stdlib module, notiflow."""
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/notiflow/" in filename:
        return "notiflow"
    if filename == "~":  # a C function called from Python
        if "uvloop" in function or "select" in function or "epoll" in function:
            return "event loop (C)"
        if "asyncpg" in function:
            return "asyncpg"
        return "C builtins (str, re, dict, ...)"
    if "/lib/python3" in filename:
        module = filename.split("/lib/python3", 1)[1].split("/", 2)[1].removesuffix(".py")
        return f"stdlib {module}"
    return "other"


async def cpu_profiled_drain(worker: DeliveryWorker, ids: Sequence[uuid.UUID]) -> dict[str, Any]:
    """The sequential drain under cProfile counting CPU time (process_time), so waiting is
    not counted: whose code burns this process's CPU per email."""
    profiler = cProfile.Profile(time.process_time)
    cpu0 = time.process_time()
    start = time.perf_counter()
    profiler.enable()
    try:
        await drain([worker], ids, "sequential")
    finally:
        profiler.disable()
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    stats = pstats.Stats(profiler)
    areas: dict[str, float] = defaultdict(float)
    functions: list[tuple[float, str]] = []
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, function), (_cc, _nc, tottime, _ct, callers) in raw.items():
        if filename == "~" and callers:
            # A C function (str.join, greenlet.switch, isinstance...): charged to whoever
            # called it, with the time spent under each caller.
            for (caller_file, _line, caller_function), timing in callers.items():
                areas[code_area(caller_file, caller_function)] += timing[2]
        else:
            areas[code_area(filename, function)] += tottime
        where = filename.split("site-packages/")[-1].split("/lib/python3.11/")[-1]
        functions.append((tottime, f"{function} ({where}:{line})"))
    per = 1000 / len(ids)
    functions.sort(reverse=True)
    return {
        "emails": len(ids),
        "wall_ms_per_email": wall * per,
        "cpu_ms_per_email": cpu * per,
        "areas_ms_per_email": {
            area: round(seconds * per, 4)
            for area, seconds in sorted(areas.items(), key=lambda item: -item[1])
        },
        "top_functions_ms_per_email": [
            [name, round(seconds * per, 4)] for seconds, name in functions[:15]
        ],
    }


# ============================================================================ part 2: jobs


async def group_state(redis: Redis, stream: str, group: str) -> tuple[int, int]:
    """(entries read, pending) of the consumer group: done = all read and none pending."""
    for info in await redis.xinfo_groups(stream):
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            return int(info.get("entries-read") or 0), int(info["pending"])
    return 0, 0


async def wait_acked(
    redis: Redis, stream: str, group: str, target: int, deadline: float, poll: float = 0.002
) -> float | None:
    """perf_counter() when the group has read ``target`` entries and acknowledged them all."""
    while time.perf_counter() < deadline:
        read, pending = await group_state(redis, stream, group)
        if read >= target and pending == 0:
            return time.perf_counter()
        await asyncio.sleep(poll)
    return None


# ============================================================================ main


@dataclass
class Plan:
    emails: int
    jobs: int
    rounds: int
    warmup: int
    senders: int
    sinks: list[str]
    concurrency: int
    job_timeout: float


class Bench:
    def __init__(self, args: argparse.Namespace, cpus: tuple[int | None, int | None]) -> None:
        self.args = args
        self.cpus = cpus
        self.plan = Plan(
            emails=args.emails,
            jobs=args.jobs,
            rounds=args.rounds,
            warmup=args.warmup,
            senders=args.senders,
            sinks=[kind for kind in args.sinks.split(",") if kind],
            concurrency=args.concurrency,
            job_timeout=args.job_timeout,
        )
        token = uuid.uuid4().hex[:10]
        self.database = f"notiflow_bench_email_{token}"
        self.prefix = f"notiflow-bench-email-{token}"
        self.workdir = Path(tempfile.mkdtemp(prefix="notiflow-email-jobs-"))
        self.children: dict[str, Child] = {}
        self.emails = Results()
        self.jobs = Results()
        self.profile: list[dict[str, Any]] = []
        self.cpu_profile: dict[str, Any] = {}
        self.redis: Redis = Redis.from_url(args.redis_url)
        self.redis_pid: int | None = None
        self.quiet: list[float] = []

    # ---------------------------------------------------------------- helpers

    def watch(self, children: Sequence[str]) -> CpuWatch:
        return CpuWatch(
            self.database, self.redis_pid, {name: self.children[name].pid for name in children}
        )

    async def settle(self) -> float:
        busiest = await wait_for_quiet(self.args.wait_quiet, self.args.quiet_threshold)
        self.quiet.append(busiest)
        return busiest

    async def start_child(self, name: str, argv: list[str], cpu: int | None) -> Child:
        child = Child(name, argv, cpu, self.workdir / f"{name}.log")
        self.children[name] = child
        return await child.start()

    async def sink_count(self, kind: str) -> int:
        return int((await self.children[f"sink-{kind}"].ask("stats"))["messages"])

    # ---------------------------------------------------------------- part 1

    async def part_emails(self, outbox: Outbox, settings_for: dict[str, Settings]) -> None:
        plan = self.plan
        full = plan.emails
        sessionmaker = outbox.runtime.sessionmaker
        senders: dict[tuple[str, str], list[EmailSender]] = {}
        workers: dict[tuple[str, str], list[DeliveryWorker]] = {}
        bare: dict[tuple[str, int], BareSmtp] = {}
        _, event_id = await outbox.pending(full)  # the messages the bare path transfers
        messages = await outbox.messages(event_id)
        assert len(messages) == full, (len(messages), full)

        def notiflow_workers(kind: str, label: str, count: int) -> list[DeliveryWorker]:
            key = (kind, label)
            if key not in workers:
                senders[key] = [EmailSender(settings_for[kind]) for _ in range(count)]
                workers[key] = [
                    DeliveryWorker(sessionmaker, settings_for[kind], {"email": sender})
                    for sender in senders[key]
                ]
            return workers[key]

        variants: list[tuple[str, str, str, int]] = []  # (name, sink, mode, k)
        for kind in plan.sinks:
            variants += [
                (f"bare aiosmtplib, 1 connection [{kind}]", kind, "bare", 1),
                (
                    f"bare aiosmtplib, {plan.senders} connections [{kind}]",
                    kind,
                    "bare",
                    plan.senders,
                ),
                (f"notiflow, 1 sender [{kind}]", kind, "sequential", 1),
                (
                    f"notiflow, 1 sender, {-(-full // BATCH)} jobs at once [{kind}]",
                    kind,
                    "shared",
                    1,
                ),
                (f"notiflow, {plan.senders} senders [{kind}]", kind, "parallel", plan.senders),
            ]
        primary = plan.sinks[0]
        profile_name = f"notiflow, 1 sender, PROFILED [{primary}]"
        self.emails.declare([name for name, *_ in variants] + [profile_name])
        profiled = ProfiledWorker(settings_for[primary])
        try:
            for round_index in range(plan.warmup + plan.rounds):
                timed = round_index >= plan.warmup
                # Warm-up rounds only warm caches and connections: a smaller size is enough.
                n = full if timed else min(full, self.args.warmup_size)
                shift = round_index % len(variants)
                for name, kind, mode, k in variants[shift:] + variants[:shift]:
                    sink = f"sink-{kind}"
                    if mode == "bare":
                        key = (kind, k)
                        if key not in bare:
                            bare[key] = BareSmtp(self.children[sink].hello["port"], k)
                        client = bare[key]
                        await client.connect()
                        ids: list[uuid.UUID] = []
                    else:
                        pool = notiflow_workers(kind, mode, k)
                        ids, _ = await outbox.pending(n)
                    before = await self.sink_count(kind)
                    quiet = await self.settle()
                    watch = self.watch([sink])
                    await watch.start()
                    start = time.perf_counter()
                    if mode == "bare":
                        await client.send(messages[:n])
                    else:
                        await drain(pool, ids, mode)
                    seconds = time.perf_counter() - start
                    cpu = await watch.stop()
                    accepted = await self.sink_count(kind) - before
                    extra: dict[str, Any] = {"sink_accepted": accepted}
                    if ids:
                        extra["statuses"] = await outbox.statuses(ids)
                    if accepted != n or (ids and extra["statuses"].get("sent") != n):
                        raise SystemExit(f"{name}: not every email went out: {extra}")
                    cpu["sink"] = cpu.pop(sink)
                    if timed:
                        self.emails.add(Sample(name, n, seconds, cpu, quiet, extra))
                    print(
                        f"  {'' if timed else '(warm-up) '}{name}: {n / seconds:,.0f} emails/s",
                        flush=True,
                    )
                # The profiled pass: once per round, after the others.
                ids, _ = await outbox.pending(n)
                before = await self.sink_count(primary)
                quiet = await self.settle()
                watch = self.watch([f"sink-{primary}"])
                await watch.start()
                seconds, clock = await profiled.drain(ids)
                cpu = await watch.stop()
                cpu["sink"] = cpu.pop(f"sink-{primary}")
                statuses = await outbox.statuses(ids)
                if statuses.get("sent") != n or await self.sink_count(primary) - before != n:
                    raise SystemExit(f"profiled pass: not every email went out: {statuses}")
                if timed:
                    self.emails.add(Sample(profile_name, n, seconds, cpu, quiet))
                    self.profile.append(self.phase_rows(clock, n, seconds))
                print(
                    f"  {'' if timed else '(warm-up) '}{profile_name}: {n / seconds:,.0f} emails/s",
                    flush=True,
                )
            if self.args.cpu_profile > 0:
                count = min(self.args.cpu_profile, full)
                ids, _ = await outbox.pending(count)
                await self.settle()
                self.cpu_profile = await cpu_profiled_drain(
                    notiflow_workers(primary, "sequential", 1)[0], ids
                )
                statuses = await outbox.statuses(ids)
                if statuses.get("sent") != count:
                    raise SystemExit(f"cProfile pass: not every email went out: {statuses}")
                print(f"  cProfile pass (CPU time, {count} emails) done", flush=True)
        finally:
            for client in bare.values():
                await client.close()
            for group in senders.values():
                for sender in group:
                    await sender.close()
            await profiled.close()

    def phase_rows(self, clock: PhaseClock, n: int, seconds: float) -> dict[str, Any]:
        """Per email, microseconds."""
        per = 1e6 / n
        rows: dict[str, Any] = {}
        for key, _label in PHASES:
            rows[key] = {
                "wall_us": clock.exclusive.get(key, 0.0) * per,
                "sql_us": clock.sql.get(key, 0.0) * per,
                "statements": clock.statements.get(key, 0) / n,
                "commit_us": clock.commit.get(key, 0.0) * per,
                "commits": clock.commits.get(key, 0) / n,
                "close_us": clock.close.get(key, 0.0) * per,
            }
        rows["total_us"] = seconds * per
        return rows

    # ---------------------------------------------------------------- part 2

    async def part_jobs(self, outbox: Outbox, settings: Settings) -> None:
        plan = self.plan
        full = plan.jobs
        primary = plan.sinks[0]
        sink = f"sink-{primary}"
        noop_stream, nf_stream = f"{self.prefix}:noop", f"{self.prefix}:jobs"
        group = self.prefix
        worker_cpu = self.cpus[0]
        common = ["--redis-url", self.args.redis_url, "--group", group]
        common += ["--concurrency", str(plan.concurrency)]
        await self.start_child(
            "worker-noop",
            ["--role", "worker", "--mode", "noop", "--stream", noop_stream, *common],
            worker_cpu,
        )
        await self.start_child(
            "worker-notiflow",
            [
                "--role",
                "worker",
                "--mode",
                "notiflow",
                "--stream",
                nf_stream,
                "--database",
                self.database,
                "--smtp-port",
                str(self.children[sink].hello["port"]),
                *common,
            ],
            worker_cpu,
        )
        # This process enqueues (and runs the embedded broker) next to the sink.
        if self.cpus[1] is not None:
            os.sched_setaffinity(0, {self.cpus[1]})
        noop_client = stream_broker(self.args.redis_url, noop_stream, group)
        noop_client.register_task(noop_job, task_name=NOOP_TASK)
        await noop_client.startup()
        nf_runtime = Runtime(
            settings, outbox.runtime.engine, outbox.runtime.sessionmaker, MemoryUnreadCountCache()
        )
        nf_client = JobQueue(stream_broker(self.args.redis_url, nf_stream, group), ALL_JOBS)
        await nf_client.start(nf_runtime)
        memory_runtime = Runtime(
            settings, outbox.runtime.engine, outbox.runtime.sessionmaker, MemoryUnreadCountCache()
        )
        memory_runtime.senders = {"email": EmailSender(settings)}
        memory_queue = JobQueue(build_broker(None), ALL_JOBS)  # the embedded broker
        memory_runtime.queue = memory_queue
        await memory_queue.start(memory_runtime)
        memory_noop = build_broker(None)
        assert isinstance(memory_noop, InMemoryBroker)
        memory_noop.register_task(noop_job, task_name=NOOP_TASK)
        memory_noop.register_task(noop_context_job, task_name=NOOP_CONTEXT_TASK)
        await memory_noop.startup()

        # Payloads as the dispatcher writes them (ids of one tenant, and the tenant); the no-op
        # carries one of the same size.
        tenant = str(outbox.tenant_id)
        filler = {"delivery_ids": [str(uuid.uuid4())], "tenant_id": tenant}
        variants: list[tuple[str, str]] = [
            ("taskiq redis, no-op (bare)", "redis-noop"),
            ("notiflow redis, delivery.send [] (no ids)", "redis-empty"),
            ("notiflow redis, delivery.send x1 email", "redis-email"),
            ("taskiq in-memory, no-op (bare)", "memory-noop"),
            ("EXP taskiq in-memory, no-op + TaskiqDepends(Context)", "memory-noop-context"),
            ("notiflow in-memory, delivery.send [] (no ids)", "memory-empty"),
            ("notiflow in-memory, delivery.send x1 email", "memory-email"),
        ]
        self.jobs.declare([name for name, _ in variants])
        try:
            for round_index in range(plan.warmup + plan.rounds):
                timed = round_index >= plan.warmup
                m = full if timed else min(full, self.args.warmup_size)
                shift = round_index % len(variants)
                for name, kind in variants[shift:] + variants[:shift]:
                    ids: list[uuid.UUID] = []
                    if kind.endswith("email"):
                        ids, _ = await outbox.pending(m)
                    payloads = (
                        [{"delivery_ids": [str(i)], "tenant_id": tenant} for i in ids]
                        if ids
                        else [{"delivery_ids": [], "tenant_id": tenant} for _ in range(m)]
                    )
                    before_sink = await self.sink_count(primary)
                    await outbox.job_failures(reset=True)
                    stream = noop_stream if kind == "redis-noop" else nf_stream
                    read0 = (await group_state(self.redis, stream, group))[0]
                    quiet = await self.settle()
                    watch = self.watch([sink, "worker-noop", "worker-notiflow"])
                    await watch.start()
                    deadline = time.perf_counter() + plan.job_timeout
                    start = time.perf_counter()
                    done: float | None
                    in_flight = 0
                    if kind == "redis-noop":
                        task = noop_client.find_task(NOOP_TASK)
                        assert task is not None
                        for _ in range(m):
                            await task.kiq(filler)
                        enqueued = time.perf_counter()
                        done = await wait_acked(self.redis, stream, group, read0 + m, deadline)
                    elif kind.startswith("redis"):
                        for body in payloads:
                            await nf_client.enqueue("delivery.send", body)
                        enqueued = time.perf_counter()
                        done = await wait_acked(self.redis, stream, group, read0 + m, deadline)
                    else:
                        noop = kind.startswith("memory-noop")
                        broker = memory_noop if noop else memory_queue.broker
                        assert isinstance(broker, InMemoryBroker)
                        if noop:
                            task = memory_noop.find_task(
                                NOOP_CONTEXT_TASK if kind.endswith("context") else NOOP_TASK
                            )
                            assert task is not None
                            for _ in range(m):
                                await task.kiq(filler)
                        else:
                            for body in payloads:
                                await memory_queue.enqueue("delivery.send", body)
                        enqueued = time.perf_counter()
                        # Jobs running at once: max_async_tasks bounds only listen(), not kick().
                        in_flight = len(broker._running_tasks)
                        done = await wait_memory(broker, deadline)
                    cpu = await watch.stop()
                    cpu["sink"] = cpu.pop(sink)
                    cpu["worker"] = cpu.pop("worker-noop") + cpu.pop("worker-notiflow")
                    extra: dict[str, Any] = {
                        "enqueue_seconds": enqueued - start,
                        "job_failures": await outbox.job_failures(),
                    }
                    if kind.startswith("memory"):
                        extra["in_flight_after_enqueue"] = in_flight
                    if ids:
                        extra["statuses"] = await outbox.statuses(ids)
                        extra["sink_accepted"] = await self.sink_count(primary) - before_sink
                    complete = (done is not None and not extra["job_failures"]) and (
                        not ids
                        or (extra["statuses"].get("sent") == m and extra["sink_accepted"] == m)
                    )
                    extra["complete"] = complete
                    seconds = (done or time.perf_counter()) - start
                    if timed:
                        self.jobs.add(Sample(name, m, seconds, cpu, quiet, extra))
                    note = (
                        f"  ({extra['in_flight_after_enqueue']} running at once)"
                        if "in_flight_after_enqueue" in extra
                        else ""
                    )
                    note += "" if complete else f"  INCOMPLETE {extra}"
                    print(
                        f"  {'' if timed else '(warm-up) '}{name}: {m / seconds:,.0f} jobs/s "
                        f"(enqueue {m / max(enqueued - start, 1e-9):,.0f}/s){note}",
                        flush=True,
                    )
        finally:
            await noop_client.shutdown()
            await nf_client.close()
            await memory_queue.close()
            await memory_noop.shutdown()
            for sender in memory_runtime.senders.values():
                await sender.close()
            if memory_runtime.alerter is not None:
                await memory_runtime.alerter.close()
            for name in ("worker-noop", "worker-notiflow"):
                await self.children[name].stop()

    # ---------------------------------------------------------------- run

    async def run(self) -> dict[str, Any]:
        args = self.args
        plan = self.plan
        for kind in plan.sinks:
            if kind not in SINK_KINDS:
                raise SystemExit(f"unknown sink {kind!r} (choose from {', '.join(SINK_KINDS)})")
        await reset_database(self.database)
        engine = create_engine(sqlalchemy_url(self.database))
        try:
            await upgrade(engine)
            tenant_id = await seed(self.database, plan.emails)
            server = await self.redis.info("server")
            self.redis_pid = int(server["process_id"])
            for kind in plan.sinks:
                await self.start_child(
                    f"sink-{kind}", ["--role", "sink", "--sink-kind", kind], self.cpus[1]
                )
            settings_for = {
                kind: bench_settings(
                    self.database, self.children[f"sink-{kind}"].hello["port"], None
                )
                for kind in plan.sinks
            }
            runtime = Runtime(
                settings_for[plan.sinks[0]],
                engine,
                create_sessionmaker(engine),
                MemoryUnreadCountCache(),
            )
            runtime.events = NotificationEvents()  # no listener: nothing is enqueued by the send
            outbox = Outbox(runtime, self.database, tenant_id)
            gc.collect()
            gc.freeze()  # as `notiflow worker` does after start-up
            if args.emails > 0:
                print(f"# part 1: {plan.emails} emails per run")
                await self.part_emails(outbox, settings_for)
            if args.jobs > 0:
                print(f"# part 2: {plan.jobs} jobs per run")
                await self.part_jobs(outbox, settings_for[plan.sinks[0]])
            versions = await server_versions(self.database, self.redis)
        finally:
            for child in list(self.children.values()):
                await child.stop()
            await engine.dispose()
        return versions

    async def cleanup(self) -> int:
        deleted = 0
        for pattern in (f"{self.prefix}*", f"autoclaim:{self.prefix}:*"):
            keys = [key async for key in self.redis.scan_iter(match=pattern, count=1000)]
            if keys:
                deleted += int(await self.redis.unlink(*keys))
        await self.redis.aclose()
        if not self.args.keep_database:
            await drop_database(self.database)
        shutil.rmtree(self.workdir, ignore_errors=True)  # the children's logs
        return deleted


async def wait_memory(broker: InMemoryBroker, deadline: float) -> float | None:
    """perf_counter() when the embedded broker has no task left running (cancelled at the
    deadline)."""
    running = broker._running_tasks
    while running:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            return None
        await asyncio.wait(list(running), timeout=remaining)
    return time.perf_counter()


# ============================================================================ report


def cpu_ms(samples: Sequence[Sample], key: str) -> float:
    return float(statistics.median(s.cpu.get(key, 0.0) * 1000 / s.count for s in samples))


def report(bench: Bench, versions: dict[str, Any]) -> dict[str, Any]:
    plan = bench.plan
    out: dict[str, Any] = {"emails": {}, "jobs": {}, "ratios": {}}
    rows: list[list[Any]]
    if any(bench.emails.samples.values()):
        print(f"\n## Part 1: delivered emails/s, N={plan.emails} (median of {plan.rounds} runs)")
        rows = []
        for name, samples in bench.emails.samples.items():
            if not samples:
                continue
            sink = name.rsplit("[", 1)[1].rstrip("]")
            base = f"bare aiosmtplib, 1 connection [{sink}]"
            rate = bench.emails.median_rate(name)
            ratio = rate / bench.emails.median_rate(base) if bench.emails.has(base) else 0.0
            rows.append(
                [
                    name,
                    rate,
                    max(s.rate for s in samples),
                    ratio,
                    cpu_ms(samples, "own"),
                    cpu_ms(samples, "pg"),
                    cpu_ms(samples, "sink"),
                ]
            )
            out["emails"][name] = {
                "median_per_s": round(rate, 1),
                "all_per_s": [round(s.rate, 1) for s in samples],
                "ratio_to_bare_1conn": round(ratio, 3),
                "cpu_ms_per_email": {
                    k: round(cpu_ms(samples, k), 4) for k in ("own", "pg", "sink", "redis")
                },
                "cores_busy": [s.cpu["cores"] for s in samples],
                "quiet_before": [round(s.quiet_before, 3) for s in samples],
            }
        print_table(["variant", "emails/s", "best", "x bare 1c", "cpu ms: us", "pg", "sink"], rows)
        for kind in plan.sinks:
            pairs = [
                (f"notiflow, 1 sender [{kind}]", f"bare aiosmtplib, 1 connection [{kind}]"),
                (
                    f"notiflow, {plan.senders} senders [{kind}]",
                    f"bare aiosmtplib, {plan.senders} connections [{kind}]",
                ),
            ]
            for ours, theirs in pairs:
                if bench.emails.has(ours) and bench.emails.has(theirs):
                    out["ratios"][f"{ours} / {theirs}"] = round(
                        bench.emails.median_rate(ours) / bench.emails.median_rate(theirs), 3
                    )
        if len(plan.sinks) > 1:
            a, b = plan.sinks[0], plan.sinks[1]
            for label in ("bare aiosmtplib, 1 connection", "notiflow, 1 sender"):
                if bench.emails.has(f"{label} [{a}]") and bench.emails.has(f"{label} [{b}]"):
                    out["ratios"][f"{label}: sink {a} / sink {b}"] = round(
                        bench.emails.median_rate(f"{label} [{a}]")
                        / bench.emails.median_rate(f"{label} [{b}]"),
                        3,
                    )
    if bench.profile:
        print(
            "\n## Where notiflow's time per email goes (1 sender, sequential, profiled; "
            "us per email, median)"
        )
        rows = []
        profile = bench.profile

        def med(key: str, field_name: str) -> float:
            return float(statistics.median(p[key][field_name] for p in profile))

        for key, label in PHASES:
            rows.append(
                [
                    label,
                    med(key, "wall_us"),
                    med(key, "sql_us"),
                    med(key, "statements"),
                    med(key, "commit_us"),
                    med(key, "close_us"),
                ]
            )
        total = statistics.median(p["total_us"] for p in profile)
        accounted = sum(r[1] for r in rows)
        rows.append(["unaccounted (event loop, batches)", total - accounted, 0.0, 0.0, 0.0, 0.0])
        rows.append(
            [
                "total",
                total,
                sum(r[2] for r in rows),
                sum(r[3] for r in rows),
                sum(r[4] for r in rows),
                sum(r[5] for r in rows),
            ]
        )
        print_table(["phase", "wall us", "SQL us", "stmts", "COMMIT us", "close us"], rows)
        out["profile_us_per_email"] = {
            label: {
                "wall": round(r[1], 1),
                "sql": round(r[2], 1),
                "statements": round(r[3], 3),
                "commit": round(r[4], 1),
                "close": round(r[5], 1),
            }
            for label, r in zip(
                [*(label for _, label in PHASES), "unaccounted", "total"], rows, strict=True
            )
        }
    if bench.cpu_profile:
        cp = bench.cpu_profile
        print(
            f"\n## This process's CPU per email by code area (cProfile counting CPU time, "
            f"notiflow 1 sender, {cp['emails']} emails; under the profiler "
            f"{cp['cpu_ms_per_email']:.2f} ms CPU of {cp['wall_ms_per_email']:.2f} ms wall)"
        )
        print_table(
            ["code area (own time + the C calls it makes)", "CPU ms/email"],
            [[k, v] for k, v in list(cp["areas_ms_per_email"].items())[:12]],
        )
        print()
        print_table(["function (self time)", "CPU ms/email"], cp["top_functions_ms_per_email"][:12])
        out["cpu_profile"] = cp
    if any(bench.jobs.samples.values()):
        print(f"\n## Part 2: jobs/s enqueue -> done, M={plan.jobs} (median of {plan.rounds} runs)")
        rows = []
        for name, samples in bench.jobs.samples.items():
            if not samples:
                continue
            rate = bench.jobs.median_rate(name)
            base = (
                "taskiq redis, no-op (bare)"
                if " redis" in name
                else "taskiq in-memory, no-op (bare)"
            )
            ratio = rate / bench.jobs.median_rate(base) if bench.jobs.has(base) else 0.0
            enqueue = statistics.median(s.count / s.extra["enqueue_seconds"] for s in samples)
            complete = all(s.extra.get("complete") for s in samples)
            raised = statistics.median(
                sum(n for k, n in s.extra["job_failures"].items() if k.startswith("retry"))
                for s in samples
            )
            sent = (
                statistics.median((s.extra.get("statuses") or {}).get("sent", 0) for s in samples)
                if samples[0].extra.get("statuses") is not None
                else "-"
            )
            rows.append(
                [
                    name + ("" if complete else " (INCOMPLETE)"),
                    rate,
                    max(s.rate for s in samples),
                    ratio,
                    enqueue,
                    raised,
                    sent,
                    cpu_ms(samples, "worker"),
                    cpu_ms(samples, "own"),
                    cpu_ms(samples, "redis"),
                    cpu_ms(samples, "pg"),
                ]
            )
            out["jobs"][name] = {
                "median_per_s": round(rate, 1),
                "all_per_s": [round(s.rate, 1) for s in samples],
                "ratio_to_bare": round(ratio, 3),
                "enqueue_per_s": round(enqueue, 1),
                "complete": complete,
                "cpu_ms_per_job": {
                    k: round(cpu_ms(samples, k), 4)
                    for k in ("worker", "own", "redis", "pg", "sink")
                },
                "cores_busy": [s.cpu["cores"] for s in samples],
                "statuses": [s.extra.get("statuses") for s in samples],
                "job_failures": [s.extra["job_failures"] for s in samples],
                "in_flight_after_enqueue": [
                    s.extra.get("in_flight_after_enqueue") for s in samples
                ],
            }
            if name != base:
                out["ratios"][f"{name} / {base}"] = round(ratio, 3)
        print_table(
            [
                "variant",
                "jobs/s",
                "best",
                "x bare",
                "enqueue/s",
                "raised",
                "sent",
                "cpu ms: worker",
                "us",
                "redis",
                "pg",
            ],
            rows,
        )
    print()
    print_table(["ratio (median / median)", "value"], [[k, v] for k, v in out["ratios"].items()])
    return out


# ============================================================================ entry points


async def main(args: argparse.Namespace) -> None:
    # SIGTERM / SIGHUP end the run through the clean-up (children stopped, database dropped).
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, task.cancel)
    check_local(sqlalchemy_url("x"))
    check_local(args.redis_url)
    cpus: tuple[int | None, int | None] = (None, None)
    if args.pin and len(os.sched_getaffinity(0)) >= 2:
        available = sorted(os.sched_getaffinity(0))
        cpus = (available[0], available[1])
        os.sched_setaffinity(0, {available[0]})
    bench = Bench(args, cpus)
    print(
        f"# email_jobs: N={args.emails} emails, M={args.jobs} jobs, {args.rounds} rounds "
        f"(+{args.warmup} warm-up), sinks {args.sinks}; this process on CPU {cpus[0]} "
        f"(part 1) / {cpus[1]} (part 2), sinks on CPU {cpus[1]}, job workers on CPU "
        f"{cpus[0]} (concurrency {args.concurrency}); database {bench.database}; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    busiest = await wait_for_quiet(args.wait_quiet * 2, args.quiet_threshold)
    print(f"# busiest core before start: {busiest:.0%}", flush=True)
    versions: dict[str, Any] = {}
    try:
        versions = await bench.run()
    finally:
        deleted = await bench.cleanup()
        print(f"# cleaned up: database dropped, {deleted} Redis keys deleted", flush=True)
    summary = report(bench, versions)
    emit_json(
        "email_jobs",
        {
            "emails": args.emails,
            "jobs": args.jobs,
            "rounds": args.rounds,
            "senders": args.senders,
            "sinks": bench.plan.sinks,
            "worker_concurrency": args.concurrency,
            "pinned": {
                "part1_client": cpus[0],
                "sinks": cpus[1],
                "job_workers": cpus[0],
                "part2_client": cpus[1],
            },
            "loop": loop_name(),
            "quiet_before_max": round(max(bench.quiet, default=0.0), 3),
            **summary,
            "machine": machine_info(),
            "servers": versions,
            "revision": git_revision(),
        },
    )


def production_logging_to_devnull() -> None:
    """Production's log configuration (one JSON line per delivery at INFO), written to
    /dev/null: the lines are rendered and written, and do not flood the report."""
    devnull = open(os.devnull, "w")  # noqa: SIM115 - open as long as the process runs
    with contextlib.redirect_stderr(devnull):
        configure_logging("INFO", json=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add = parser.add_argument
    add("--emails", type=int, default=2000, help="N: pending emails per run (= tenant size)")
    add("--jobs", type=int, default=5000, help="M: jobs per run")
    add("--rounds", type=int, default=2, help="timed rounds of every variant")
    add("--warmup", type=int, default=1, help="untimed rounds first")
    add("--warmup-size", type=int, default=300, help="emails / jobs per warm-up run")
    add("--senders", type=int, default=4, help="K: senders / SMTP connections in parallel")
    add("--sinks", default="raw,aiosmtpd", help="SMTP sinks; the first is used by part 2")
    add(
        "--concurrency",
        type=int,
        default=JOB_CONCURRENCY,
        help=f"job worker concurrency (notiflow worker's default: {JOB_CONCURRENCY})",
    )
    add(
        "--cpu-profile",
        type=int,
        default=500,
        help="emails drained once more under cProfile (CPU time by code area; 0: skip)",
    )
    add("--job-timeout", type=float, default=180.0, help="max seconds for one job run")
    add("--wait-quiet", type=float, default=10.0, help="max seconds to wait for an idle machine")
    add("--quiet-threshold", type=float, default=0.15, help="busiest-core fraction that is idle")
    add("--redis-url", default=REDIS_URL, help="Redis (own stream names, deleted at the end)")
    add("--keep-database", action="store_true", help="do not drop the scratch database")
    add("--no-pin", dest="pin", action="store_false", help="do not pin processes to CPUs")
    add("--no-uvloop", action="store_true", help="use the default asyncio loop")
    # Children (internal).
    add("--role", choices=("main", "sink", "worker"), default="main", help=argparse.SUPPRESS)
    add("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    add("--sink-kind", default="raw", help=argparse.SUPPRESS)
    add("--mode", default="noop", help=argparse.SUPPRESS)
    add("--stream", default="", help=argparse.SUPPRESS)
    add("--group", default="", help=argparse.SUPPRESS)
    add("--database", default="", help=argparse.SUPPRESS)
    add("--smtp-port", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.cpu is not None:
        os.sched_setaffinity(0, {arguments.cpu})
    if arguments.role == "main":
        production_logging_to_devnull()
    entry = {"main": main, "sink": sink_main, "worker": worker_main}[arguments.role]
    run(lambda: entry(arguments), use_uvloop=not arguments.no_uvloop)
