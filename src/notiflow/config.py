"""Settings read from the environment (prefix ``NOTIFLOW_``) and an optional ``.env`` file."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET_KEY = "development-only-secret-key-change-me"  # noqa: S105 - refused outside development


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Every knob of notiflow. Instantiate through :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="NOTIFLOW_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite+aiosqlite:///./var/notiflow.db"
    database_echo: bool = False
    redis_url: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    ws_port: int = Field(default=6001, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEVELOPMENT_SECRET_KEY
    log_level: str = "INFO"
    log_json: bool = True

    # Progressive rollout of push (DESIGN §5): "all", "admins" or a percentage 0-100.
    push_rollout: str = "all"

    unread_count_cache_ttl_seconds: int = Field(default=300, ge=1)
    idempotency_ttl_hours: int = Field(default=24, ge=1)
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Self:
        weak_secret = self.secret_key == DEVELOPMENT_SECRET_KEY or len(self.secret_key) < 32
        if self.env is Environment.PRODUCTION and weak_secret:
            raise ValueError(
                "NOTIFLOW_SECRET_KEY must be set to a random value of at least 32 characters "
                "in production (the development placeholder is refused)"
            )
        parse_push_rollout(self.push_rollout)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def parse_push_rollout(value: str) -> str | int:
    """Return ``"all"``, ``"admins"`` or a percentage; raise ``ValueError`` on anything else."""
    normalized = value.strip().lower().removesuffix("%")
    if normalized in ("all", "admins"):
        return normalized
    try:
        percent = int(normalized)
    except ValueError:
        raise ValueError(
            f"push rollout must be 'all', 'admins' or a percentage 0-100, got {value!r}"
        ) from None
    if not 0 <= percent <= 100:
        raise ValueError(f"push rollout percentage must be within 0-100, got {percent}")
    return percent


@lru_cache
def get_settings() -> Settings:
    return Settings()
