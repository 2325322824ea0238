"""Data export and deletion requests: asking, looking, cancelling.

A user asks about themselves only. One export and one deletion may be under way per user at a
time; asking again returns the one under way. The work itself is done by the jobs
(:mod:`notiflow.privacy.export`, :mod:`notiflow.privacy.deletion`), woken after commit and found
again by ``privacy.sweep`` when a wake-up is lost. Functions here flush, never commit.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from notiflow.audit import service as audit
from notiflow.auth.actor import Actor
from notiflow.config import Settings
from notiflow.kit.after_commit import after_commit
from notiflow.kit.errors import Conflict, NotFound
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import JobPayload, JobQueue
from notiflow.models import DataDeletionRequest, DataExportRequest, Membership, Tenant, User
from notiflow.models.platform import RequestStatus
from notiflow.models.tenancy import Role
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationType
from notiflow.privacy.tokens import make_download_token

EXPORT_JOB = "privacy.export"
DELETE_JOB = "privacy.delete"


class RequestPayload(JobPayload):
    """The payload of :data:`EXPORT_JOB` and :data:`DELETE_JOB`: the request to carry out, and
    the tenant it was made in (none for a request made outside any tenant)."""

    request_id: uuid.UUID
    tenant_id: uuid.UUID | None = None


SWEEP_JOB = "privacy.sweep"

ACTIVE = (RequestStatus.PENDING.value, RequestStatus.PROCESSING.value)
# Where the UI lets a person see and cancel their privacy requests (the notifications' link).
PRIVACY_SETTINGS_PATH = "/settings/privacy"
# The longest a column of ``notifications.action_url`` holds.
ACTION_URL_MAX = 255


# ---------------------------------------------------------------------------------- files


def storage_root(settings: Settings) -> Path:
    return Path(settings.storage_dir)


def export_relative_path(user_id: uuid.UUID, request_id: uuid.UUID) -> str:
    """Where an export's zip lives, relative to ``NOTIFLOW_STORAGE_DIR``."""
    return f"exports/{user_id}/{request_id}.zip"


def export_directory(settings: Settings, user_id: uuid.UUID) -> Path:
    return storage_root(settings) / "exports" / str(user_id)


def export_file(settings: Settings, request: DataExportRequest) -> Path | None:
    if not request.file_path:
        return None
    return storage_root(settings) / request.file_path


def download_path(request_id: uuid.UUID) -> str:
    return f"/api/v1/me/data-export/{request_id}/download"


def download_url(
    settings: Settings, request: DataExportRequest, *, now: datetime | None = None
) -> str | None:
    """The signed link to the zip, valid until the export expires; None when there is none."""
    if not is_downloadable(request, now=now):
        return None
    assert request.expires_at is not None  # noqa: S101 - is_downloadable checked it
    token = make_download_token(settings, request.id, request.expires_at)
    return f"{settings.public_url.rstrip('/')}{download_path(request.id)}?token={token}"


def is_downloadable(request: DataExportRequest, *, now: datetime | None = None) -> bool:
    return (
        request.status == RequestStatus.COMPLETED.value
        and request.file_path is not None
        and request.expires_at is not None
        and request.expires_at > (now or utcnow())
    )


# ---------------------------------------------------------------------------------- export


async def request_export(
    session: AsyncSession,
    queue: JobQueue | None,
    user: User,
    tenant_id: uuid.UUID,
    actor: Actor,
) -> tuple[DataExportRequest, bool]:
    """The user's export under way, or a new one (True) whose job is enqueued after commit."""
    await _lock_user(session, user.id)
    existing = await session.scalar(
        select(DataExportRequest)
        .where(DataExportRequest.user_id == user.id, DataExportRequest.status.in_(ACTIVE))
        .order_by(DataExportRequest.created_at.desc())
        .limit(1)
    )
    if existing is not None:
        return existing, False
    request = DataExportRequest(user_id=user.id, tenant_id=tenant_id)
    session.add(request)
    await session.flush()
    await audit.record(
        session,
        action="data_export.requested",
        subject_type="data_export_request",
        subject_id=request.id,
        before=None,
        after={"status": request.status},
        actor_id=actor.user_id,
        tenant_id=tenant_id,
        ip_address=actor.ip_address,
    )
    _enqueue_after_commit(session, queue, EXPORT_JOB, request.id, tenant_id)
    return request, True


