"""/metrics is true in every process: the API counts notifications created, the job queue's
depth is a gauge, and workers and schedulers serve theirs on --metrics-port."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_PUSHER_APP_ID, TEST_PUSHER_KEY, TEST_PUSHER_SECRET
from tests.delivery.processes import NotiflowProcess, eventually, free_port, scale_out_env
from tests.fault_servers import OwnRedis

pytestmark = pytest.mark.slow

APP = (TEST_PUSHER_APP_ID, TEST_PUSHER_KEY, TEST_PUSHER_SECRET)


def _sample(exposition: str, name: str, labels: str = "") -> float | None:
    """The value of one sample (``name{labels}``) in a Prometheus text exposition."""
    pattern = rf"^{re.escape(name)}{re.escape('{' + labels + '}') if labels else ''} (\S+)$"
    match = re.search(pattern, exposition, re.MULTILINE)
    return float(match.group(1)) if match else None


async def _metrics(port: int) -> str:
    """The process's exposition ("" while it does not listen yet)."""
    async with httpx.AsyncClient() as client:
        try:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
        except httpx.TransportError:
            return ""
    assert response.status_code == 200
    return response.text


@pytest.fixture
async def redis() -> AsyncIterator[OwnRedis]:
    own = OwnRedis().start()
    try:
        yield own
    finally:
        own.stop()


async def test_every_process_serves_true_metrics(tmp_path: Path, redis: OwnRedis) -> None:
    api_port, worker_port = free_port(), free_port()
    env = scale_out_env(
        tmp_path, redis.url, api_port, APP, mail_driver="file", mail_dir=str(tmp_path / "mail")
    )
    api = NotiflowProcess(
        ["api", "--port", str(api_port)], env, f"http://127.0.0.1:{api_port}/health"
    )
    worker = NotiflowProcess(["worker", "--metrics-port", str(worker_port)], env)
    try:
        await api.start()
        created = api.run(
            "users", "create", "--tenant", "Acme", "--email", "o@x.io", "--role", "owner",
            "--with-token",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        token = json.loads(created.stdout)["token"]
        for title in ("one", "two", "three"):
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as client:
                response = await client.post(
                    "/api/v1/notifications/send",
                    headers={"Authorization": f"Bearer {token}"},
                    json={
                        "audience": "tenant",
                        "type": "payment_failed",
                        "title": title,
                        "message": "Update your card.",
                    },
                )
            assert response.status_code == 202, response.text

        async def counted() -> bool:
            text = await _metrics(api_port)
            total = 'type="payment_failed"'
            return _sample(text, "notiflow_notifications_created_total", total) == 3.0

        await eventually(counted, timeout=30)

        # No worker yet: the email jobs wait in the Redis stream, and the gauge says so.
        async def waiting() -> bool:
            depth = _sample(await _metrics(api_port), "notiflow_queue_depth", 'queue="jobs"')
            return depth is not None and depth >= 1

        await eventually(waiting, timeout=30)

        await worker.start()

        async def drained() -> bool:
            text = await _metrics(worker_port)
            return _sample(text, "notiflow_queue_depth", 'queue="jobs"') == 0.0 and bool(
                list((tmp_path / "mail").glob("*.eml"))
            )

        await eventually(drained, timeout=60)
        ran = await _metrics(worker_port)
        assert "notiflow_job_runs_total" in ran
        assert "notiflow_deliveries_total" in ran
    finally:
        worker.stop()
        api.stop()


async def test_the_scheduler_serves_metrics_on_its_port(tmp_path: Path, redis: OwnRedis) -> None:
    metrics_port = free_port()
    env = scale_out_env(tmp_path, redis.url, free_port(), APP)
    scheduler = NotiflowProcess(["scheduler", "--metrics-port", str(metrics_port)], env)
    try:
        await scheduler.start()

        async def served() -> bool:
            text = await _metrics(metrics_port)
            return _sample(text, "notiflow_queue_depth", 'queue="jobs"') is not None

        await eventually(served, timeout=60)
    finally:
        scheduler.stop()
