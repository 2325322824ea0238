"""Shared helpers for the benchmarks: scratch databases, statistics, machine facts, output.

Everything here talks to 127.0.0.1 only. Benchmarks create and drop their own scratch PostgreSQL
database and use their own Redis key prefix, so they never touch a developer's or the tests' data.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from redis.asyncio import Redis

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/14"


def pg_dsn(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


def sqlalchemy_url(database: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"


def check_local(url: str) -> None:
    """Refuse anything but the loopback address."""
    if "@127.0.0.1:" not in url and "//127.0.0.1:" not in url:
        raise SystemExit(f"benchmarks only run against 127.0.0.1, got {url!r}")


async def reset_database(database: str) -> None:
    """Create ``database`` if missing, then empty its public schema."""
    if not database.replace("_", "").isalnum():
        raise SystemExit(f"unsafe database name {database!r}")
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(pg_dsn(database))
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


async def drop_database(database: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_redis_prefix(redis: Redis, prefix: str) -> int:
    """Delete the benchmark's own keys (never FLUSHDB: the database may be shared)."""
    deleted = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 5000:
            deleted += await redis.unlink(*batch)
            batch.clear()
    if batch:
        deleted += await redis.unlink(*batch)
    return deleted


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Latencies:
    """Per-call latencies in milliseconds."""

    name: str
    samples: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        s = self.samples
        return {
            "n": len(s),
            "p50_ms": round(percentile(s, 50), 4),
            "p90_ms": round(percentile(s, 90), 4),
            "p99_ms": round(percentile(s, 99), 4),
            "max_ms": round(max(s), 4),
            "mean_ms": round(statistics.fmean(s), 4),
        }


async def measure(
    name: str,
    call: Callable[[int], Awaitable[Any]],
    *,
    count: int,
    max_seconds: float,
    warmup: int = 50,
    prepare: Callable[[int], Awaitable[Any]] | None = None,
) -> Latencies:
    """Time ``call(i)`` up to ``count`` times (stopping after ``max_seconds``), after ``warmup``
    untimed calls. ``prepare(i)``, when given, runs before each call outside the timed region."""
    for i in range(warmup):
        if prepare is not None:
            await prepare(i)
        await call(i)
    result = Latencies(name)
    deadline = time.perf_counter() + max_seconds
    for i in range(count):
        if prepare is not None:
            await prepare(warmup + i)
        start = time.perf_counter_ns()
        await call(warmup + i)
        result.samples.append((time.perf_counter_ns() - start) / 1e6)
        if time.perf_counter() > deadline:
            break
    return result


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def note_load(stage: str) -> None:
    """Print the 1-minute load average: on a 2-core machine anything else running skews results."""
    one_minute = os.getloadavg()[0]
    warning = "  (WARNING: machine busy, figures will be noisy)" if one_minute > 0.7 else ""
    print(f"# load average {stage}: {one_minute:.2f}{warning}")


async def server_versions(database: str, redis: Redis | None) -> dict[str, Any]:
    connection = await asyncpg.connect(pg_dsn(database))
    try:
        pg_version = await connection.fetchval("SHOW server_version")
        settings = {
            name: await connection.fetchval(f"SHOW {name}")
            for name in ("shared_buffers", "synchronous_commit", "fsync", "work_mem", "jit")
        }
    finally:
        await connection.close()
    info: dict[str, Any] = {"postgresql": pg_version, "pg_settings": settings}
    if redis is not None:
        server = await redis.info("server")
        info["redis"] = server.get("redis_version")
    return info


def git_revision() -> str | None:
    """The checked-out commit, read-only (for the record in the JSON line)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607 - read-only, on PATH
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print(
            "  ".join(
                cell.rjust(widths[i]) if i else cell.ljust(widths[i]) for i, cell in enumerate(row)
            )
        )
        if index == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value >= 100:
            return f"{value:.1f}"
        if value >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def emit_json(name: str, payload: dict[str, Any]) -> None:
    """One machine-readable line, prefixed so it can be grepped out of the output."""
    print(f"BENCH_JSON {json.dumps({'bench': name, **payload}, default=str, sort_keys=True)}")


def run(main: Callable[[], Awaitable[Any]], *, use_uvloop: bool) -> Any:
    """Run ``main()`` on uvloop (what uvicorn uses in production) or the default asyncio loop."""
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if use_uvloop:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
            use_uvloop = False
        else:
            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(_call(main))


async def _call(main: Callable[[], Awaitable[Any]]) -> Any:
    return await main()


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
