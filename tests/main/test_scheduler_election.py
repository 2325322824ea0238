"""`serve` runs everything a deployment needs in every configuration, and any number of
schedulers elect one: real processes, started as the README says."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_URL, TEST_PUSHER_APP_ID, TEST_PUSHER_KEY, TEST_PUSHER_SECRET
from tests.delivery.processes import (
    NotiflowProcess,
    eventually,
    everything_runs,
    free_port,
    health,
    scale_out_env,
)

pytestmark = pytest.mark.slow

APP = (TEST_PUSHER_APP_ID, TEST_PUSHER_KEY, TEST_PUSHER_SECRET)


def _events(process: NotiflowProcess, event: str) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for line in process.logs(limit=1_000_000).splitlines()
        if line.startswith("{") and f'"event": "{event}"' in line
    ]


async def test_serve_with_redis_runs_a_worker_and_the_scheduler(
    tmp_path: Path, processes: list[NotiflowProcess]
) -> None:
    api_port = free_port()
    env = scale_out_env(
        tmp_path, REDIS_URL, api_port, APP, mail_driver="file", mail_dir=str(tmp_path / "mail")
    )
    serve = NotiflowProcess(
        ["serve", "--port", str(api_port), "--ws-port", str(free_port())],
        env,
        f"http://127.0.0.1:{api_port}/health",
    )
    processes.append(serve)
    await serve.start()

    answer = await eventually(lambda: everything_runs(api_port), timeout=60)
    assert answer["worker"] == "ok"
    assert answer["scheduler"] == "ok"

    created = serve.run(
        "users", "create", "--tenant", "Acme", "--email", "owner@example.com",
        "--role", "owner", "--with-token",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as client:
        response = await client.post(
            "/api/v1/notifications/send",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "audience": "tenant",
                "type": "payment_failed",
                "title": "Payment failed",
                "message": "Update your card.",
            },
        )
        assert response.status_code == 202, response.text

    async def emailed() -> list[Path]:
        return list((tmp_path / "mail").glob("*.eml"))

    # The email job went through the Redis queue to the worker inside `serve`.
    await eventually(emailed, timeout=60)


async def test_an_api_alone_says_that_no_worker_or_scheduler_runs(
    tmp_path: Path, processes: list[NotiflowProcess]
) -> None:
    api_port = free_port()
    env = scale_out_env(tmp_path, REDIS_URL, api_port, APP, scheduler_lease_seconds="2")
    api = NotiflowProcess(
        ["api", "--port", str(api_port)], env, f"http://127.0.0.1:{api_port}/health"
    )
    processes.append(api)
    await api.start()
    # Reported, and 200: this API serves; another process is missing.
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{api_port}/health")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["worker"] == "none alive"
    assert response.json()["scheduler"] == "none alive"

    worker = NotiflowProcess(["worker", "--concurrency", "2"], env)
    scheduler = NotiflowProcess(["scheduler"], env)
    processes.extend([worker, scheduler])
    await worker.start()
    await scheduler.start()

    async def healthy() -> bool:
        return bool((await health(api_port))["status"] == "ok")

    await eventually(healthy, timeout=60)

    # A worker that dies stops counting once its last beat is older than the lease.
    worker.kill()

    async def no_worker() -> bool:
        return bool((await health(api_port))["worker"] == "none alive")

    await eventually(no_worker, timeout=60)


def _lease(database: Path) -> tuple[int, str] | None:
    """The scheduler lease's holder (as the pid in its name) and expiry, read from the
    deployment's database."""
    if not database.exists():
        return None
    with sqlite3.connect(database) as connection:
        try:
            row = connection.execute(
                "SELECT holder, expires_at FROM job_locks WHERE key = 'scheduler'"
            ).fetchone()
        except sqlite3.OperationalError:  # not migrated yet, or busy for a moment
            return None
    if row is None:
        return None
    holder, expires_at = row
    return int(holder.split(":")[-2]), str(expires_at)


def _pid(process: NotiflowProcess) -> int:
    assert process.process is not None
    return process.process.pid


async def test_schedulers_elect_one_and_another_takes_over_when_it_dies(
    tmp_path: Path, processes: list[NotiflowProcess]
) -> None:
    env = scale_out_env(tmp_path, REDIS_URL, free_port(), APP, scheduler_lease_seconds="5")
    database = tmp_path / "notiflow.db"
    first = NotiflowProcess(["scheduler"], env)
    processes.append(first)
    await first.start()

    async def held_by(candidates: list[NotiflowProcess]) -> NotiflowProcess | None:
        lease = _lease(database)
        return next((p for p in candidates if lease and lease[0] == _pid(p)), None)

    await eventually(lambda: held_by([first]), timeout=60)
    assert _events(first, "scheduler_elected")
    others = [NotiflowProcess(["scheduler"], env), NotiflowProcess(["scheduler"], env)]
    processes.extend(others)
    for other in others:
        await other.start()

    async def candidates() -> bool:
        return all(_events(other, "scheduler_started") for other in others)

    await eventually(candidates, timeout=60)
    # The leader renews, lease after lease, and nobody else is elected meanwhile.
    renewals: set[str] = set()

    async def renewed_three_times() -> bool:
        lease = _lease(database)
        assert lease is not None
        assert lease[0] == _pid(first), lease
        renewals.add(lease[1])
        return len(renewals) > 3

    await eventually(renewed_three_times, timeout=60)
    assert not any(_events(other, "scheduler_elected") for other in others)

    first.kill()  # no goodbye: its lease must run out first
    winner = await eventually(lambda: held_by(others), timeout=60)

    async def told() -> bool:  # the lease is committed a moment before the line is logged
        return bool(_events(winner, "scheduler_elected"))

    await eventually(told, timeout=30)
