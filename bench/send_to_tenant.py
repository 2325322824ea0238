"""Benchmark: ``NotificationService.send_to_tenant`` to a 10,000-member tenant on PostgreSQL.

Target: "send to a 10,000-member tenant (rows + deliveries + live events) < 1 s on PostgreSQL".

What is timed, per run (warm-up runs excluded, report median and best):

* ``notiflow``: a fresh session, ``send_to_tenant(tenant, payload)`` and
  ``commit_and_flush_effects(session)`` -- the real path: tenant + members + preferences read,
  preference resolution, notification rows, delivery-ledger rows, COMMIT, then the after-commit
  effects. Four variants per round: the in-process ``MemoryUnreadCountCache``; the
  ``RedisUnreadCountCache`` (10,000 invalidations, every member's count cached beforehand); the
  Redis cache plus the built-in real-time notifier listening (``NotificationCreated`` and
  ``UnreadCountChanged`` into an in-process hub with no subscriber); and that plus the
  delivery-job dispatcher enqueueing batches on a Taskiq Redis stream (no worker reading it), i.e.
  everything production wires after commit. The last two run when the checkout has that code.
* ``baseline``: the physical-ish limit of the same work straight through asyncpg on one held
  connection: one SELECT of the members with their flags and preference row, the same rows built
  in Python (same columns, same values, same counts -- checked after each run), written with
  ``copy_records_to_table`` (and, as a second baseline, ``executemany`` INSERTs) in one
  transaction. ``baseline copy + redis`` adds the same Redis work as the cache (INCR, EXPIRE, DEL
  per recipient) done the cheapest known way: one Lua script call per 1,000 keys.

Ratio = baseline time / notiflow time (1.0 = as fast as the raw driver). A phase table shows where
the time goes (SQL per statement kind, Python, commit, cache invalidation, live events).

``--experiments`` adds scratch variants (labeled EXP, applied from this script, not notiflow's
code) that measured the fixes proposed in BENCHMARKS.md.

Run: ``python bench/send_to_tenant.py`` (defaults: 10,000 members, 5 runs + 1 warm-up).
Quick: ``python bench/send_to_tenant.py --members 1000 --runs 2``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import Insert, Table, event, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from _common import (
    REDIS_URL,
    check_local,
    delete_redis_prefix,
    drop_database,
    emit_json,
    git_revision,
    loop_name,
    machine_info,
    note_load,
    pg_dsn,
    print_table,
    reset_database,
    run,
    server_versions,
    sqlalchemy_url,
)
from notiflow.config import Environment, Settings
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.db import create_engine
from notiflow.kit.ids import new_id, utcnow
from notiflow.kit.migrate import upgrade
from notiflow.kit.uow import create_sessionmaker
from notiflow.main.runtime import Runtime
from notiflow.models import Notification, NotificationDelivery
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.types import NotificationType
from notiflow.notifications.unread import (
    MemoryUnreadCountCache,
    RedisUnreadCountCache,
    UnreadCountCache,
    UserTenant,
)

NOTIFICATION_TYPE = NotificationType.SYSTEM_ANNOUNCEMENT  # in_app + email + push by default
TARGET_SECONDS = 1.0
LIVE = "notiflow (redis cache + live events)"
FULL = "notiflow (redis cache + live events + job enqueue)"

NOTIFICATION_COLUMNS = (
    "id",
    "tenant_id",
    "user_id",
    "type",
    "channel",
    "title",
    "message",
    "data",
    "action_url",
    "icon",
    "read_at",
    "event_id",
    "dedupe_key",
    "created_at",
    "updated_at",
)
DELIVERY_COLUMNS = (
    "id",
    "notification_id",
    "tenant_id",
    "user_id",
    "channel",
    "status",
    "reason",
    "attempts",
    "next_attempt_at",
    "created_at",
    "updated_at",
)


# --------------------------------------------------------------------------- data set


async def seed(database: str, members: int, seed_value: int) -> uuid.UUID:
    """One tenant with ``members`` members, a realistic mix of settings, written with COPY.

    1 owner, ~0.5% admins; 10% have email off globally, 5% push off globally, 3% a verified phone;
    10% have a per-type preference row for the benchmarked type (a fifth of those with in-app off,
    so their row is stored read and gets an in_app/suppressed ledger row)."""
    rng = random.Random(seed_value)
    now = utcnow()
    tenant_id = new_id()
    users: list[tuple[Any, ...]] = []
    memberships: list[tuple[Any, ...]] = []
    preferences: list[tuple[Any, ...]] = []
    for index in range(members):
        user_id = new_id()
        verified = rng.random() < 0.03
        users.append(
            (
                user_id,
                f"member{index}@bench.example",
                f"Member {index}",
                "en",
                "UTC",
                rng.random() >= 0.10,
                rng.random() >= 0.05,
                f"+3361234{index:05d}" if verified else None,
                now if verified else None,
                now,
                now,
            )
        )
        role = "owner" if index == 0 else ("admin" if rng.random() < 0.005 else "member")
        memberships.append((new_id(), tenant_id, user_id, role, now, now))
        if rng.random() < 0.10:
            preferences.append(
                (
                    new_id(),
                    user_id,
                    NOTIFICATION_TYPE.value,
                    rng.random() >= 0.2,
                    rng.random() >= 0.5,
                    rng.random() >= 0.5,
                    now,
                    now,
                )
            )
    connection = await asyncpg.connect(pg_dsn(database))
    try:
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO tenants (id, name, plan, settings, created_at, updated_at) "
                "VALUES ($1, 'bench-tenant', 'business', '{}'::jsonb, $2, $2)",
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
                    "phone_number",
                    "phone_verified_at",
                    "created_at",
                    "updated_at",
                ],
            )
            await connection.copy_records_to_table(
                "memberships",
                records=memberships,
                columns=["id", "tenant_id", "user_id", "role", "created_at", "updated_at"],
            )
            await connection.copy_records_to_table(
                "notification_preferences",
                records=preferences,
                columns=[
                    "id",
                    "user_id",
                    "notification_type",
                    "in_app_enabled",
                    "email_enabled",
                    "push_enabled",
                    "created_at",
                    "updated_at",
                ],
            )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return tenant_id


def payload(run_index: int) -> NotificationPayload:
    return NotificationPayload(
        type=NOTIFICATION_TYPE,
        title=f"Scheduled maintenance #{run_index}",
        message="The publishing service will be unavailable on Sunday from 02:00 to 03:00 UTC "
        "while we upgrade the database. Scheduled posts will go out right after.",
        data={"announcement_id": run_index, "severity": "info"},
        action_url="https://status.example.com/incidents/maintenance",
    )


# --------------------------------------------------------------------------- instrumentation


@dataclass
class StatementClock:
    """Wall time spent inside the driver per statement kind (SQLAlchemy cursor events)."""

    totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    enabled: bool = False

    def attach(self, engine: AsyncEngine) -> None:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            conn.info["bench_t0"] = time.perf_counter()

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
            if self.enabled:
                kind = _statement_kind(statement)
                self.totals[kind] += time.perf_counter() - conn.info.pop("bench_t0", 0.0)
                self.counts[kind] += 1

        # COPY does not go through SQLAlchemy's cursor events: time it at the driver.
        original = asyncpg.Connection.copy_records_to_table
        clock = self

        async def timed_copy(conn: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await original(conn, table_name, *args, **kwargs)
            finally:
                if clock.enabled:
                    clock.totals[f"COPY {table_name}"] += time.perf_counter() - start
                    clock.counts[f"COPY {table_name}"] += 1

        asyncpg.Connection.copy_records_to_table = timed_copy  # type: ignore[method-assign]

    def reset(self) -> None:
        self.totals.clear()
        self.counts.clear()


def _statement_kind(statement: str) -> str:
    words = statement.split()
    head = words[0].upper() if words else "?"
    if head == "INSERT":
        return f"INSERT {words[2]}"
    if head == "SELECT":
        lowered = statement.lower()
        if "from notification_preferences" in lowered:
            return "SELECT preferences"
        if "from users join memberships" in lowered:
            return "SELECT members"
        if "from tenants" in lowered:
            return "SELECT tenant"
    return head


class TimedCache:
    """Wraps the unread cache to time ``invalidate`` (the after-commit Redis work)."""

    def __init__(self, inner: UnreadCountCache) -> None:
        self.inner = inner
        self.invalidate_seconds = 0.0

    async def get(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> tuple[int | None, int]:
        return await self.inner.get(user_id, tenant_id)

    async def store(
        self, user_id: uuid.UUID, tenant_id: uuid.UUID, generation: int, count: int
    ) -> None:
        await self.inner.store(user_id, tenant_id, generation, count)

    async def invalidate(self, keys: Any) -> None:
        start = time.perf_counter()
        await self.inner.invalidate(keys)
        self.invalidate_seconds += time.perf_counter() - start


class TimedListener:
    """Wraps a NotificationEvents listener to time what it does after commit; ``labels`` name the
    phases of its two callbacks (None: not reported)."""

    def __init__(self, inner: Any, created: str | None, counts: str | None) -> None:
        self.inner = inner
        self.labels = (created, counts)
        self.created_seconds = 0.0
        self.counts_seconds = 0.0

    def reset(self) -> None:
        self.created_seconds = self.counts_seconds = 0.0

    def phases(self) -> dict[str, float]:
        created, counts = self.labels
        out: dict[str, float] = {}
        if created:
            out[f"  of which {created}"] = self.created_seconds
        if counts:
            out[f"  of which {counts}"] = self.counts_seconds
        return out

    async def notifications_created(self, records: Sequence[Any]) -> None:
        start = time.perf_counter()
        await self.inner.notifications_created(records)
        self.created_seconds += time.perf_counter() - start

    async def unread_counts_changed(self, keys: Sequence[UserTenant]) -> None:
        start = time.perf_counter()
        await self.inner.unread_counts_changed(keys)
        self.counts_seconds += time.perf_counter() - start


def live_events_listener(sessionmaker: Any) -> TimedListener | None:
    """The built-in real-time path (RealtimeNotifier -> HubBroadcaster -> an in-process Hub with
    no subscriber and no backplane), when this checkout has it; None otherwise."""
    try:
        from notiflow.realtime.broadcast import HubBroadcaster
        from notiflow.realtime.hub import Hub
        from notiflow.realtime.notifier import RealtimeNotifier
    except ImportError:
        return None
    return TimedListener(
        RealtimeNotifier(HubBroadcaster(Hub()), sessionmaker),
        "live NotificationCreated",
        "live UnreadCountChanged (+ count query)",
    )


async def job_dispatch_listener(
    runtime: Runtime, redis_url: str, prefix: str
) -> tuple[TimedListener, Any] | None:
    """The delivery-job dispatcher as ``wire_jobs`` sets it up for scale-out (a Taskiq Redis
    streams broker), on a stream under the bench's own key prefix and with no worker reading it,
    when this checkout has it. Returns the listener and the queue (to close)."""
    try:
        from taskiq_redis import RedisStreamBroker

        from notiflow.delivery.jobs import JOBS, DeliveryDispatcher
        from notiflow.kit.queue import JobQueue
    except ImportError:
        return None
    broker = RedisStreamBroker(redis_url, queue_name=f"{prefix}:jobs", maxlen=1_000_000)
    queue = JobQueue(broker, JOBS)
    runtime.queue = queue
    await queue.start(runtime)
    return TimedListener(DeliveryDispatcher(runtime), "delivery-job enqueue", None), queue


# --------------------------------------------------------------------------- experiments
#
# Clearly labeled EXPERIMENTS, not notiflow's code: each is the smallest change that removes a cost
# found by this benchmark, applied from the outside so the change can be measured before the lead
# makes it in src/.


class CoreDeliveryInsertSession:
    """EXPERIMENT 1 -- the session as the service sees it, except that the ORM-entity bulk insert
    ``insert(NotificationDelivery)`` is executed as the Core insert
    ``insert(NotificationDelivery.__table__)`` (what ``_insert_notifications`` already does).

    Why: the ORM bulk path leaves out None-valued keys and batches only *consecutive* rows with
    the same key set; pending rows (reason=None) and suppressed rows (next_attempt_at=None)
    alternate, so 20,000 ledger rows become thousands of single statements."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def execute(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(statement, Insert) and DELIVERY_TABLE.compare(statement.table):
            statement = insert(DELIVERY_TABLE)
        return await self._session.execute(statement, params, **kwargs)


