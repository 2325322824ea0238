"""Outside development, secrets that were typed rather than generated are refused at start-up."""

from __future__ import annotations

import base64
import secrets

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from notiflow.config import Environment, Settings
from tests.conftest import make_settings

STRONG = {
    "secret_key": secrets.token_urlsafe(32),
    "pusher_app_secret": "7f3a9c2e41b8d05e6a1f",  # 20 hex digits, as Pusher's dashboard gives
    "smtp_host": "mail.example.com",  # production must say how email is sent
}
ZEROS = base64.urlsafe_b64encode(bytes(32)).decode()
# A well-formed key of its own (fixed, so that every test process collects the same test ids).
SOME_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    ("setting", "value", "how_to_generate"),
    [
        ("secret_key", "x" * 32, "secrets.token_urlsafe(32)"),
        ("secret_key", "ab" * 20, "secrets.token_urlsafe(32)"),
        ("pusher_app_secret", "a" * 24, "secrets.token_urlsafe(32)"),
        ("pusher_app_secret", "abcdabcdabcdabcdabcd", "secrets.token_urlsafe(32)"),
        ("encryption_keys", f"{SOME_KEY},{ZEROS}", "Fernet.generate_key()"),
        ("pusher_encryption_master_key", ZEROS, "secrets.token_bytes(32)"),
    ],
)
@pytest.mark.parametrize("env", [Environment.PRODUCTION, Environment.TEST])
def test_a_low_entropy_secret_is_refused_with_what_to_do(
    env: Environment, setting: str, value: str, how_to_generate: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env=env, **{**STRONG, setting: value})

    message = str(refused.value)
    assert f"NOTIFLOW_{setting.upper()}" in message
    assert "distinct characters" in message
    assert how_to_generate in message


def test_generated_secrets_are_accepted_in_production() -> None:
    settings = Settings(
        env=Environment.PRODUCTION,
        **STRONG,
        encryption_keys=f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
        pusher_encryption_master_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    assert settings.env is Environment.PRODUCTION
    for _ in range(200):  # random values of the minimum lengths pass, not just lucky ones
        Settings(
            env=Environment.PRODUCTION,
            secret_key=secrets.token_hex(16),
            pusher_app_secret=secrets.token_urlsafe(12),
            smtp_host="mail.example.com",
        )


def test_development_keeps_working_with_its_defaults_and_any_secret() -> None:
    assert Settings(env=Environment.DEVELOPMENT).env is Environment.DEVELOPMENT
    Settings(env=Environment.DEVELOPMENT, secret_key="x" * 32, pusher_app_secret="a" * 16)


def test_the_test_suites_own_secrets_pass() -> None:
    make_settings()
