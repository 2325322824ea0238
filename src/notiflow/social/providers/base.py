"""The contract every social network adapter meets, and how its failures are classified.

An adapter is stateless: each call gets the account's :class:`Credentials` (tokens decrypted by
the caller) and returns plain data. Failures are typed so jobs know what to do:

- :class:`RetryableError`: nothing happened (429, 5xx answered, connection refused); try again
  later (``retry_after`` when the network said when).
- :class:`NeedsReauthError`: the token was refused (401, revoked); mark the account
  ``needs_reauth`` and tell its owners; retrying is pointless until someone reconnects.
- :class:`PermanentError`: the network refused this request for good (4xx: validation, too
  long, forbidden); fail at once with its reason.
- :class:`OutcomeUnknownError`: the request may have been applied (timeout after sending, a
  dropped response). A publish must not be re-sent blindly: ``find_published`` checks first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class ErrorKind(StrEnum):
    RETRYABLE = "retryable"
    NEEDS_REAUTH = "needs_reauth"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


class ProviderError(Exception):
    kind: ErrorKind = ErrorKind.PERMANENT

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class RetryableError(ProviderError):
    kind = ErrorKind.RETRYABLE


class NeedsReauthError(ProviderError):
    kind = ErrorKind.NEEDS_REAUTH


class PermanentError(ProviderError):
    kind = ErrorKind.PERMANENT


class OutcomeUnknownError(ProviderError):
    kind = ErrorKind.UNKNOWN


@dataclass(frozen=True, slots=True)
class Credentials:
    """What an adapter needs to act as one account (secrets already decrypted)."""

    # Kept out of repr() so a logged or traced Credentials never shows a secret.
    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None
    external_account_id: str | None = None
    instance_url: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountProfile:
    """Who the credentials belong to (checked when an account is connected)."""

    external_account_id: str
    handle: str


@dataclass(frozen=True, slots=True)
class PublishRequest:
    content: str
    # Saved before the first call and the same on every retry of this target (and version).
    idempotency_key: str
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class PublishedPost:
    external_id: str
    url: str | None
    published_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InboxEntry:
    external_id: str
    kind: str  # "comment" (a reply to one of our posts) or "mention"
    author_handle: str
    text: str
    occurred_at: datetime
    author_name: str | None = None
    url: str | None = None
    # The network's id of our post it replies to, when it is one.
    in_reply_to_external_id: str | None = None


@dataclass(frozen=True, slots=True)
class InboxPage:
    entries: list[InboxEntry]
    # Where the next fetch starts; the caller stores it after saving the entries.
    cursor: str | None


@dataclass(frozen=True, slots=True)
class PostMetrics:
    likes: int = 0
    reposts: int = 0
    replies: int = 0
    impressions: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None


class Provider(Protocol):
    """One social network. Every method may raise a :class:`ProviderError`."""

    name: str

    async def verify(self, credentials: Credentials) -> AccountProfile:
        """Check the credentials and say whose they are."""
        ...

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        """Publish; sending the same ``idempotency_key`` again must not publish twice where the
        network supports it."""
        ...

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        """After an unknown outcome: the post if the network has it, None if it surely does not.
        Raise :class:`OutcomeUnknownError` when the network cannot tell."""
        ...

    async def fetch_inbox(self, credentials: Credentials, cursor: str | None) -> InboxPage:
        """New comments and mentions since ``cursor`` (None: the recent ones)."""
        ...

    async def fetch_metrics(
        self, credentials: Credentials, external_ids: list[str]
    ) -> dict[str, PostMetrics]:
        """Counts per published post; posts the network no longer has are left out."""
        ...

    async def refresh_token(self, credentials: Credentials) -> TokenGrant | None:
        """A fresh token, or None when this network's tokens do not expire."""
        ...

    async def close(self) -> None: ...