DELIVERY_TABLE = cast(Table, NotificationDelivery.__table__)
NOTIFICATION_TABLE = cast(Table, Notification.__table__)


class CopyInsertSession(CoreDeliveryInsertSession):
    """EXPERIMENT 4 -- on PostgreSQL, the plain bulk inserts of notification and delivery rows
    (no ON CONFLICT, no RETURNING: the path taken without a dedupe_key) are written with COPY
    (``copy_records_to_table``) on the session's own asyncpg connection, inside the same
    transaction, instead of an executemany of INSERTs with SQLAlchemy's per-row parameter
    processing. Rows and values are exactly those the service built."""

    async def execute(self, statement: Any, params: Any = None, **kwargs: Any) -> Any:
        plain = (
            isinstance(statement, Insert)
            and isinstance(params, Sequence)
            and not statement._post_values_clause
            and not statement._returning
        )
        for table in (NOTIFICATION_TABLE, DELIVERY_TABLE):
            if plain and table.compare(statement.table):
                await self._copy(table, params)
                return None
        return await super().execute(statement, params, **kwargs)

    async def _copy(self, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = list(rows[0])
        json_columns = {"data"} & set(columns)
        records = [
            tuple(
                json.dumps(row[c]) if c in json_columns and row[c] is not None else row[c]
                for c in columns
            )
            for row in rows
        ]
        connection = await self._session.connection()
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        await driver.copy_records_to_table(table.name, records=records, columns=columns)


INVALIDATE_LUA = """
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS, 2 do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ttl)
  redis.call('DEL', KEYS[i + 1])
end
return #KEYS / 2
"""


class LuaInvalidateCache(RedisUnreadCountCache):
    """EXPERIMENT 2 -- the same INCR/EXPIRE/DEL per key, done by one server-side script call per
    1,000 keys instead of 3 pipelined commands per key parsed by redis-py. (On Redis Cluster the
    keys of one call must share a hash slot, e.g. by a ``{tenant}`` hash tag.)"""

    CHUNK = 1_000

    def __init__(self, redis: Redis, prefix: str) -> None:
        super().__init__(redis, prefix=prefix)
        self._script = redis.register_script(INVALIDATE_LUA)

    async def invalidate(self, keys: Any) -> None:
        names: list[str] = []
        for user_id, tenant_id in keys:
            names.extend(self._keys(user_id, tenant_id))
            if len(names) >= 2 * self.CHUNK:
                await self._script(keys=names, args=[self.GENERATION_TTL_SECONDS])
                names = []
        if names:
            await self._script(keys=names, args=[self.GENERATION_TTL_SECONDS])


REDUNDANT_DELIVERY_FKS = (
    "fk_notification_deliveries_tenant_id_tenants",
    "fk_notification_deliveries_user_id_users",
)


async def drop_redundant_delivery_fks(database: str) -> None:
    """EXPERIMENT 3 (schema): the ledger row's tenant and user are those of its notification,
    which is already checked (and cascades); these two FK checks cost 2 x 20,000 trigger calls."""
    connection = await asyncpg.connect(pg_dsn(database))
    try:
        for name in REDUNDANT_DELIVERY_FKS:
            await connection.execute(
                f"ALTER TABLE notification_deliveries DROP CONSTRAINT IF EXISTS {name}"
            )
    finally:
        await connection.close()


# --------------------------------------------------------------------------- notiflow path


@dataclass
class RunResult:
    total: float
    phases: dict[str, float]
    event_id: uuid.UUID | None = None


async def notiflow_run(
    runtime: Runtime,
    cache: TimedCache,
    clock: StatementClock,
    tenant_id: uuid.UUID,
    run_index: int,
    *,
    core_delivery_insert: bool = False,
    copy_insert: bool = False,
    listeners: Sequence[TimedListener] = (),
) -> RunResult:
    clock.reset()
    clock.enabled = True
    cache.invalidate_seconds = 0.0
    for listener in listeners:
        listener.reset()
    start = time.perf_counter()
    async with runtime.sessionmaker() as session:
        service = runtime.notification_service(session)
        if copy_insert:
            service.session = cast(AsyncSession, CopyInsertSession(session))
        elif core_delivery_insert:
            service.session = cast(AsyncSession, CoreDeliveryInsertSession(session))
        result = await service.send_to_tenant(tenant_id, payload(run_index))
        sent = time.perf_counter()
        clock.enabled = False  # the clock covers the statements before commit only
        await commit_and_flush_effects(session)
    end = time.perf_counter()
    db_in_send = sum(v for k, v in clock.totals.items() if k != "COMMIT")
    phases = {
        "send_to_tenant (before commit)": sent - start,
        "  of which SQL in driver": db_in_send,
        **{f"    {k} ({clock.counts[k] or 1} stmt)": v for k, v in sorted(clock.totals.items())},
        "  of which Python (resolve, rows, ORM)": (sent - start) - db_in_send,
        "commit + after-commit effects": end - sent,
        "  of which unread-cache invalidate": cache.invalidate_seconds,
    }
    for listener in listeners:
        phases.update(listener.phases())
    return RunResult(total=end - start, phases=phases, event_id=result.event_id)


# --------------------------------------------------------------------------- baseline path

MEMBERS_SQL = """
SELECT m.user_id, m.role, u.email_notifications_enabled, u.push_notifications_enabled,
       p.in_app_enabled, p.email_enabled, p.push_enabled
FROM memberships m
JOIN users u ON u.id = m.user_id
LEFT JOIN notification_preferences p
       ON p.user_id = m.user_id AND p.notification_type = $2
WHERE m.tenant_id = $1
"""


def baseline_rows(
    members: Sequence[asyncpg.Record], tenant_id: uuid.UUID, run_index: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[UserTenant]]:
    """The rows notiflow writes for this type with no tenant policy (same columns and values):
    in-app on unless the preference row says off (then stored read + an in_app/suppressed row);
    email and push gated by the global switch, then the preference row, then the type default."""
    what = payload(run_index)
    data = json.dumps(what.data)
    now = utcnow()
    event_id = new_id()
    notifications: list[tuple[Any, ...]] = []
    deliveries: list[tuple[Any, ...]] = []
    unread: list[UserTenant] = []
    for row in members:
        user_id = row["user_id"]
        has_pref = row["in_app_enabled"] is not None
        in_app = row["in_app_enabled"] if has_pref else True
        notification_id = new_id()
        notifications.append(
            (
                notification_id,
                tenant_id,
                user_id,
                what.type.value,
                "in_app",
                what.title,
                what.message,
                data,
                what.action_url,
                "system",
                None if in_app else now,
                event_id,
                None,
                now,
                now,
            )
        )
        if in_app:
            unread.append((user_id, tenant_id))
        else:
            deliveries.append(
                (
                    new_id(),
                    notification_id,
                    tenant_id,
                    user_id,
                    "in_app",
                    "suppressed",
                    "user_type_off",
                    0,
                    None,
                    now,
                    now,
                )
            )
        for channel, global_flag, pref_flag in (
            ("email", row["email_notifications_enabled"], row["email_enabled"]),
            ("push", row["push_notifications_enabled"], row["push_enabled"]),
        ):
            if not global_flag:
                allowed, reason = False, "user_global_off"
            elif has_pref:
                allowed, reason = bool(pref_flag), None if pref_flag else "user_type_off"
            else:
                allowed, reason = True, None
            deliveries.append(
                (
                    new_id(),
                    notification_id,
                    tenant_id,
                    user_id,
                    channel,
                    "pending" if allowed else "suppressed",
                    reason,
                    0,
                    now if allowed else None,
                    now,
                    now,
                )
            )
    return notifications, deliveries, unread


INSERT_NOTIFICATION_SQL = (
    f"INSERT INTO notifications ({', '.join(NOTIFICATION_COLUMNS)}) VALUES "
    f"({', '.join(f'${i + 1}' for i in range(len(NOTIFICATION_COLUMNS)))})"
)
INSERT_DELIVERY_SQL = (
    f"INSERT INTO notification_deliveries ({', '.join(DELIVERY_COLUMNS)}) VALUES "
    f"({', '.join(f'${i + 1}' for i in range(len(DELIVERY_COLUMNS)))})"
)


async def baseline_run(
    connection: asyncpg.Connection,
    redis: Redis | None,
    prefix: str,
    tenant_id: uuid.UUID,
    run_index: int,
    method: str,
) -> RunResult:
    start = time.perf_counter()
    async with connection.transaction():
        members = await connection.fetch(MEMBERS_SQL, tenant_id, NOTIFICATION_TYPE.value)
        loaded = time.perf_counter()
        notifications, deliveries, unread = baseline_rows(members, tenant_id, run_index)
        built = time.perf_counter()
        if method == "copy":
            await connection.copy_records_to_table(
                "notifications", records=notifications, columns=NOTIFICATION_COLUMNS
            )
            await connection.copy_records_to_table(
                "notification_deliveries", records=deliveries, columns=DELIVERY_COLUMNS
            )
        else:
            await connection.executemany(INSERT_NOTIFICATION_SQL, notifications)
            await connection.executemany(INSERT_DELIVERY_SQL, deliveries)
        written = time.perf_counter()
    committed = time.perf_counter()
    if redis is not None:
        # The cheapest known way to do the same INCR + EXPIRE + DEL per recipient: one
        # server-side script call per 1,000 keys (a plain pipeline of 30,000 commands costs
        # ~0.5 s of reply parsing in redis-py).
        script = redis.register_script(INVALIDATE_LUA)
        names: list[str] = []
        for user_id, tenant in unread:
            suffix = f"{user_id}:{tenant}"
            names += [f"{prefix}:unread-gen:{suffix}", f"{prefix}:unread:{suffix}"]
            if len(names) >= 2_000:
                await script(keys=names, args=[RedisUnreadCountCache.GENERATION_TTL_SECONDS])
                names = []
        if names:
            await script(keys=names, args=[RedisUnreadCountCache.GENERATION_TTL_SECONDS])
    end = time.perf_counter()
    phases = {
        "SELECT members": loaded - start,
        "build rows (Python)": built - loaded,
        f"write ({method})": written - built,
        "COMMIT": committed - written,
        "redis invalidation (lua)": end - committed,
    }
    return RunResult(total=end - start, phases=phases, event_id=notifications[0][11])


async def row_counts(connection: asyncpg.Connection, event_id: uuid.UUID) -> tuple[int, int]:
    notifications = await connection.fetchval(
        "SELECT count(*) FROM notifications WHERE event_id = $1", event_id
    )
    deliveries = await connection.fetchval(
        "SELECT count(*) FROM notification_deliveries d JOIN notifications n "
        "ON n.id = d.notification_id WHERE n.event_id = $1",
        event_id,
    )
    return int(notifications), int(deliveries)


async def warm_redis_cache(redis: Redis, prefix: str, keys: Sequence[UserTenant]) -> None:
    """Put a cached count in place for every member, as a busy tenant would have."""
    async with redis.pipeline(transaction=False) as pipe:
        for user_id, tenant_id in keys:
            pipe.set(f"{prefix}:unread:{user_id}:{tenant_id}", "0:3", ex=300)
        await pipe.execute()


# --------------------------------------------------------------------------- main


Variant = Callable[[int], Awaitable[RunResult]]


@dataclass
class Collected:
    totals: dict[str, list[float]] = field(default_factory=dict)
    phases: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.totals[name])


