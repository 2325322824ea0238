"""Request and response models of the social accounts API (tokens go in, never come out)."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, field_validator

from notiflow.kit.pagination import PageMeta
from notiflow.models import SocialAccount
from notiflow.social.service import NEEDS_INSTANCE_URL

TOKEN_PATTERN = r"^[!-~]+$"  # noqa: S105 - a pattern, not a secret
_TOKEN = re.compile(TOKEN_PATTERN)

# The adapters notiflow ships (build_providers), for the schema: any other name is a 422.
PROVIDER_NAMES = ("mastodon", "sandbox")


class ConnectAccountRequest(BaseModel):
    """Connect (or reconnect) an account: the network checks the token before it is stored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # A Mastodon account needs its instance (a URL, not null).
            "allOf": [
                {
                    "if": {"required": ["provider"], "properties": {"provider": {"const": name}}},
                    "then": {
                        "required": ["instance_url"],
                        "properties": {"instance_url": {"type": "string"}},
                    },
                }
                for name in sorted(NEEDS_INSTANCE_URL)
            ]
        },
    )

    provider: str = Field(
        min_length=1,
        max_length=32,
        examples=["mastodon"],
        json_schema_extra={"enum": list(PROVIDER_NAMES)},
    )
    # Tokens travel in an Authorization header: printable ASCII (an OAuth token's alphabet).
    access_token: str = Field(
        min_length=1, max_length=4096, repr=False, json_schema_extra={"pattern": TOKEN_PATTERN}
    )
    refresh_token: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        repr=False,
        json_schema_extra={"pattern": TOKEN_PATTERN},
    )
    token_expires_at: AwareDatetime | None = None
    # The Mastodon instance (e.g. https://mastodon.social); required for mastodon.
    instance_url: HttpUrl | None = None
    # Settings that are not secrets (the sandbox's latency/failure rates, Mastodon visibility).
    options: dict[str, Any] | None = Field(default=None, max_length=50)

    @field_validator("access_token", "refresh_token")
    @classmethod
    def _header_safe(cls, value: str | None) -> str | None:
        if value is not None and _TOKEN.fullmatch(value) is None:
            raise ValueError("must be printable ASCII without spaces, as tokens are")
        return value


class SocialAccountData(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    provider: str
    external_account_id: str
    handle: str
    instance_url: str | None
    status: str
    status_reason: str | None
    token_expires_at: datetime | None
    last_inbox_sync_at: datetime | None
    last_refresh_at: datetime | None
    options: dict[str, Any]
    connected_by: uuid.UUID | None
    disconnected_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_model(cls, account: SocialAccount) -> SocialAccountData:
        return cls(
            id=account.id,
            workspace_id=account.workspace_id,
            provider=account.provider,
            external_account_id=account.external_account_id,
            handle=account.handle,
            instance_url=account.instance_url,
            status=account.status,
            status_reason=account.status_reason,
            token_expires_at=account.token_expires_at,
            last_inbox_sync_at=account.last_inbox_sync_at,
            last_refresh_at=account.last_refresh_at,
            options=dict(account.options or {}),
            connected_by=account.connected_by,
            disconnected_at=account.disconnected_at,
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class SocialAccountPage(BaseModel):
    data: list[SocialAccountData]
    meta: PageMeta
