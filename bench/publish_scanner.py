"""Benchmark: the due-post scanner claiming 10,000 targets, and the publish lag of 10,000 posts.

Posts go out within one minute of ``scheduled_at`` (aim: seconds).
PostgreSQL scratch database, loopback only, one run side by side.

Part 1 -- claim and dispatch. N posts with one due target each (plus ``--background`` targets
already published, so the index holds more than the due rows) on a fresh schema. Timed, with the
rows put back to ``pending``/``scheduled`` and VACUUM ANALYZEd before every run, variants in
alternating order:

  notiflow scan, no queue       ``scan_due_posts(runtime)`` with a queue whose ``enqueue`` does
                                nothing: the claim (one CTE ``UPDATE ... RETURNING`` per batch of
                                2,000 with ``FOR UPDATE SKIP LOCKED``), the posts' lock + UPDATE
                                to ``publishing``, the commits, grouping and the payloads
  notiflow scan, redis stream   the same with a real Taskiq ``RedisStreamBroker`` (a stream of
                                this run, no worker reading it): one XADD per post
  baseline, asyncpg 1 UPDATE    the bare ``UPDATE post_targets SET status, lease_until WHERE
                                status='pending' AND next_attempt_at <= now RETURNING id,
                                post_id`` of the same rows on one held asyncpg connection: no
                                post join, no post update, one statement
  baseline, asyncpg batched     the same SQL as notiflow's claim (CTE, SKIP LOCKED, join to
                                posts) in batches of 2,000, plus the posts UPDATE, on asyncpg

Ratio = baseline time / notiflow time (1.0 = as fast as the bare statement).

Part 2 -- publish lag. N posts (one target each, on 50 sandbox accounts with ``latency_ms`` 0)
all scheduled for the same instant T = now + 3 s. A runtime as ``notiflow serve`` builds it
(``create_runtime``: the embedded in-memory broker, 20 jobs at once, the real jobs, the author's
notification on every post) runs the scanner loop every ``publish_scan_interval_seconds`` (5 s,
the default). Per target, lag = the time its outcome was recorded (``updated_at``) - its
``next_attempt_at`` (T). Reported: p50 / p99 / max and the time until the last one.

Run: ``python bench/publish_scanner.py`` (defaults: 10,000 targets, 5 runs + 1 warm-up).
Quick: ``python bench/publish_scanner.py --targets 1000 --runs 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis
from sqlalchemy import func, insert, select, text
from taskiq import InMemoryBroker
from taskiq_redis import RedisStreamBroker

from _common import (
    REDIS_URL,
    drop_database,
    emit_json,
    git_revision,
    machine_info,
    note_load,
    percentile,
    pg_dsn,
    print_table,
    reset_database,
    run,
    server_versions,
    sqlalchemy_url,
)
from notiflow.config import Environment, Settings
from notiflow.content.publishing import CLAIM_BATCH, scan_due_posts
from notiflow.kit.db import create_engine
from notiflow.kit.ids import new_id, utcnow
from notiflow.kit.logging import configure_logging
from notiflow.kit.migrate import upgrade
from notiflow.kit.queue import JobQueue
from notiflow.kit.uow import create_sessionmaker
from notiflow.main.runtime import Runtime, create_runtime
from notiflow.models import Post, PostTarget, SocialAccount, Workspace
from notiflow.models.tenancy import Role
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.unread import MemoryUnreadCountCache
from notiflow.tenancy.service import create_user

DATABASE = "notiflow_bench_publish"
STREAM = "notiflow_bench_publish:jobs"
ACCOUNTS = 50


class NullQueue(JobQueue):
    """Enqueue does nothing: the scanner's own cost without a broker."""

    def __init__(self) -> None:
        super().__init__(InMemoryBroker(), [])
        self.enqueued = 0

    async def enqueue(self, name: str, payload: dict[str, Any]) -> None:
        self.enqueued += 1


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": Environment.TEST,
        "secret_key": "bench-secret-key-0123456789abcdef0123456789",
        "pusher_app_secret": "bench-pusher-secret-0123456789",
        "database_url": sqlalchemy_url(DATABASE),
        "redis_url": None,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(**values)