async def run_rounds(
    variants: dict[str, Variant],
    *,
    rounds: int,
    warmup: int,
    members: int,
    connection: asyncpg.Connection,
    collected: Collected,
    deadline: float,
    run_counter: list[int],
) -> None:
    """Run every variant once per round; the order rotates so that table growth, checkpoints
    and autovacuum hit every variant alike. Row counts are checked after every run."""
    names = list(variants)
    for name in names:
        collected.totals.setdefault(name, [])
        collected.phases.setdefault(name, [])
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            run_counter[0] += 1
            result = await variants[name](run_counter[0])
            assert result.event_id is not None
            counts = await row_counts(connection, result.event_id)
            expected = collected.rows.setdefault("expected", counts)
            if counts != expected or counts[0] != members:
                raise SystemExit(f"{name} wrote {counts}, other variants wrote {expected}")
            if round_index >= warmup:
                collected.totals[name].append(result.total)
                collected.phases[name].append(result.phases)
        if time.perf_counter() > deadline:
            print("# stopped early (--max-seconds)")
            return


async def main(args: argparse.Namespace) -> None:
    check_local(sqlalchemy_url(args.database))
    check_local(args.redis_url)
    prefix = f"notiflow-bench-send-{uuid.uuid4().hex[:8]}"
    print(f"# send_to_tenant: {args.members} members, {args.runs} runs (+{args.warmup} warm-up)")
    print(f"# scratch database {args.database} on 127.0.0.1 (dropped at the end)")
    note_load("at start")
    await reset_database(args.database)
    engine = create_engine(sqlalchemy_url(args.database))
    redis = Redis.from_url(args.redis_url)
    collected = Collected()
    experiments = Collected()
    dispatch: tuple[TimedListener, Any] | None = None
    try:
        await redis.ping()
        await upgrade(engine)
        t0 = time.perf_counter()
        tenant_id = await seed(args.database, args.members, args.seed)
        print(f"# seeded {args.members} users + memberships in {time.perf_counter() - t0:.2f} s")
        deadline = time.perf_counter() + args.max_seconds
        settings = Settings(
            env=Environment.DEVELOPMENT,  # placeholders are fine: nothing is signed
            database_url=sqlalchemy_url(args.database),
            redis_url=None,
            push_rollout="all",
        )
        clock = StatementClock()
        clock.attach(engine)
        sessionmaker = create_sessionmaker(engine)
        memory_cache = TimedCache(MemoryUnreadCountCache())
        redis_cache = TimedCache(RedisUnreadCountCache(redis, prefix=prefix))
        lua_cache = TimedCache(LuaInvalidateCache(redis, prefix=prefix))
        memory_runtime = Runtime(settings, engine, sessionmaker, memory_cache)
        redis_runtime = Runtime(settings, engine, sessionmaker, redis_cache)
        lua_runtime = Runtime(settings, engine, sessionmaker, lua_cache)
        for runtime in (memory_runtime, redis_runtime, lua_runtime):
            runtime.events = NotificationEvents()  # no listener: rows, ledger and cache only
        # The same with the built-in real-time notifier listening (when this checkout has it).
        listener = live_events_listener(sessionmaker) if args.live_events else None
        live_runtime = Runtime(settings, engine, sessionmaker, redis_cache)
        live_lua_runtime = Runtime(settings, engine, sessionmaker, lua_cache)
        for runtime in (live_runtime, live_lua_runtime):
            runtime.events = NotificationEvents()
            if listener is not None:
                runtime.events.subscribe(listener)
        # Everything production wires after commit (``wire_realtime`` + ``wire_jobs``): the
        # notifier, then the dispatcher enqueueing delivery-job batches (when this checkout has it).
        full_runtime = Runtime(settings, engine, sessionmaker, redis_cache)
        full_runtime.events = NotificationEvents()
        dispatch = (
            await job_dispatch_listener(full_runtime, args.redis_url, prefix)
            if listener is not None
            else None
        )
        full_listeners: list[TimedListener] = []
        if listener is not None and dispatch is not None:
            full_listeners = [listener, dispatch[0]]
            for each in full_listeners:
                full_runtime.events.subscribe(each)
        connection = await asyncpg.connect(pg_dsn(args.database))
        member_keys = [
            (row["user_id"], tenant_id)
            for row in await connection.fetch(
                "SELECT user_id FROM memberships WHERE tenant_id = $1", tenant_id
            )
        ]

        def notiflow(
            runtime: Runtime,
            cache: TimedCache,
            *,
            core: bool = False,
            copy: bool = False,
            freeze: bool = False,
            live: bool = False,
            full: bool = False,
        ) -> Variant:
            async def go(run_index: int) -> RunResult:
                if cache.inner is not memory_cache.inner:
                    await warm_redis_cache(redis, prefix, member_keys)
                if freeze:
                    # EXPERIMENT 5: gc.freeze() as a server would call it once after start-up:
                    # the long-lived objects (modules, SQLAlchemy, pydantic) leave the collector's
                    # generations, so the collections the bulk send triggers stop re-scanning them.
                    gc.collect()
                    gc.freeze()
                try:
                    return await notiflow_run(
                        runtime,
                        cache,
                        clock,
                        tenant_id,
                        run_index,
                        core_delivery_insert=core,
                        copy_insert=copy,
                        listeners=(
                            full_listeners if full else [listener] if live and listener else []
                        ),
                    )
                finally:
                    if freeze:
                        gc.unfreeze()

            return go

        def baseline(method: str, *, with_redis: bool = False) -> Variant:
            async def go(run_index: int) -> RunResult:
                if with_redis:
                    await warm_redis_cache(redis, prefix, member_keys)
                return await baseline_run(
                    connection, redis if with_redis else None, prefix, tenant_id, run_index, method
                )

            return go

        run_counter = [0]
        common: dict[str, Any] = {
            "rounds": args.runs,
            "warmup": args.warmup,
            "members": args.members,
            "connection": connection,
            "deadline": deadline,
            "run_counter": run_counter,
        }
        await run_rounds(
            {
                "notiflow (memory cache)": notiflow(memory_runtime, memory_cache),
                "notiflow (redis cache)": notiflow(redis_runtime, redis_cache),
                **(
                    {LIVE: notiflow(live_runtime, redis_cache, live=True)}
                    if listener is not None
                    else {}
                ),
                **(
                    {FULL: notiflow(full_runtime, redis_cache, full=True)} if full_listeners else {}
                ),
                "baseline copy": baseline("copy"),
                "baseline copy + redis": baseline("copy", with_redis=True),
                "baseline executemany": baseline("executemany"),
            },
            collected=collected,
            **common,
        )
        if args.experiments:
            print("# experiments (scratch variants, not notiflow's code)")
            await run_rounds(
                {
                    "EXP1 core delivery insert (memory cache)": notiflow(
                        memory_runtime, memory_cache, core=True
                    ),
                    "EXP1+2 core insert + lua invalidate (redis)": notiflow(
                        lua_runtime, lua_cache, core=True
                    ),
                    "EXP4 COPY both tables (memory cache)": notiflow(
                        memory_runtime, memory_cache, copy=True
                    ),
                    "EXP4+2 COPY + lua invalidate (redis)": notiflow(
                        lua_runtime, lua_cache, copy=True
                    ),
                    "baseline copy (same phase)": baseline("copy"),
                },
                collected=experiments,
                **common,
            )
            await drop_redundant_delivery_fks(args.database)
            await run_rounds(
                {
                    "EXP1+3 core insert, no redundant FKs (memory)": notiflow(
                        memory_runtime, memory_cache, core=True
                    ),
                    "EXP1+2+3 (redis, lua, no redundant FKs)": notiflow(
                        lua_runtime, lua_cache, core=True
                    ),
                    "EXP4+2+3 (COPY, redis lua, no redundant FKs)": notiflow(
                        lua_runtime, lua_cache, copy=True
                    ),
                    "EXP4+2+3+5 (same + gc.freeze() after start-up)": notiflow(
                        lua_runtime, lua_cache, copy=True, freeze=True
                    ),
                    **(
                        {
                            "EXP4+2+3+5 + live events": notiflow(
                                live_lua_runtime, lua_cache, copy=True, freeze=True, live=True
                            )
                        }
                        if listener is not None
                        else {}
                    ),
                    "baseline copy (no redundant FKs)": baseline("copy"),
                },
                collected=experiments,
                **common,
            )
        rows = collected.rows["expected"]
        versions = await server_versions(args.database, redis)
        await connection.close()
    finally:
        if dispatch is not None:
            await dispatch[1].close()
        await delete_redis_prefix(redis, prefix)
        await redis.aclose()
        await engine.dispose()
        if not args.keep_database:
            await drop_database(args.database)

    note_load("at end")
    print(f"# rows per send: {rows[0]} notifications + {rows[1]} deliveries; loop={loop_name()}")
    report_table(collected)
    ratios = {
        "baseline copy / notiflow (memory cache)": collected.median("baseline copy")
        / collected.median("notiflow (memory cache)"),
        "baseline executemany / notiflow (memory cache)": collected.median("baseline executemany")
        / collected.median("notiflow (memory cache)"),
        "baseline copy + redis / notiflow (redis cache)": collected.median("baseline copy + redis")
        / collected.median("notiflow (redis cache)"),
    }
    for name in (LIVE, FULL):
        if collected.totals.get(name):
            ratios[f"baseline copy + redis / {name}"] = collected.median(
                "baseline copy + redis"
            ) / collected.median(name)
    print()
    print_table(["ratio (median / median)", "value"], [[k, v] for k, v in ratios.items()])
    print()
    report_phases(collected)
    if experiments.totals:
        print("## EXPERIMENTS (scratch variants applied from the bench, not notiflow's code)")
        report_table(experiments)
        print()
        report_phases(experiments)
    verdicts = {
        name: collected.median(name) < TARGET_SECONDS
        for name in ("notiflow (memory cache)", "notiflow (redis cache)", LIVE, FULL)
        if collected.totals.get(name)
    }
    for name, ok in verdicts.items():
        print(
            f"target: send to a {args.members}-member tenant < {TARGET_SECONDS:.0f} s, {name}: "
            f"{'PASS' if ok else 'FAIL'} (median {collected.median(name) * 1000:.0f} ms)"
        )
    emit_json(
        "send_to_tenant",
        {
            "members": args.members,
            "rows": {"notifications": rows[0], "deliveries": rows[1]},
            "runs": args.runs,
            "loop": loop_name(),
            "results_ms": summarize(collected),
            "experiments_ms": summarize(experiments),
            "ratios": {k: round(v, 3) for k, v in ratios.items()},
            "target_pass": verdicts,
            "machine": machine_info(),
            "servers": versions,
            "revision": git_revision(),
        },
    )


