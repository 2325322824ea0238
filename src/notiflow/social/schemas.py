"""Request and response models of the social accounts API (tokens go in, never come out)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl

from notiflow.kit.pagination import PageMeta
from notiflow.models import SocialAccount


class ConnectAccountRequest(BaseModel):
    """Connect (or reconnect) an account: the network checks the token before it is stored."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=32, examples=["mastodon"])
    access_token: str = Field(min_length=1, max_length=4096, repr=False)
    refresh_token: str | None = Field(default=None, min_length=1, max_length=4096, repr=False)
    token_expires_at: AwareDatetime | None = None
    # The Mastodon instance (e.g. https://mastodon.social); required for mastodon.
    instance_url: HttpUrl | None = None
    # Settings that are not secrets (the sandbox's latency/failure rates, Mastodon visibility).
    options: dict[str, Any] | None = Field(default=None, max_length=50)


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