async def get_export(
    session: AsyncSession, user_id: uuid.UUID, request_id: uuid.UUID
) -> DataExportRequest:
    """One of the user's exports; anyone else's is 404, as if it did not exist."""
    request = await session.get(DataExportRequest, request_id)
    if request is None or request.user_id != user_id:
        raise NotFound("data export not found")
    return request


async def list_exports(
    session: AsyncSession, user_id: uuid.UUID, limit: int = 20
) -> list[DataExportRequest]:
    return list(
        (
            await session.scalars(
                select(DataExportRequest)
                .where(DataExportRequest.user_id == user_id)
                .order_by(DataExportRequest.created_at.desc(), DataExportRequest.id.desc())
                .limit(limit)
            )
        ).all()
    )


# ---------------------------------------------------------------------------------- deletion


async def request_deletion(
    session: AsyncSession,
    queue: JobQueue | None,
    notifications: NotificationService,
    settings: Settings,
    user: User,
    tenant_id: uuid.UUID,
    actor: Actor,
) -> tuple[DataDeletionRequest, bool]:
    """The user's deletion under way, or a new one (True) scheduled after the grace period.

    The user is told (``data_deletion_scheduled``: when, and how to cancel). With a grace period
    of 0 days the job is woken at once; otherwise ``privacy.sweep`` starts it when it is due.
    """
    await _lock_user(session, user.id)
    existing = await current_deletion(session, user.id, active_only=True)
    if existing is not None:
        return existing, False
    orphaned = await _tenants_only_owned_by(session, user.id)
    if orphaned:
        names = ", ".join(name for _, name in orphaned)
        raise Conflict(
            f"you are the only owner of {names}: make another member an owner first, so the "
            "organization keeps someone who can manage it",
            code="sole_owner",
            details=[{"tenant_id": str(tenant), "name": name} for tenant, name in orphaned],
        )
    now = utcnow()
    request = DataDeletionRequest(
        user_id=user.id,
        tenant_id=tenant_id,
        scheduled_for=now + timedelta(days=settings.data_deletion_grace_days),
    )
    session.add(request)
    await session.flush()
    await audit.record(
        session,
        action="data_deletion.requested",
        subject_type="data_deletion_request",
        subject_id=request.id,
        before=None,
        after={"status": request.status, "scheduled_for": iso(request.scheduled_for)},
        actor_id=actor.user_id,
        tenant_id=tenant_id,
        ip_address=actor.ip_address,
    )
    when = _human_time(request.scheduled_for)
    await notifications.send(
        user.id,
        NotificationType.DATA_DELETION_SCHEDULED,
        "Your account is scheduled for deletion",
        (
            f"As you asked, your account and personal data will be deleted on {when}. "
            "Until then nothing is deleted and you can change your mind: sign in and cancel the "
            f"deletion under Settings → Privacy ({PRIVACY_SETTINGS_PATH}), or send "
            "DELETE /api/v1/me/data-deletion. After that date it cannot be undone. "
            "Want a copy of your data first? Request an export on the same page."
        ),
        {
            "deletion_request_id": str(request.id),
            "scheduled_for": iso(request.scheduled_for),
            "cancel": "DELETE /api/v1/me/data-deletion",
        },
        PRIVACY_SETTINGS_PATH,
        tenant_id=tenant_id,
        dedupe_key=f"data_deletion_scheduled:{request.id}",
    )
    if request.scheduled_for <= now:
        _enqueue_after_commit(session, queue, DELETE_JOB, request.id, tenant_id)
    return request, True


