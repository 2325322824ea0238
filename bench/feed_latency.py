"""Benchmark: unread-count and feed-page latency with 1,000,000 notifications on PostgreSQL.

Targets: "unread-count p99 < 2 ms from cache; feed page p99 < 10 ms with 1M rows in the table".

Data set (generated in SQL, one INSERT ... SELECT generate_series, then VACUUM ANALYZE): ``--rows``
notifications over ``--users`` users in ``--tenants`` tenants, created over the last 60 days in time
order (so a user's rows are scattered over the heap, as in production). Users are skewed: user k
of n gets a share proportional to the density of ``n * U^1.5`` (the heaviest ~10x the median).
Read/unread mix: 60% of users read up to the last 0-2 days, 30% up to 3-14 days ago, 10% never
read; 2% of read rows are archived.

Measured, each over up to ``--calls`` calls on users drawn at random (p50/p90/p99), next to a raw
baseline doing the same work one layer down:

* unread count, cache warm: ``get_unread_count`` with ``RedisUnreadCountCache`` (one MGET of the
  generation and count keys) vs a bare redis-py GET (and MGET of the same two keys) on the same
  kind of client (``redis.asyncio.Redis.from_url``).
* unread count, cache miss: the same call after the key was invalidated (MGET, then a session:
  pool checkout, BEGIN, the COUNT through ``ix_notifications_unread``, ROLLBACK, then SET) vs
  asyncpg running the same COUNT on a held connection.
* feed page 1: ``list_for_user(page=1, per_page=15)`` (COUNT for the totals + 16-row SELECT) and
  a cursor page (``cursor=`` the next_cursor of page 1) vs asyncpg running the equivalent SELECTs.
  A "deep cursor" (a cursor half-way down the user's history) is measured too.

Service calls are timed "request-shaped": a fresh ``AsyncSession`` per call, as the API does.
Also printed once: EXPLAIN (ANALYZE, BUFFERS) of the exact statements the service sends.
``--experiments`` adds scratch variants (labeled EXP, not notiflow's code) that measured the fixes
proposed in BENCHMARKS.md.

Run: ``python bench/feed_latency.py`` (1,000,000 rows, 1,000 users, 2,000 calls per measurement).
Quick: ``python bench/feed_latency.py --rows 100000 --calls 300``.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import event, text, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from _common import (
    REDIS_URL,
    Latencies,
    check_local,
    delete_redis_prefix,
    drop_database,
    emit_json,
    git_revision,
    loop_name,
    machine_info,
    measure,
    note_load,
    pg_dsn,
    print_table,
    reset_database,
    run,
    server_versions,
    sqlalchemy_url,
)
from notiflow.config import Environment, Settings
from notiflow.kit.db import create_engine
from notiflow.kit.migrate import upgrade
from notiflow.kit.pagination import Cursor
from notiflow.kit.uow import create_sessionmaker
from notiflow.main.runtime import Runtime
from notiflow.models import Notification
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.feed import NotificationFilters
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import TYPE_REGISTRY
from notiflow.notifications.unread import RedisUnreadCountCache

UNREAD_CACHE_P99_MS = 2.0
FEED_PAGE_P99_MS = 10.0
PER_PAGE = 15


# --------------------------------------------------------------------------- data set

SEED_USERS_SQL = """
CREATE UNLOGGED TABLE bench_users AS
SELECT g - 1 AS idx,
       gen_random_uuid() AS user_id,
       (SELECT id FROM tenants ORDER BY name OFFSET (g - 1) % $2 LIMIT 1) AS tenant_id,
       CASE
         WHEN r < 0.6 THEN now() - random() * interval '2 days'
         WHEN r < 0.9 THEN now() - interval '3 days' - random() * interval '11 days'
         ELSE '-infinity'::timestamptz
       END AS last_read_at