def summarize(collected: Collected) -> dict[str, Any]:
    return {
        name: {
            "median": round(collected.median(name) * 1000, 2),
            "best": round(min(times) * 1000, 2),
            "all": [round(t * 1000, 2) for t in times],
            "phases_median": {
                key: round(statistics.median(p[key] for p in collected.phases[name]) * 1000, 2)
                for key in collected.phases[name][0]
            },
        }
        for name, times in collected.totals.items()
        if times
    }


def report_table(collected: Collected) -> None:
    rows = [
        [name, len(times), collected.median(name) * 1000, min(times) * 1000, max(times) * 1000]
        for name, times in collected.totals.items()
        if times
    ]
    print_table(["variant", "runs", "median ms", "best ms", "worst ms"], rows)


def report_phases(collected: Collected) -> None:
    for name, phases in collected.phases.items():
        if not phases:
            continue
        rows = [[key, statistics.median(p[key] for p in phases) * 1000] for key in phases[0]]
        print_table([f"{name}: phase (median)", "ms"], rows)
        print()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--members", type=int, default=10_000, help="tenant size (10000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per variant (5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per variant (1)")
    parser.add_argument(
        "--max-seconds", type=float, default=300, help="stop starting new rounds after this"
    )
    parser.add_argument(
        "--database",
        default=f"notiflow_bench_send_{uuid.uuid4().hex[:8]}",
        help="scratch database, created and dropped (default: a fresh unique name)",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help="Redis (own key prefix, cleaned)")
    parser.add_argument("--seed", type=int, default=7, help="random seed for the member mix")
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    parser.add_argument(
        "--no-live-events",
        dest="live_events",
        action="store_false",
        help="skip the variant with the built-in real-time notifier listening",
    )
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="also run the labeled scratch experiments (fix candidates) after the main rounds",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    run(lambda: main(arguments), use_uvloop=not arguments.no_uvloop)