async def current_deletion(
    session: AsyncSession, user_id: uuid.UUID, *, active_only: bool = False
) -> DataDeletionRequest | None:
    """The user's latest deletion request (only one pending or processing with ``active_only``)."""
    query = select(DataDeletionRequest).where(DataDeletionRequest.user_id == user_id)
    if active_only:
        query = query.where(DataDeletionRequest.status.in_(ACTIVE))
    return await session.scalar(
        query.order_by(DataDeletionRequest.created_at.desc(), DataDeletionRequest.id.desc()).limit(
            1
        )
    )


async def cancel_deletion(session: AsyncSession, user: User, actor: Actor) -> DataDeletionRequest:
    """Cancel the user's pending deletion (audited). Too late once it is being carried out."""
    request = await current_deletion(session, user.id, active_only=True)
    if request is None:
        raise NotFound("there is no pending data deletion to cancel", code="no_deletion_request")
    now = utcnow()
    # Conditional, so a job that claimed the request a moment ago wins and nothing is half-done.
    cancelled = await session.execute(
        update(DataDeletionRequest)
        .where(
            DataDeletionRequest.id == request.id,
            DataDeletionRequest.status == RequestStatus.PENDING.value,
        )
        .values(status=RequestStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(cancelled, "rowcount", 0) != 1:
        raise Conflict(
            "the deletion is already being carried out and can no longer be cancelled",
            code="deletion_in_progress",
        )
    await session.refresh(request)
    await audit.record(
        session,
        action="data_deletion.cancelled",
        subject_type="data_deletion_request",
        subject_id=request.id,
        before={"status": RequestStatus.PENDING.value},
        after={"status": request.status},
        actor_id=actor.user_id,
        tenant_id=actor.tenant_id,
        ip_address=actor.ip_address,
    )
    return request


# ---------------------------------------------------------------------------------- helpers


async def tenant_to_notify(
    session: AsyncSession, user_id: uuid.UUID, preferred: uuid.UUID | None
) -> uuid.UUID | None:
    """The tenant a notification to the user is filed under: the one the request was made in
    while they are still a member there, else any of theirs; None when they have none left."""
    tenants = list(
        (
            await session.scalars(
                select(Membership.tenant_id)
                .where(Membership.user_id == user_id)
                .order_by(Membership.created_at)
            )
        ).all()
    )
    if preferred is not None and preferred in tenants:
        return preferred
    return tenants[0] if tenants else None


async def _tenants_only_owned_by(
    session: AsyncSession, user_id: uuid.UUID
) -> list[tuple[uuid.UUID, str]]:
    """Tenants where the user is the only owner and other people remain: deleting the user
    would leave them with nobody who can manage them."""
    other = aliased(Membership)
    others = select(other.id).where(other.tenant_id == Tenant.id, other.user_id != user_id)
    other_owners = others.where(other.role == Role.OWNER.value).exists()
    other_members = others.exists()
    rows = await session.execute(
        select(Tenant.id, Tenant.name)
        .join(Membership, Membership.tenant_id == Tenant.id)
        .where(
            Membership.user_id == user_id,
            Membership.role == Role.OWNER.value,
            ~other_owners,
            other_members,
        )
        .order_by(Tenant.name)
    )
    return [(row.id, row.name) for row in rows]


async def _lock_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Serialize a user's requests, so two clicks make one request: a row lock on PostgreSQL.
    SQLite has no row locks (it ignores FOR UPDATE) but one write lock per database, taken by
    the transaction's first write and held to its end: a write that changes nothing takes it,
    and a second request waits for the first to commit before it looks for one under way."""
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(updated_at=User.updated_at)
            .execution_options(synchronize_session=False)
        )
        return
    await session.execute(select(User.id).where(User.id == user_id).with_for_update())


def _enqueue_after_commit(
    session: AsyncSession,
    queue: JobQueue | None,
    job: str,
    request_id: uuid.UUID,
    tenant_id: uuid.UUID | None,
) -> None:
    if queue is None:
        return
    payload = RequestPayload(request_id=request_id, tenant_id=tenant_id)

    async def wake() -> None:
        await queue.enqueue(job, payload)

    after_commit(session, wake)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a ``Z``, as every timestamp of the API."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _human_time(value: datetime) -> str:
    return value.strftime("%d %B %Y, %H:%M UTC")
