"""Request and response models of the posts API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from notiflow.content.service import PostView, TargetMetrics, TargetView
from notiflow.kit.pagination import PageMeta
from notiflow.kit.text import NOT_BLANK_PATTERN, require_text
from notiflow.kit.timezones import local_iso

MAX_CONTENT_CHARS = 5000
MAX_ACCOUNTS = 50
MAX_REASON_CHARS = 1000

AccountIds = Annotated[list[uuid.UUID], Field(min_length=1, max_length=MAX_ACCOUNTS)]
# The schema states the limits the validators below enforce (with messages of their own).
Content = Annotated[
    str, Field(json_schema_extra={"maxLength": MAX_CONTENT_CHARS, "pattern": NOT_BLANK_PATTERN})
]
Reason = Annotated[
    str, Field(json_schema_extra={"maxLength": MAX_REASON_CHARS, "pattern": NOT_BLANK_PATTERN})
]


def _text(value: str, what: str, max_chars: int) -> str:
    require_text(value, what)
    if len(value) > max_chars:
        raise ValueError(f"{what} must be at most {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode (no lone surrogates)") from None
    return value


def _unique(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    repeated = sorted({str(i) for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"account_ids must not repeat an account: {', '.join(repeated)}")
    return ids


def _sane_time(value: datetime | None) -> datetime | None:
    # Far outside any schedule, and out of range for UTC arithmetic at the edges.
    if value is not None and not 1970 <= value.year <= 9998:
        raise ValueError("scheduled_at is out of range")
    return value


def _utc(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


class CreatePostRequest(BaseModel):
    """``scheduled_at``: ISO 8601; with an offset (or ``Z``) it is that instant, without one it
    is wall time in the workspace's timezone. Must be in the future."""

    model_config = ConfigDict(extra="forbid")

    content: Content
    account_ids: AccountIds
    scheduled_at: datetime | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        return _text(value, "content", MAX_CONTENT_CHARS)

    @field_validator("account_ids")
    @classmethod
    def _account_ids(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        return _unique(value)

    @field_validator("scheduled_at")
    @classmethod
    def _scheduled_at(cls, value: datetime | None) -> datetime | None:
        return _sane_time(value)


class UpdatePostRequest(BaseModel):
    """Only the fields given change; ``"scheduled_at": null`` removes a draft's time."""

    # At least one field (minProperties); content and account_ids may be left out, not null.
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    content: Content | SkipJsonSchema[None] = None
    account_ids: AccountIds | SkipJsonSchema[None] = None
    scheduled_at: datetime | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: str | None) -> str | None:
        if value is None:
            raise ValueError("content cannot be null")
        return _text(value, "content", MAX_CONTENT_CHARS)

    @field_validator("account_ids")
    @classmethod
    def _account_ids(cls, value: list[uuid.UUID] | None) -> list[uuid.UUID]:
        if value is None:
            raise ValueError("account_ids cannot be null")
        return _unique(value)

    @field_validator("scheduled_at")
    @classmethod
    def _scheduled_at(cls, value: datetime | None) -> datetime | None:
        return _sane_time(value)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give at least one of content, account_ids, scheduled_at")
        return self

    @property
    def clears_schedule(self) -> bool:
        return "scheduled_at" in self.model_fields_set and self.scheduled_at is None


class RejectPostRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _text(value, "reason", MAX_REASON_CHARS).strip()


class PostTargetData(BaseModel):
    """One account the post goes to, and how that went."""

    id: uuid.UUID
    account_id: uuid.UUID
    provider: str
    handle: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_error_kind: str | None
    last_error: str | None
    external_url: str | None
    published_at: str | None

    @classmethod
    def from_view(cls, item: TargetView) -> PostTargetData:
        target, account = item.target, item.account
        return cls(
            id=target.id,
            account_id=account.id,
            provider=account.provider,
            handle=account.handle,
            status=target.status,
            attempts=target.attempts,
            next_attempt_at=_utc(target.next_attempt_at),
            last_error_kind=target.last_error_kind,
            last_error=target.last_error,
            external_url=target.external_url,
            published_at=_utc(target.published_at),
        )


class PostData(BaseModel):
    """A post with its targets. ``scheduled_at`` is UTC; ``scheduled_at_local`` is the same
    instant in the workspace's ``timezone``, with its offset."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    author_id: uuid.UUID | None
    content: str
    status: str
    version: int
    scheduled_at: str | None
    scheduled_at_local: str | None
    timezone: str
    submitted_at: str | None
    reviewed_by: uuid.UUID | None
    reviewed_at: str | None
    review_note: str | None
    published_at: str | None
    created_at: str
    updated_at: str
    targets: list[PostTargetData]

    @classmethod
    def from_view(cls, view: PostView) -> PostData:
        post = view.post
        return cls(
            id=post.id,
            workspace_id=post.workspace_id,
            author_id=post.author_id,
            content=post.content,
            status=post.status,
            version=post.version,
            scheduled_at=_utc(post.scheduled_at),
            scheduled_at_local=local_iso(post.scheduled_at, view.timezone),
            timezone=view.timezone,
            submitted_at=_utc(post.submitted_at),
            reviewed_by=post.reviewed_by,
            reviewed_at=_utc(post.reviewed_at),
            review_note=post.review_note,
            published_at=_utc(post.published_at),
            created_at=_utc(post.created_at) or "",
            updated_at=_utc(post.updated_at) or "",
            targets=[PostTargetData.from_view(item) for item in view.targets],
        )


class PostPage(BaseModel):
    data: list[PostData]
    meta: PageMeta


class MetricSnapshotData(BaseModel):
    captured_at: str
    likes: int
    reposts: int
    replies: int
    impressions: int | None


class TargetMetricsData(BaseModel):
    target_id: uuid.UUID
    account_id: uuid.UUID
    provider: str
    handle: str
    status: str
    external_url: str | None
    snapshots: list[MetricSnapshotData]

    @classmethod
    def from_metrics(cls, item: TargetMetrics) -> TargetMetricsData:
        return cls(
            target_id=item.target.id,
            account_id=item.account.id,
            provider=item.account.provider,
            handle=item.account.handle,
            status=item.target.status,
            external_url=item.target.external_url,
            snapshots=[
                MetricSnapshotData(
                    captured_at=_utc(snapshot.captured_at) or "",
                    likes=snapshot.likes,
                    reposts=snapshot.reposts,
                    replies=snapshot.replies,
                    impressions=snapshot.impressions,
                )
                for snapshot in item.snapshots
            ],
        )