FROM generate_series(1, $1) AS g, LATERAL (SELECT random() + 0 * g AS r) AS x
"""

FILL_NOTIFICATIONS_SQL = """
INSERT INTO notifications (
    id, tenant_id, user_id, type, channel, title, message, data, action_url, icon,
    read_at, seen_at, archived_at, event_id, created_at, updated_at
)
SELECT
    -- a UUIDv7-shaped id: 48-bit unix milliseconds of created_at, version 7, random rest
    (lpad(to_hex((extract(epoch FROM r.ts) * 1000)::bigint), 12, '0') || '7'
        || substr(replace(gen_random_uuid()::text, '-', ''), 14))::uuid,
    u.tenant_id, u.user_id, r.type, 'in_app',
    'New activity on post #' || g,
    'Someone commented on "Spring campaign teaser" in workspace Marketing: '
        || 'Looks great, can we move it to Tuesday morning? (' || g || ')',
    jsonb_build_object('post_id', g, 'workspace', 'marketing'),
    'https://app.example.com/posts/' || g, 'engagement',
    CASE WHEN r.ts <= u.last_read_at THEN r.ts + interval '1 hour' END,
    CASE WHEN r.ts <= u.last_read_at THEN r.ts + interval '1 hour' END,
    CASE WHEN r.ts <= u.last_read_at AND r.a < 0.02 THEN r.ts + interval '2 hours' END,
    gen_random_uuid(), r.ts, r.ts
FROM generate_series(1, $1) AS g
CROSS JOIN LATERAL (
    SELECT floor($2 * power(random(), 1.5))::int + 0 * g AS idx,
           now() - interval '60 days' * (1 - g::float8 / $1) AS ts,
           ($3::text[])[1 + floor(random() * array_length($3::text[], 1))::int] AS type,
           random() AS a
) AS r
JOIN bench_users AS u ON u.idx = r.idx
"""


async def seed(database: str, *, rows: int, users: int, tenants: int) -> None:
    """Tenants, users, memberships, then ``rows`` notifications in one INSERT ... SELECT.

    The secondary indexes are dropped during the load and re-created from their exact
    definitions (faster than maintaining them row by row); FK triggers are skipped for the load
    (``session_replication_role = replica``: the generated data is consistent by construction)."""
    connection = await asyncpg.connect(pg_dsn(database))
    try:
        await connection.execute(
            "INSERT INTO tenants (id, name, plan, settings, created_at, updated_at) "
            "SELECT gen_random_uuid(), 'bench-tenant-' || lpad(g::text, 3, '0'), 'business', "
            "'{}'::jsonb, now(), now() FROM generate_series(1, $1) AS g",
            tenants,
        )
        await connection.execute(SEED_USERS_SQL, users, tenants)
        await connection.execute(
            "INSERT INTO users (id, email, name, locale, timezone, email_notifications_enabled, "
            "push_notifications_enabled, created_at, updated_at) "
            "SELECT user_id, 'user' || idx || '@bench.example', 'User ' || idx, 'en', 'UTC', "
            "true, true, now(), now() FROM bench_users"
        )
        await connection.execute(
            "INSERT INTO memberships (id, tenant_id, user_id, role, created_at, updated_at) "
            "SELECT gen_random_uuid(), tenant_id, user_id, 'member', now(), now() "
            "FROM bench_users"
        )
        index_definitions = [
            (row["indexname"], row["indexdef"])
            for row in await connection.fetch(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i "
                "WHERE i.tablename = 'notifications' AND NOT EXISTS ("
                "  SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
            )
        ]
        for name, _ in index_definitions:
            await connection.execute(f'DROP INDEX "{name}"')
        types = [t.value for t in TYPE_REGISTRY]
        async with connection.transaction():
            await connection.execute("SET LOCAL session_replication_role = replica")
            await connection.execute(FILL_NOTIFICATIONS_SQL, rows, users, types)
        await connection.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in index_definitions:
            await connection.execute(definition)
        await connection.execute("DROP TABLE bench_users")
        await connection.execute("VACUUM (ANALYZE) notifications")
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


@dataclass(frozen=True, slots=True)
class Subject:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    rows: int
    unread: int


async def load_subjects(connection: asyncpg.Connection) -> list[Subject]:
    records = await connection.fetch(
        "SELECT m.user_id, m.tenant_id, count(n.id) AS rows, "
        "count(n.id) FILTER (WHERE n.read_at IS NULL AND n.archived_at IS NULL) AS unread "
        "FROM memberships m LEFT JOIN notifications n "
        "ON n.user_id = m.user_id AND n.tenant_id = m.tenant_id "
        "GROUP BY m.user_id, m.tenant_id ORDER BY m.user_id"
    )
    return [Subject(r["user_id"], r["tenant_id"], r["rows"], r["unread"]) for r in records]


# --------------------------------------------------------------------------- raw baselines

FEED_COLUMNS = (
    "tenant_id, user_id, type, channel, title, message, data, action_url, icon, read_at, "
    "sent_at, failed_at, failure_reason, seen_at, archived_at, event_id, dedupe_key, id, "
    "created_at, updated_at"
)
RAW_UNREAD_SQL = (
    "SELECT count(*) FROM notifications WHERE user_id = $1 AND tenant_id = $2 "
    "AND read_at IS NULL AND archived_at IS NULL"
)
RAW_FEED_COUNT_SQL = (
    "SELECT count(*) FROM notifications WHERE user_id = $1 AND tenant_id = $2 "
    "AND archived_at IS NULL"
)
RAW_FEED_PAGE_SQL = (
    f"SELECT {FEED_COLUMNS} FROM notifications WHERE user_id = $1 AND tenant_id = $2 "
    "AND archived_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET 0"
)
RAW_CURSOR_PAGE_SQL = (
    f"SELECT {FEED_COLUMNS} FROM notifications WHERE user_id = $1 AND tenant_id = $2 "
    "AND archived_at IS NULL AND (created_at, id) < ($3, $4) "
    "ORDER BY created_at DESC, id DESC LIMIT $5"
)


# --------------------------------------------------------------------------- experiments


async def cursor_page_row_comparison(
    service: NotificationService,
    user_id: uuid.UUID,
    tenant_id: uuid.UUID,
    cursor: Cursor,
    per_page: int = PER_PAGE,
) -> list[Notification]:
    """EXPERIMENT (scratch copy of ``list_for_user``'s cursor branch, not notiflow's code): the
    keyset condition written as a row comparison ``(created_at, id) < (:c, :i)``, which
    PostgreSQL turns into an index bound on ``ix_notifications_feed``, instead of
    ``created_at < :c OR (created_at = :c AND id < :i)``, which it can only filter row by row
    from the newest entry down."""
    query = service._feed_query(user_id, tenant_id, NotificationFilters()).where(
        tuple_(Notification.created_at, Notification.id) < tuple_(cursor.created_at, cursor.id)
    )
    return list((await service.session.scalars(query.limit(per_page + 1))).all())


EXPERIMENT_INDEX_SQL = (
    "CREATE INDEX ix_bench_experiment_feed_live ON notifications "
    "(user_id, tenant_id, created_at, id) WHERE archived_at IS NULL"
)


# --------------------------------------------------------------------------- plans


class StatementCapture:
    """Records the SQL and driver parameters the service sends, to EXPLAIN exactly those."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.enabled = False
        self.statements: list[tuple[str, Any]] = []

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if self.enabled:
                self.statements.append((statement, parameters))

    async def capture(self, call: Callable[[], Awaitable[Any]]) -> list[tuple[str, Any]]:
        self.statements = []
        self.enabled = True
        try:
            await call()
        finally:
            self.enabled = False
        return list(self.statements)


