"""Email end to end through a real `notiflow serve` process (its in-process worker and sweeper),
a real SMTP server (aiosmtpd) and a local webhook receiver for alerts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.main.runtime import Runtime
from notiflow.models import FailedJob, NotificationDelivery
from notiflow.models.tenancy import Role
from tests.admin.webhook_receiver import WebhookReceiver
from tests.conftest import TEST_PUSHER_SECRET, MakeMember
from tests.delivery.conftest import SmtpServer
from tests.delivery.processes import eventually, free_port

NOTIFLOW = str(Path(sys.executable).with_name("notiflow"))


class Serve:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603, ASYNC220 - our console script, started once
            [NOTIFLOW, "serve", "--port", str(self.port), "--ws-port", str(free_port())],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                if self.process.poll() is not None:
                    raise AssertionError(self.process.stderr.read().decode()[-3000:])  # type: ignore[union-attr]
                try:
                    if (await client.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("notiflow serve did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own console script
            [NOTIFLOW, *args], env=self.env, capture_output=True, text=True, check=False
        )


@pytest.fixture
async def stack(
    engine: AsyncEngine, runtime: Runtime, smtp_server: SmtpServer
) -> AsyncIterator[tuple[Serve, SmtpServer, WebhookReceiver]]:
    receiver = await WebhookReceiver().start()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFLOW_")}
    env.update(
        NOTIFLOW_ENV="test",
        NOTIFLOW_SECRET_KEY="e2e-secret-key-0123456789abcdef0123",
        NOTIFLOW_PUSHER_APP_SECRET=TEST_PUSHER_SECRET,
        NOTIFLOW_DATABASE_URL=engine.url.render_as_string(hide_password=False),
        NOTIFLOW_SMTP_HOST=smtp_server.host,
        NOTIFLOW_SMTP_PORT=str(smtp_server.port),
        NOTIFLOW_SMTP_TIMEOUT_SECONDS="3",
        NOTIFLOW_PUBLIC_URL=f"http://127.0.0.1:{port}",
        NOTIFLOW_SWEEP_INTERVAL_SECONDS="0.2",
        NOTIFLOW_DELIVERY_BACKOFF_SECONDS="0.3",
        NOTIFLOW_EMAIL_RETRY_HORIZON_SECONDS="1",
        NOTIFLOW_ALERT_SLACK_WEBHOOK_URL=receiver.url,
        NOTIFLOW_LOG_LEVEL="WARNING",
    )
    serve = Serve(env, port)
    await serve.start()
    try:
        yield serve, smtp_server, receiver
    finally:
        serve.stop()
        await receiver.stop()


async def _email_delivery(runtime: Runtime, notification_id: str) -> NotificationDelivery | None:
    async with runtime.sessionmaker() as session:
        delivery: NotificationDelivery | None = await session.scalar(
            select(NotificationDelivery).where(
                NotificationDelivery.notification_id == uuid.UUID(notification_id),
                NotificationDelivery.channel == "email",
            )
        )
        return delivery


async def test_email_end_to_end_with_retries_alert_and_manual_retry(
    stack: tuple[Serve, SmtpServer, WebhookReceiver], runtime: Runtime, make_member: MakeMember
) -> None:
    serve, smtp, alerts = stack
    owner = await make_member("acme", role=Role.OWNER, locale="az")
    quiet = await make_member("acme", email_notifications_enabled=False)

    async with httpx.AsyncClient(base_url=serve.url, headers=owner.headers) as api:
        sent = await api.post(
            "/api/v1/notifications/send",
            json={
                "user_ids": [str(owner.id), str(quiet.id)],
                "type": "payment_failed",
                "title": "Ödəniş alınmadı",
                "message": "Kartınızı yeniləyin.",
                "action_url": "/billing",
            },
        )
        assert sent.status_code == 202, sent.text
        by_user = {row["user_id"]: row["id"] for row in sent.json()["data"]["notifications"]}

        # 1. the owner's email arrives, in Azerbaijani, with both parts
        await eventually(lambda: _received(smtp, 1))
        [mail] = smtp.received
        message = mail.message
        assert owner.user.email in message["To"]
        assert message["Subject"] == "Ödəniş alınmadı"
        assert message.get_body(("plain",)) is not None
        assert message.get_body(("html",)) is not None
        assert "Abunəlikdən çıx" in message.get_body(("html",)).get_content()
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        ledger = (
            await api.get(f"/api/v1/notifications/{by_user[str(owner.id)]}/deliveries")
        ).json()
        email = next(d for d in ledger["data"]["deliveries"] if d["channel"] == "email")
        assert email["status"] == "sent"

        # 2. the user with email off got nothing, and the ledger says why
        quiet_delivery = await _email_delivery(runtime, by_user[str(quiet.id)])
        assert quiet_delivery is not None
        assert (quiet_delivery.status, quiet_delivery.reason) == ("suppressed", "user_global_off")

        # 3. one-click unsubscribe from the header works without logging in
        unsubscribe = message["List-Unsubscribe"].strip("<>").split(">")[0]
        async with httpx.AsyncClient() as anonymous:
            response = await anonymous.post(
                unsubscribe,
                content="List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        assert response.status_code == 200
        preferences = (await api.get("/api/v1/notifications/preferences")).json()["data"]
        payment = next(p for p in preferences if p["notification_type"] == "payment_failed")
        assert payment["email_enabled"] is False
        assert len(smtp.received) == 1

        # 4. SMTP down: retried, then failed with a reason, a failed_jobs row and ONE alert
        smtp.stop()
        retry_sent = await api.post(
            "/api/v1/notifications/send",
            json={
                "user_ids": [str(owner.id)],
                "type": "account_token_expired",
                "title": "Token expired",
                "message": "Reconnect your account.",
            },
        )
        notification_id = retry_sent.json()["data"]["notifications"][0]["id"]

        async def failed() -> NotificationDelivery | None:
            delivery = await _email_delivery(runtime, notification_id)
            return delivery if delivery is not None and delivery.status == "failed" else None

        delivery = await eventually(failed, timeout=30)
        assert delivery.attempts == 3
        assert "mail server" in (delivery.last_error or "")
        async with runtime.sessionmaker() as session:
            failed_jobs = (await session.scalars(select(FailedJob))).all()
        # only the email failed: Web Push without a subscribed browser is skipped, not failed
        assert [job.args["delivery_id"] for job in failed_jobs] == [str(delivery.id)]
        await eventually(lambda: _count(alerts.received, 1))
        assert "delivery.send" in alerts.received[0]["text"]
        notification = (await api.get("/api/v1/notifications", params={"per_page": 1})).json()
        assert notification["data"][0]["id"] == notification_id

    # 5. the server comes back; `notiflow jobs retry` delivers it exactly once
    smtp.start()
    result = serve.cli("jobs", "retry", "--all")
    assert result.returncode == 0, result.stderr
    await eventually(lambda: _received(smtp, 2))
    await asyncio.sleep(1.0)  # a duplicate would show up by now (sweeps run every 0.2 s)
    assert len(smtp.received) == 2
    assert smtp.received[1].message["Subject"] == "Token expired"
    delivery = await _email_delivery(runtime, notification_id)
    assert delivery is not None
    assert delivery.status == "sent"
    assert len(alerts.received) == 1


async def _received(smtp: SmtpServer, count: int) -> bool:
    return len(smtp.received) >= count


async def _count(items: list[Any], count: int) -> bool:
    return len(items) >= count
