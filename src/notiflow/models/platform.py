"""The platform's own data that the background jobs work on.

Social accounts of a workspace, posts and their per-account targets (with the publish-attempt
log), inbox items, metric snapshots, GDPR export and deletion requests, per-workspace schedules
and the leases that keep a per-workspace job from running twice at once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from notiflow.kit.db import Base, IdMixin, TimestampMixin
from notiflow.kit.ids import utcnow


class AccountStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"  # the network refused the token: reconnect it
    DISABLED = "disabled"  # disconnected by a person


class PostStatus(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    SCHEDULED = "scheduled"
    PUBLISHING = "publishing"
    PUBLISHED = "published"
    PARTIALLY_PUBLISHED = "partially_published"
    FAILED = "failed"


class TargetStatus(StrEnum):
    PENDING = "pending"  # waiting for its time (or its next try)
    PUBLISHING = "publishing"  # claimed by a scanner/job; lease_until says until when
    PUBLISHED = "published"
    FAILED = "failed"
    # The network may or may not have published it and cannot tell us: a person must check.
    UNCONFIRMED = "unconfirmed"


class SocialAccount(IdMixin, TimestampMixin, Base):
    __tablename__ = "social_accounts"
    __table_args__ = (UniqueConstraint("workspace_id", "provider", "external_account_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(32))
    external_account_id: Mapped[str] = mapped_column(String(255))
    handle: Mapped[str] = mapped_column(String(255))
    # The instance (Mastodon) or service base URL; None for providers with one fixed endpoint.
    instance_url: Mapped[str | None] = mapped_column(String(500), default=None)
    # Fernet tokens (notiflow.kit.crypto): never the plain secret.
    access_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    refresh_token_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    token_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Provider options that are not secrets (e.g. the sandbox's latency and failure rates).
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default=AccountStatus.ACTIVE.value)
    status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    connected_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    disconnected_at: Mapped[datetime | None] = mapped_column(default=None)
    inbox_cursor: Mapped[str | None] = mapped_column(String(255), default=None)
    last_inbox_sync_at: Mapped[datetime | None] = mapped_column(default=None)
    last_refresh_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the owners were last told the token is about to expire (told once per expiry).
    expiry_notified_at: Mapped[datetime | None] = mapped_column(default=None)


class Post(IdMixin, TimestampMixin, Base):
    __tablename__ = "posts"
    __table_args__ = (Index(None, "workspace_id", "created_at"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    author_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    content: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(24), default=PostStatus.DRAFT.value)
    # The instant (UTC) and the zone it was given in, so the UI can show it as entered.
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)
    scheduled_timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    reviewed_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    review_note: Mapped[str | None] = mapped_column(Text, default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    # Bumped when the content changes, so a new version gets new idempotency keys.
    version: Mapped[int] = mapped_column(default=1)


class PostTarget(IdMixin, TimestampMixin, Base):
    """One post on one account: claimed, published and retried on its own."""

    __tablename__ = "post_targets"
    __table_args__ = (
        UniqueConstraint("post_id", "social_account_id"),
        # The scanner's query: due pending targets, and claimed ones whose lease ran out.
        Index(None, "status", "next_attempt_at"),
    )

    post_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"))
    social_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("social_accounts.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=TargetStatus.PENDING.value)
    # When the target is next due: the scheduled time, then each retry's time. None = not
    # scheduled (a draft or a post waiting for approval).
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)
    # Saved before the first call to the network and reused on every retry.
    idempotency_key: Mapped[str | None] = mapped_column(String(100), default=None)
    external_id: Mapped[str | None] = mapped_column(String(255), default=None)
    external_url: Mapped[str | None] = mapped_column(String(1000), default=None)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    # retryable | needs_reauth | permanent | unknown, and the network's own words.
    last_error_kind: Mapped[str | None] = mapped_column(String(20), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class PublishAttempt(IdMixin, Base):
    """The log of every call to a network for a target: what was tried and what came back."""

    __tablename__ = "publish_attempts"

    target_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("post_targets.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # published | retryable | needs_reauth | permanent | unknown
    outcome: Mapped[str | None] = mapped_column(String(20), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class InboxItem(IdMixin, Base):
    __tablename__ = "inbox_items"
    __table_args__ = (
        UniqueConstraint("social_account_id", "external_id"),
        Index(None, "workspace_id", "occurred_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    social_account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("social_accounts.id", ondelete="CASCADE")
    )
    external_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))  # comment | mention
    author_handle: Mapped[str] = mapped_column(String(255))
    author_name: Mapped[str | None] = mapped_column(String(255), default=None)
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(1000), default=None)
    # The post of ours it answers, when the network says so.
    post_target_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("post_targets.id", ondelete="SET NULL"), default=None
    )
    occurred_at: Mapped[datetime] = mapped_column()
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    assigned_at: Mapped[datetime | None] = mapped_column(default=None)
    archived_at: Mapped[datetime | None] = mapped_column(default=None)


class PostMetricSnapshot(IdMixin, Base):
    __tablename__ = "post_metric_snapshots"
    __table_args__ = (Index(None, "post_target_id", "captured_at"),)

    post_target_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("post_targets.id", ondelete="CASCADE")
    )
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    captured_at: Mapped[datetime] = mapped_column(default=utcnow)
    likes: Mapped[int] = mapped_column(default=0)
    reposts: Mapped[int] = mapped_column(default=0)
    replies: Mapped[int] = mapped_column(default=0)
    impressions: Mapped[int | None] = mapped_column(default=None)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


class RequestStatus(StrEnum):
    PENDING = "pending"  # export: queued; deletion: waiting for its grace period to end
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # an export whose file was removed after its link expired


class DataExportRequest(IdMixin, TimestampMixin, Base):
    __tablename__ = "data_export_requests"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[str] = mapped_column(String(20), default=RequestStatus.PENDING.value)
    # Relative to NOTIFLOW_STORAGE_DIR.
    file_path: Mapped[str | None] = mapped_column(String(500), default=None)
    size_bytes: Mapped[int | None] = mapped_column(default=None)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class DataDeletionRequest(IdMixin, TimestampMixin, Base):
    __tablename__ = "data_deletion_requests"

    # No foreign key: the request outlives the user it deleted (the record that it was done).
    user_id: Mapped[uuid.UUID] = mapped_column(index=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[str] = mapped_column(String(20), default=RequestStatus.PENDING.value)
    scheduled_for: Mapped[datetime] = mapped_column(index=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    # What was deleted and anonymized (counts per table), kept as the proof of deletion.
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class WorkspaceSchedule(IdMixin, Base):
    """When a per-workspace periodic job (daily/weekly) next runs for one
    workspace, computed in the workspace's own timezone."""

    __tablename__ = "workspace_schedules"
    __table_args__ = (
        UniqueConstraint("workspace_id", "job_name"),
        Index(None, "next_run_at"),
    )

    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    job_name: Mapped[str] = mapped_column(String(100))
    next_run_at: Mapped[datetime] = mapped_column()
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)


class JobLock(Base):
    """A lease on a job scope (e.g. inbox sync of one workspace): one holder at a time."""

    __tablename__ = "job_locks"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column()