async def _seed(runtime: Runtime, targets: int, background: int) -> dict[str, Any]:
    """A tenant, its owner, a workspace, sandbox accounts, ``targets`` due posts with one target
    each and ``background`` published ones."""
    async with runtime.sessionmaker() as session:
        owner = await create_user(
            session, tenant_name="bench", email="owner@bench.example", role=Role.OWNER
        )
        workspace = Workspace(tenant_id=owner.tenant.id, name="Bench", timezone="UTC")
        session.add(workspace)
        await session.flush()
        accounts = [
            SocialAccount(
                tenant_id=owner.tenant.id,
                workspace_id=workspace.id,
                provider="sandbox",
                external_account_id=f"bench-{n}",
                handle=f"@bench{n}",
                access_token_encrypted=runtime.token_cipher().encrypt("bench-token"),
                options={"latency_ms": 0},
            )
            for n in range(ACCOUNTS)
        ]
        session.add_all(accounts)
        await session.commit()
    now = utcnow()
    for status, count, due in (("published", background, None), ("scheduled", targets, now)):
        for start in range(0, count, 5_000):
            size = min(5_000, count - start)
            post_rows = [
                {
                    "id": new_id(),
                    "tenant_id": owner.tenant.id,
                    "workspace_id": workspace.id,
                    "author_id": owner.user.id,
                    "content": f"bench post {start + n}",
                    "status": status,
                    "scheduled_at": due or now - timedelta(days=1),
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
                for n in range(size)
            ]
            target_rows = [
                {
                    "id": new_id(),
                    "post_id": row["id"],
                    "social_account_id": accounts[(start + n) % ACCOUNTS].id,
                    "workspace_id": workspace.id,
                    "status": "pending" if due else "published",
                    "next_attempt_at": row["scheduled_at"],
                    "attempts": 0 if due else 1,
                    "created_at": now,
                    "updated_at": now,
                }
                for n, row in enumerate(post_rows)
            ]
            async with runtime.sessionmaker() as session:
                await session.execute(insert(Post), post_rows)
                await session.execute(insert(PostTarget), target_rows)
                await session.commit()
    return {"tenant_id": owner.tenant.id, "user_id": owner.user.id}


async def _reset_due(connection: asyncpg.Connection) -> None:
    await connection.execute(
        "UPDATE post_targets SET status = 'pending', lease_until = NULL WHERE status = 'publishing'"
    )
    await connection.execute("UPDATE posts SET status = 'scheduled' WHERE status = 'publishing'")
    await connection.execute("VACUUM ANALYZE post_targets")
    await connection.execute("VACUUM ANALYZE posts")


BARE_UPDATE = """
UPDATE post_targets SET status = 'publishing', lease_until = $1, updated_at = $2
WHERE status = 'pending' AND next_attempt_at <= $2
RETURNING id, post_id
"""

# What notiflow's claim_due_targets sends, written by hand.
BATCH_CLAIM = """
WITH due_targets AS MATERIALIZED (
  SELECT post_targets.id FROM post_targets JOIN posts ON posts.id = post_targets.post_id
  WHERE ((post_targets.status = 'pending' AND post_targets.next_attempt_at <= $2)
      OR (post_targets.status = 'publishing' AND post_targets.lease_until < $2))
    AND posts.status IN ('scheduled', 'publishing')
  ORDER BY post_targets.next_attempt_at LIMIT $3
  FOR UPDATE OF post_targets SKIP LOCKED)
UPDATE post_targets SET status = 'publishing', lease_until = $1, updated_at = $2
WHERE post_targets.id IN (SELECT id FROM due_targets)
RETURNING post_targets.id, post_targets.post_id
"""


async def _bare_single(connection: asyncpg.Connection) -> int:
    now = utcnow()
    async with connection.transaction():
        rows = await connection.fetch(BARE_UPDATE, now + timedelta(seconds=300), now)
    return len(rows)


async def _bare_batched(connection: asyncpg.Connection) -> int:
    total = 0
    while True:
        now = utcnow()
        async with connection.transaction():
            rows = await connection.fetch(
                BATCH_CLAIM, now + timedelta(seconds=300), now, CLAIM_BATCH
            )
            if rows:
                post_ids = list({row["post_id"] for row in rows})
                await connection.execute(
                    "UPDATE posts SET status = 'publishing', updated_at = $2 "
                    "WHERE id = ANY($1::uuid[]) AND status = 'scheduled'",
                    post_ids,
                    now,
                )
        total += len(rows)
        if len(rows) < CLAIM_BATCH:
            return total


async def part1(targets: int, background: int, runs: int) -> dict[str, Any]:
    await reset_database(DATABASE)
    settings = _settings()
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        cache=MemoryUnreadCountCache(),
        events=NotificationEvents(),
    )
    await _seed(runtime, targets, background)
    connection = await asyncpg.connect(pg_dsn(DATABASE))
    redis = Redis.from_url(REDIS_URL)
    stream_broker = RedisStreamBroker(REDIS_URL, queue_name=STREAM, maxlen=1_000_000)
    from notiflow.main.jobs import ALL_JOBS

    redis_queue = JobQueue(stream_broker, ALL_JOBS)
    await stream_broker.startup()

    async def notiflow_null() -> int:
        runtime.queue = NullQueue()
        return await scan_due_posts(runtime)

    async def notiflow_redis() -> int:
        runtime.queue = redis_queue
        count = await scan_due_posts(runtime)
        await redis.delete(STREAM)
        return count

    async def bare_single() -> int:
        return await _bare_single(connection)

    async def bare_batched() -> int:
        return await _bare_batched(connection)

    variants = {
        "notiflow scan, no queue": notiflow_null,
        "notiflow scan, redis stream": notiflow_redis,
        "baseline asyncpg, 1 UPDATE": bare_single,
        "baseline asyncpg, batched": bare_batched,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_number in range(runs + 1):
        order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
        for name in order:
            await _reset_due(connection)
            started = time.perf_counter()
            claimed = await variants[name]()
            seconds = time.perf_counter() - started
            if claimed != targets:
                raise SystemExit(f"{name}: claimed {claimed}, expected {targets}")
            if round_number > 0:  # round 0 warms up
                times[name].append(seconds)
    await stream_broker.shutdown()
    await redis.aclose()
    await connection.close()
    await engine.dispose()

    baseline = statistics.median(times["baseline asyncpg, 1 UPDATE"])
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rows.append([name, median * 1000, min(samples) * 1000, targets / median, baseline / median])
    print(f"\nPart 1: claim and dispatch {targets:,} due targets ({background:,} others)")
    print_table(["variant", "median ms", "best ms", "targets/s", "x baseline"], rows)
    return {name: sorted(samples) for name, samples in times.items()}


async def part2(targets: int, scan_interval: float, *, notify: bool = True) -> dict[str, Any]:
    await reset_database(DATABASE)
    settings = _settings(publish_scan_interval_seconds=scan_interval)
    runtime = create_runtime(settings)
    await upgrade(runtime.engine)
    seeded = await _seed(runtime, 0, 0)
    # Due in 3 s: the posts are written first, then the clock reaches them.
    due = utcnow() + timedelta(seconds=3)
    async with runtime.sessionmaker() as session:
        accounts = (await session.scalars(select(SocialAccount.id))).all()
        workspace_id = await session.scalar(select(Workspace.id))
    post_rows = [
        {
            "id": new_id(),
            "tenant_id": seeded["tenant_id"],
            "workspace_id": workspace_id,
            "author_id": seeded["user_id"] if notify else None,
            "content": f"lag post {n}",
            "status": "scheduled",
            "scheduled_at": due,
            "version": 1,
        }
        for n in range(targets)
    ]
    async with runtime.sessionmaker() as session:
        await session.execute(insert(Post), post_rows)
        await session.execute(
            insert(PostTarget),
            [
                {
                    "id": new_id(),
                    "post_id": row["id"],
                    "social_account_id": accounts[n % len(accounts)],
                    "workspace_id": workspace_id,
                    "next_attempt_at": due,
                }
                for n, row in enumerate(post_rows)
            ],
        )
        await session.commit()
    await runtime.start()
    from notiflow.content.jobs import scan_forever

    scanner = asyncio.create_task(scan_forever(runtime, settings.publish_scan_interval_seconds))
    started = time.perf_counter()
    try:
        while True:
            async with runtime.sessionmaker() as session:
                open_count = await session.scalar(
                    select(func.count())
                    .select_from(PostTarget)
                    .where(PostTarget.status.in_(("pending", "publishing")))
                )
            if not open_count:
                break
            if time.perf_counter() - started > 600:
                raise SystemExit(f"still {open_count} open targets after 600 s")
            await asyncio.sleep(0.2)
    finally:
        scanner.cancel()
    async with runtime.sessionmaker() as session:
        rows = (
            await session.execute(
                select(PostTarget.status, PostTarget.next_attempt_at, PostTarget.updated_at)
            )
        ).all()
        notified = await session.scalar(
            text("SELECT count(*) FROM notifications WHERE type = 'post_published'")
        )
    await runtime.close()
    lags = [(updated - scheduled).total_seconds() for _, scheduled, updated in rows]
    statuses = {status for status, _, _ in rows}
    if statuses != {"published"} or notified != (targets if notify else 0):
        raise SystemExit(f"incomplete: statuses {statuses}, {notified} notifications")
    summary = {
        "targets": targets,
        "notify": notify,
        "scan_interval_s": scan_interval,
        "p50_s": round(percentile(lags, 50), 3),
        "p99_s": round(percentile(lags, 99), 3),
        "max_s": round(max(lags), 3),
        "min_s": round(min(lags), 3),
        "published_per_s_after_first": round(targets / max(1e-9, max(lags) - min(lags)), 1),
    }
    author = "author notified" if notify else "no author (no notification)"
    print(f"\nPart 2: publish lag, {targets:,} posts due at one instant, in-memory queue, {author}")
    print_table(
        ["scan interval s", "p50 s", "p99 s", "max s", "first s", "targets/s"],
        [
            [
                scan_interval,
                summary["p50_s"],
                summary["p99_s"],
                summary["max_s"],
                summary["min_s"],
                summary["published_per_s_after_first"],
            ]
        ],
    )
    return summary


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--background", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scan-interval", type=float, default=5.0)
    parser.add_argument("--skip-lag", action="store_true")
    parser.add_argument("--skip-claim", action="store_true", help="only part 2 (publish lag)")
    parser.add_argument(
        "--no-author",
        action="store_true",
        help="also measure part 2 with posts that have no author: the lag without the "
        "author's notification (and its delivery jobs)",
    )
    args = parser.parse_args()
    configure_logging("WARNING", json=True)
    note_load("at start")
    try:
        claim = None if args.skip_claim else await part1(args.targets, args.background, args.runs)
        lag = None if args.skip_lag else await part2(args.targets, args.scan_interval)
        lag_without_notification = (
            await part2(args.targets, args.scan_interval, notify=False) if args.no_author else None
        )
        versions = await server_versions(DATABASE, None)
    finally:
        await drop_database(DATABASE)
    note_load("at end")
    emit_json(
        "publish_scanner",
        {
            "claim_seconds": claim,
            "lag": lag,
            "lag_without_notification": lag_without_notification,
            "machine": machine_info(),
            "versions": versions,
            "revision": git_revision(),
            "run_id": str(uuid.uuid4()),
        },
    )


if __name__ == "__main__":
    run(main, use_uvloop=True)
