"""Where email goes: the mail folder of development, and the choice production must make.

Started as a new user starts notiflow: `notiflow serve` in development with no SMTP setting, in a
directory of its own, writes each email to ./var/mail and says so at start-up.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from notiflow.config import Environment, MailDriver, Settings
from tests.delivery.processes import NotiflowProcess, eventually, free_port, notiflow_env

STRONG = {
    "secret_key": "mail-folder-test-secret-key-0123456789abcdef",
    "pusher_app_secret": "mail-folder-pusher-secret-4f9a2c",
}


@pytest.fixture(autouse=True)
def _no_notiflow_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings from the arguments only (no NOTIFLOW_* variable, no .env file)."""
    for name in [name for name in os.environ if name.startswith("NOTIFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_development_without_an_smtp_setting_writes_to_the_folder() -> None:
    settings = Settings(env=Environment.DEVELOPMENT)
    assert settings.mail_transport is MailDriver.FILE
    assert settings.mail_dir == Path("var/mail")


@pytest.mark.parametrize(
    "given", [{"smtp_host": "mail.example.com"}, {"smtp_port": 2525}, {"mail_driver": "smtp"}]
)
def test_any_smtp_setting_or_the_driver_means_smtp(given: dict[str, object]) -> None:
    settings = Settings(env=Environment.DEVELOPMENT, **given)  # type: ignore[arg-type]
    assert settings.mail_transport is MailDriver.SMTP


def test_production_must_say_how_email_is_sent() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env=Environment.PRODUCTION, **STRONG)
    message = str(refused.value)
    assert "NOTIFLOW_SMTP_HOST" in message
    assert "NOTIFLOW_MAIL_DRIVER=file" in message

    smtp = Settings(env=Environment.PRODUCTION, smtp_host="mail.example.com", **STRONG)
    assert smtp.mail_transport is MailDriver.SMTP
    folder = Settings(env=Environment.PRODUCTION, mail_driver=MailDriver.FILE, **STRONG)
    assert folder.mail_transport is MailDriver.FILE


def _messages(folder: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(folder.glob("*.eml")) if folder.is_dir() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


async def test_serve_in_development_writes_each_email_to_var_mail(tmp_path: Path) -> None:
    api_port = free_port()
    env = notiflow_env(
        env="development",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'var' / 'notiflow.db'}",
        log_level="INFO",
    )
    serve = NotiflowProcess(
        ["serve", "--port", str(api_port), "--ws-port", str(free_port())],
        env,
        f"http://127.0.0.1:{api_port}/health",
        cwd=tmp_path,
    )
    await serve.start()
    try:
        created = serve.run(
            "users", "create", "--tenant", "Acme", "--email", "owner@example.com",
            "--name", "Olivia Owner", "--role", "owner", "--with-token",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        token = json.loads(created.stdout)["token"]
        [listening] = [
            json.loads(line) for line in serve.logs().splitlines() if '"api_listening"' in line
        ]
        assert listening["mail"] == "file"
        assert listening["mail_dir"] == str(tmp_path / "var" / "mail")

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

            folder = tmp_path / "var" / "mail"

            async def written() -> list[EmailMessage]:
                return _messages(folder)

            [message] = await eventually(written, timeout=30)
            assert message["To"] == "Olivia Owner <owner@example.com>"
            assert "Payment failed" in str(message["Subject"])
            assert message.get_body(("plain",)) is not None
            assert "Update your card." in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert message["List-Unsubscribe"]

            async def ledger_says_sent() -> bool:
                feed = await client.get(
                    "/api/v1/notifications", headers={"Authorization": f"Bearer {token}"}
                )
                [item] = feed.json()["data"]
                delivery = await client.get(
                    f"/api/v1/notifications/{item['id']}/deliveries",
                    headers={"Authorization": f"Bearer {token}"},
                )
                rows = delivery.json()["data"]["deliveries"]
                states = {row["channel"]: row["status"] for row in rows}
                return states.get("email") == "sent"

            await eventually(ledger_says_sent, timeout=30)
        assert not list(folder.glob(".*.partial")), "no half-written files are left"
    finally:
        serve.stop()


async def test_production_without_a_mail_setting_refuses_to_start(tmp_path: Path) -> None:
    env = notiflow_env(
        env="production",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'notiflow.db'}",
        **STRONG,
    )
    process = NotiflowProcess(["serve"], env, cwd=tmp_path)
    result = process.run("serve", "--port", str(free_port()), "--ws-port", str(free_port()))
    process.stop()
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    error = json.loads(line)["error"]
    assert error["code"] == "configuration_error"
    assert "NOTIFLOW_MAIL_DRIVER=file" in error["message"]
