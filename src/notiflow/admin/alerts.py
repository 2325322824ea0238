"""Alerting on failed jobs: a Slack-compatible webhook and email to
the tenant's owners and admins, rate-limited so a storm of failures is one alert, not thousands.

The first failure of a job in a window (5 minutes by default) alerts at once; later ones in the
same window are counted, and the next alert says how many were held back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib
import httpx
import structlog
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.config import MailDriver, Settings, SmtpTls
from notiflow.delivery.mail_folder import write_message
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Membership, User
from notiflow.models.tenancy import Role

log = structlog.get_logger(__name__)

WINDOW_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Alert:
    job_name: str
    error: str
    tenant_id: uuid.UUID | None = None
    held_back: int = 0

    def text(self) -> str:
        where = f" (tenant {self.tenant_id})" if self.tenant_id else ""
        more = (
            f" — and {self.held_back} more failure(s) since the last alert"
            if self.held_back
            else ""
        )
        return f":rotating_light: notiflow job {self.job_name} failed{where}: {self.error}{more}"


EmailAdmins = Callable[[Alert], Awaitable[None]]


class Alerter:
    def __init__(
        self,
        *,
        slack_webhook_url: str | None,
        redis: Redis | None = None,
        email_admins: EmailAdmins | None = None,
        window_seconds: float = WINDOW_SECONDS,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.slack_webhook_url = slack_webhook_url
        self.redis = redis
        self.email_admins = email_admins
        self.window_seconds = window_seconds
        self.client = client or httpx.AsyncClient(timeout=10.0)
        self._windows: dict[str, tuple[float, int]] = {}

    async def job_failed(
        self, job_name: str, error: str, tenant_id: uuid.UUID | None = None
    ) -> bool:
        """Alert unless this job already alerted within the window; True when sent."""
        held_back = await self._open_window(job_name)
        if held_back is None:
            return False
        alert = Alert(
            job_name=job_name, error=error[:500], tenant_id=tenant_id, held_back=held_back
        )
        await self.send(alert)
        return True

    async def send(self, alert: Alert) -> None:
        if self.slack_webhook_url:
            try:
                response = await self.client.post(
                    self.slack_webhook_url, json={"text": alert.text()}
                )
                if response.status_code >= 400:
                    log.warning("alert_webhook_refused", status=response.status_code)
            except httpx.HTTPError as error:
                log.warning("alert_webhook_failed", error=str(error))
        if self.email_admins is not None and alert.tenant_id is not None:
            try:
                await self.email_admins(alert)
            except Exception:
                log.exception("alert_email_failed")
        log.error("job_failed_alert", job=alert.job_name, tenant_id=str(alert.tenant_id))

    async def _open_window(self, job_name: str) -> int | None:
        """None while a window is open (the failure is counted); otherwise the number of
        failures held back since the previous alert."""
        if self.redis is not None:
            key = f"notiflow:alert-window:{job_name}"
            held_key = f"notiflow:alert-held:{job_name}"
            if await self.redis.set(key, "1", nx=True, px=int(self.window_seconds * 1000)):
                held_back: bytes | str | None = await self.redis.getdel(held_key)
                return int(held_back) if held_back is not None else 0
            await self.redis.incr(held_key)
            return None
        now = time.monotonic()
        opened, held = self._windows.get(job_name, (float("-inf"), 0))
        if now - opened < self.window_seconds:
            self._windows[job_name] = (opened, held + 1)
            return None
        self._windows[job_name] = (now, 0)
        return held

    async def close(self) -> None:
        await self.client.aclose()


def email_tenant_admins(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> EmailAdmins:
    """An ``email_admins`` hook: a plain-text alert to the tenant's owners and admins, sent
    directly over SMTP (not through the outbox, which may be what is failing)."""

    async def send(alert: Alert) -> None:
        if alert.tenant_id is None:  # a failure of no tenant's: no tenant admin to tell
            return
        async with sessionmaker() as session:
            addresses = list(
                (
                    await session.scalars(
                        select(User.email)
                        .join(Membership, Membership.user_id == User.id)
                        .where(
                            in_tenant(Membership, alert.tenant_id),
                            Membership.role.in_([Role.OWNER.value, Role.ADMIN.value]),
                        )
                    )
                ).all()
            )
        if not addresses:
            return
        message = EmailMessage()
        message["From"] = settings.mail_from
        message["To"] = ", ".join(addresses)
        message["Subject"] = f"[notiflow] {alert.job_name} failed"
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(
            f"{alert.text()}\n\nSee `notiflow jobs failed` for details; "
            "`notiflow jobs retry --all` runs failed jobs again.\n"
        )
        if settings.mail_transport is MailDriver.FILE:
            await write_message(settings.mail_dir, message)
            return
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=settings.smtp_tls is SmtpTls.TLS,
            start_tls=settings.smtp_tls is SmtpTls.STARTTLS,
            timeout=settings.smtp_timeout_seconds,
        )

    return send