async def explain(
    connection: asyncpg.Connection, title: str, statements: Sequence[tuple[str, Any]]
) -> list[str]:
    lines: list[str] = []
    for statement, parameters in statements:
        if not statement.lstrip().upper().startswith("SELECT"):
            continue
        plan = await connection.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, *(parameters or ())
        )
        lines.append(f"--- {title}")
        lines.append("    " + " ".join(statement.split()))
        lines.extend("    " + row[0] for row in plan)
    return lines


def index_names(plan_lines: Sequence[str]) -> list[str]:
    found: list[str] = []
    for line in plan_lines:
        if " using " in line.lower() or " on ix_" in line.lower():
            for word in line.replace("(", " ").split():
                if word.startswith(("ix_", "pk_", "uq_")) and word not in found:
                    found.append(word)
    return found


# --------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    check_local(sqlalchemy_url(args.database))
    check_local(args.redis_url)
    prefix = f"notiflow-bench-feed-{uuid.uuid4().hex[:8]}"
    print(
        f"# feed_latency: {args.rows:,} rows, {args.users} users, {args.tenants} tenants, "
        f"{args.calls} calls per measurement"
    )
    print(f"# scratch database {args.database} on 127.0.0.1 (dropped at the end)")
    note_load("at start")
    await reset_database(args.database)
    engine = create_engine(sqlalchemy_url(args.database))
    redis = Redis.from_url(args.redis_url)
    results: dict[str, Latencies] = {}
    experiments: dict[str, Latencies] = {}
    plans: list[str] = []
    try:
        await redis.ping()
        await upgrade(engine)
        started = time.perf_counter()
        await seed(args.database, rows=args.rows, users=args.users, tenants=args.tenants)
        seed_seconds = time.perf_counter() - started
        connection = await asyncpg.connect(pg_dsn(args.database))
        subjects = await load_subjects(connection)
        sizes = sorted(s.rows for s in subjects)
        unread_sizes = sorted(s.unread for s in subjects)
        table_size = await connection.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size('notifications'))"
        )
        total_rows = await connection.fetchval("SELECT count(*) FROM notifications")
        print(
            f"# seeded {total_rows:,} rows in {seed_seconds:.1f} s (table+indexes {table_size}); "
            f"rows/user median {sizes[len(sizes) // 2]}, max {sizes[-1]}; "
            f"unread/user median {unread_sizes[len(unread_sizes) // 2]}, max {unread_sizes[-1]}"
        )
        settings = Settings(
            env=Environment.DEVELOPMENT,  # placeholders are fine: nothing is signed
            database_url=sqlalchemy_url(args.database),
            redis_url=args.redis_url,
            push_rollout="all",
        )
        cache = RedisUnreadCountCache(redis, prefix=prefix)
        sessionmaker = create_sessionmaker(engine)
        runtime = Runtime(settings, engine, sessionmaker, cache, events=NotificationEvents())
        pre_ping = bool(getattr(engine.pool, "_pre_ping", False))
        print(f"# engine pool_pre_ping={pre_ping} (a pre-ping adds a round trip per checkout)")
        rng = random.Random(args.seed)
        picks = [rng.choice(subjects) for _ in range(args.calls + args.warmup)]
        limits = {"count": args.calls, "max_seconds": args.max_seconds, "warmup": args.warmup}

        # Page-1 cursors and deep cursors (half-way down each user's history), computed once.
        cursors: dict[uuid.UUID, Cursor | None] = {}
        deep: dict[uuid.UUID, Cursor | None] = {}
        for subject in subjects:
            async with sessionmaker() as session:
                page = await runtime.notification_service(session).list_for_user(
                    subject.user_id, subject.tenant_id, per_page=PER_PAGE
                )
            cursors[subject.user_id] = Cursor.decode(page.next_cursor) if page.next_cursor else None
            middle = await connection.fetchrow(
                "SELECT created_at, id FROM notifications WHERE user_id = $1 AND tenant_id = $2 "
                "AND archived_at IS NULL ORDER BY created_at DESC, id DESC OFFSET $3 LIMIT 1",
                subject.user_id,
                subject.tenant_id,
                subject.rows // 2,
            )
            deep[subject.user_id] = (
                Cursor(created_at=middle["created_at"], id=middle["id"]) if middle else None
            )

        # ---- (a) unread count from a warm cache
        for subject in subjects:
            async with sessionmaker() as session:
                await runtime.notification_service(session).get_unread_count(
                    subject.user_id, subject.tenant_id
                )

        async def unread_warm(i: int) -> None:
            s = picks[i]
            async with sessionmaker() as session:
                await runtime.notification_service(session).get_unread_count(s.user_id, s.tenant_id)

        async def redis_get(i: int) -> None:
            s = picks[i]
            await redis.get(f"{prefix}:unread:{s.user_id}:{s.tenant_id}")

        async def redis_mget(i: int) -> None:
            s = picks[i]
            suffix = f"{s.user_id}:{s.tenant_id}"
            await redis.mget(f"{prefix}:unread-gen:{suffix}", f"{prefix}:unread:{suffix}")

        results["unread count, cache warm (notiflow)"] = await measure(
            "unread warm", unread_warm, **limits
        )
        results["  baseline: redis-py GET"] = await measure("redis get", redis_get, **limits)
        results["  baseline: redis-py MGET (same 2 keys)"] = await measure(
            "redis mget", redis_mget, **limits
        )

        # ---- (b) unread count, cache miss (DB count through the partial index)
        async def invalidate(i: int) -> None:
            s = picks[i]
            await cache.invalidate([(s.user_id, s.tenant_id)])

        async def raw_unread(i: int) -> None:
            s = picks[i]
            await connection.fetchval(RAW_UNREAD_SQL, s.user_id, s.tenant_id)

        results["unread count, cache miss (notiflow)"] = await measure(
            "unread miss", unread_warm, prepare=invalidate, **limits
        )
        results["  baseline: asyncpg COUNT (held connection)"] = await measure(
            "raw unread", raw_unread, **limits
        )

        # ---- (c) feed pages
        async def feed_page(i: int) -> None:
            s = picks[i]
            async with sessionmaker() as session:
                await runtime.notification_service(session).list_for_user(
                    s.user_id, s.tenant_id, page=1, per_page=PER_PAGE
                )

        async def raw_feed_page(i: int) -> None:
            s = picks[i]
            await connection.fetchval(RAW_FEED_COUNT_SQL, s.user_id, s.tenant_id)
            await connection.fetch(RAW_FEED_PAGE_SQL, s.user_id, s.tenant_id, PER_PAGE + 1)

        def cursor_call(table: dict[uuid.UUID, Cursor | None]) -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                s = picks[i]
                async with sessionmaker() as session:
                    await runtime.notification_service(session).list_for_user(
                        s.user_id, s.tenant_id, per_page=PER_PAGE, cursor=table[s.user_id]
                    )

            return call

        def raw_cursor_call(
            table: dict[uuid.UUID, Cursor | None],
        ) -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                s = picks[i]
                c = table[s.user_id]
                if c is None:
                    await connection.fetch(RAW_FEED_PAGE_SQL, s.user_id, s.tenant_id, PER_PAGE + 1)
                else:
                    await connection.fetch(
                        RAW_CURSOR_PAGE_SQL,
                        s.user_id,
                        s.tenant_id,
                        c.created_at,
                        c.id,
                        PER_PAGE + 1,
                    )

            return call

        results["feed page 1 (notiflow: COUNT + page)"] = await measure(
            "feed page", feed_page, **limits
        )
        results["  baseline: asyncpg COUNT + page"] = await measure(
            "raw feed page", raw_feed_page, **limits
        )
        results["feed cursor page 2 (notiflow)"] = await measure(
            "cursor page", cursor_call(cursors), **limits
        )
        results["  baseline: asyncpg cursor page"] = await measure(
            "raw cursor page", raw_cursor_call(cursors), **limits
        )

        # Where the gap goes: the same call in one long-lived session (no pool checkout, pre-ping,
        # BEGIN or ROLLBACK per call), and the cost of an empty request-shaped session.
        async with sessionmaker() as shared:
            shared_service = runtime.notification_service(shared)

            async def cursor_shared(i: int) -> None:
                s = picks[i]
                await shared_service.list_for_user(
                    s.user_id, s.tenant_id, per_page=PER_PAGE, cursor=cursors[s.user_id]
                )

            async def expunge(i: int) -> None:
                shared.expunge_all()

            results["  cursor page 2 (notiflow, one session reused)"] = await measure(
                "cursor shared", cursor_shared, prepare=expunge, **limits
            )

        async def empty_session(i: int) -> None:
            async with sessionmaker() as session:
                await session.execute(text("SELECT 1"))

        results["  reference: empty session (checkout, BEGIN, SELECT 1, ROLLBACK)"] = await measure(
            "empty session", empty_session, **limits
        )
        results["feed deep cursor, mid-history (notiflow)"] = await measure(
            "deep cursor", cursor_call(deep), **limits
        )
        results["  baseline: asyncpg deep cursor page"] = await measure(
            "raw deep cursor", raw_cursor_call(deep), **limits
        )

        # ---- plans of the exact statements, for the heaviest user and a median user
        capture = StatementCapture(engine)
        by_size = sorted(subjects, key=lambda s: s.rows)
        for label, subject in (
            ("heaviest user", by_size[-1]),
            ("median user", by_size[len(by_size) // 2]),
        ):
            heading = f"{label}: {subject.rows} rows, {subject.unread} unread"

            async def one_call(kind: str, subject: Subject = subject) -> list[tuple[str, Any]]:
                async def call() -> None:
                    async with sessionmaker() as session:
                        service = runtime.notification_service(session)
                        if kind == "unread":
                            await service.count_unread(subject.user_id, subject.tenant_id)
                        elif kind == "page":
                            await service.list_for_user(
                                subject.user_id, subject.tenant_id, per_page=PER_PAGE
                            )
                        else:
                            await service.list_for_user(
                                subject.user_id,
                                subject.tenant_id,
                                per_page=PER_PAGE,
                                cursor=deep[subject.user_id] or cursors[subject.user_id],
                            )

                return await capture.capture(call)

            plans += await explain(
                connection, f"{heading} -- unread count (cache miss)", await one_call("unread")
            )
            plans += await explain(connection, f"{heading} -- feed page 1", await one_call("page"))
            plans += await explain(
                connection, f"{heading} -- deep cursor page", await one_call("deep")
            )

        # ---- EXPERIMENTS: fix candidates measured on the same data, after the main figures
        if args.experiments:

            def exp_cursor(
                table: dict[uuid.UUID, Cursor | None],
            ) -> Callable[[int], Awaitable[None]]:
                async def call(i: int) -> None:
                    s = picks[i]
                    c = table[s.user_id]
                    async with sessionmaker() as session:
                        service = runtime.notification_service(session)
                        if c is None:
                            await service.list_for_user(s.user_id, s.tenant_id, per_page=PER_PAGE)
                        else:
                            await cursor_page_row_comparison(service, s.user_id, s.tenant_id, c)

                return call

            experiments["EXP-A deep cursor, row-comparison keyset"] = await measure(
                "exp deep cursor", exp_cursor(deep), **limits
            )
            experiments["EXP-A cursor page 2, row-comparison keyset"] = await measure(
                "exp cursor", exp_cursor(cursors), **limits
            )
            heaviest = by_size[-1]
            heaviest_deep = deep[heaviest.user_id]
            if heaviest_deep is not None:

                async def heavy_deep_row_comparison() -> None:
                    async with sessionmaker() as session:
                        await cursor_page_row_comparison(
                            runtime.notification_service(session),
                            heaviest.user_id,
                            heaviest.tenant_id,
                            heaviest_deep,
                        )

                plans += await explain(
                    connection,
                    f"EXP-A heaviest user ({heaviest.rows} rows) -- deep cursor, row comparison",
                    await capture.capture(heavy_deep_row_comparison),
                )
            # EXP-C: the same engine settings as notiflow.kit.db.create_engine minus pool_pre_ping
            # (which costs one extra round trip on every checkout, i.e. every request).
            no_ping_engine = create_async_engine(
                sqlalchemy_url(args.database), pool_size=10, max_overflow=20, pool_pre_ping=False
            )
            no_ping = Runtime(settings, no_ping_engine, create_sessionmaker(no_ping_engine), cache)

            async def cursor_no_ping(i: int) -> None:
                s = picks[i]
                async with no_ping.sessionmaker() as session:
                    await no_ping.notification_service(session).list_for_user(
                        s.user_id, s.tenant_id, per_page=PER_PAGE, cursor=cursors[s.user_id]
                    )

            experiments["EXP-C cursor page 2, engine without pool_pre_ping"] = await measure(
                "exp no ping", cursor_no_ping, **limits
            )
            await no_ping_engine.dispose()
            async with engine.begin() as conn:
                await conn.execute(text(EXPERIMENT_INDEX_SQL))
            await connection.execute("VACUUM (ANALYZE) notifications")
            experiments[
                "EXP-B feed page 1 + partial index WHERE archived_at IS NULL"
            ] = await measure("exp feed page", feed_page, **limits)
            experiments["EXP-B deep cursor (service as is) + partial index"] = await measure(
                "exp deep cursor idx", cursor_call(deep), **limits
            )
            heavy = by_size[-1]

            async def heavy_page() -> None:
                async with sessionmaker() as session:
                    await runtime.notification_service(session).list_for_user(
                        heavy.user_id, heavy.tenant_id, per_page=PER_PAGE
                    )

            plans += await explain(
                connection,
                f"EXP-B heaviest user ({heavy.rows} rows) -- feed page 1 with the partial index",
                await capture.capture(heavy_page),
            )
        versions = await server_versions(args.database, redis)
        await connection.close()
    finally:
        await delete_redis_prefix(redis, prefix)
        await redis.aclose()
        await engine.dispose()
        if not args.keep_database:
            await drop_database(args.database)

    note_load("at end")
    print("\n".join(plans))
    print()
    print(f"# loop={loop_name()}; latencies in ms over n calls on random users")
    headers = ["measurement", "n", "p50", "p90", "p99", "max"]

    def rows_of(table: dict[str, Latencies]) -> list[list[Any]]:
        out = []
        for name, latencies in table.items():
            s = latencies.summary()
            out.append([name, s["n"], s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]])
        return out

    print_table(headers, rows_of(results))
    summaries = {name: lat.summary() for name, lat in results.items()}

    def ratio(baseline: str, subject: str, key: str) -> float:
        return float(summaries[baseline][key]) / float(summaries[subject][key])

    pairs = {
        "unread warm: redis GET / notiflow": (
            "  baseline: redis-py GET",
            "unread count, cache warm (notiflow)",
        ),
        "unread warm: redis MGET / notiflow": (
            "  baseline: redis-py MGET (same 2 keys)",
            "unread count, cache warm (notiflow)",
        ),
        "unread miss: asyncpg COUNT / notiflow": (
            "  baseline: asyncpg COUNT (held connection)",
            "unread count, cache miss (notiflow)",
        ),
        "feed page 1: asyncpg / notiflow": (
            "  baseline: asyncpg COUNT + page",
            "feed page 1 (notiflow: COUNT + page)",
        ),
        "cursor page: asyncpg / notiflow": (
            "  baseline: asyncpg cursor page",
            "feed cursor page 2 (notiflow)",
        ),
        "deep cursor: asyncpg / notiflow": (
            "  baseline: asyncpg deep cursor page",
            "feed deep cursor, mid-history (notiflow)",
        ),
    }
    ratios = {
        name: {"p50": round(ratio(b, s, "p50_ms"), 3), "p99": round(ratio(b, s, "p99_ms"), 3)}
        for name, (b, s) in pairs.items()
    }
    print()
    print_table(
        ["ratio (baseline / notiflow)", "p50", "p99"],
        [[name, r["p50"], r["p99"]] for name, r in ratios.items()],
    )
    if experiments:
        print()
        print("## EXPERIMENTS (scratch variants measured from the bench, not notiflow's code)")
        print_table(headers, rows_of(experiments))
    targets = {
        "unread-count p99 < 2 ms from cache": (
            summaries["unread count, cache warm (notiflow)"]["p99_ms"],
            UNREAD_CACHE_P99_MS,
        ),
        "feed page p99 < 10 ms with 1M rows (page 1)": (
            summaries["feed page 1 (notiflow: COUNT + page)"]["p99_ms"],
            FEED_PAGE_P99_MS,
        ),
        "feed page p99 < 10 ms with 1M rows (cursor page 2)": (
            summaries["feed cursor page 2 (notiflow)"]["p99_ms"],
            FEED_PAGE_P99_MS,
        ),
        "feed page p99 < 10 ms with 1M rows (deep cursor)": (
            summaries["feed deep cursor, mid-history (notiflow)"]["p99_ms"],
            FEED_PAGE_P99_MS,
        ),
    }
    print()
    verdicts: dict[str, bool] = {}
    for name, (value, limit) in targets.items():
        verdicts[name] = float(value) < limit
        print(
            f"target {name}: {'PASS' if verdicts[name] else 'FAIL'} "
            f"(p99 {float(value):.2f} ms, rows in table {total_rows:,})"
        )
    emit_json(
        "feed_latency",
        {
            "rows": total_rows,
            "users": args.users,
            "tenants": args.tenants,
            "calls": args.calls,
            "loop": loop_name(),
            "data": {
                "rows_per_user_median": sizes[len(sizes) // 2],
                "rows_per_user_max": sizes[-1],
                "unread_per_user_median": unread_sizes[len(unread_sizes) // 2],
                "unread_per_user_max": unread_sizes[-1],
                "table_size": table_size,
                "seed_seconds": round(seed_seconds, 1),
            },
            "latency_ms": summaries,
            "experiments_ms": {name: lat.summary() for name, lat in experiments.items()},
            "ratios": ratios,
            "target_pass": verdicts,
            "plan_indexes": index_names(plans),
            "machine": machine_info(),
            "servers": versions,
            "revision": git_revision(),
        },
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000, help="notifications (1000000)")
    parser.add_argument("--users", type=int, default=1_000, help="users (1000)")
    parser.add_argument("--tenants", type=int, default=4, help="tenants (4)")
    parser.add_argument("--calls", type=int, default=2_000, help="timed calls per measurement")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls per measurement")
    parser.add_argument(
        "--max-seconds", type=float, default=60, help="time bound per measurement loop"
    )
    parser.add_argument(
        "--database",
        default=f"notiflow_bench_feed_{uuid.uuid4().hex[:8]}",
        help="scratch database, created and dropped (default: a fresh unique name)",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help="Redis (own key prefix, cleaned)")
    parser.add_argument("--seed", type=int, default=11, help="random seed for user picks")
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="also run the labeled scratch experiments (fix candidates) at the end",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    run(lambda: main(arguments), use_uvloop=not arguments.no_uvloop)
