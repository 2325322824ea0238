"""Privacy jobs: ``privacy.export``, ``privacy.delete`` and ``privacy.sweep``.

Each request row is the source of truth: a job claims it atomically (``pending`` or
``failed`` -> ``processing``; a ``processing`` row whose run died is taken over after
:data:`LEASE`), so duplicate wake-ups do nothing and two runs never work on one request. A run
that raises marks its request ``failed`` with the error and the queue retries it with backoff;
after the last try the failure hook leaves it ``failed`` and admins are alerted.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.after_commit import after_commit
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import Job, NoPayload
from notiflow.kit.uow import unit_of_work
from notiflow.models import DataDeletionRequest, DataExportRequest, Membership, User
from notiflow.models.platform import RequestStatus
from notiflow.notifications.ports import NotifyingContext
from notiflow.notifications.types import NotificationType
from notiflow.privacy import service
from notiflow.privacy.deletion import NOTICE_KEY, erase_user, record_deletion, send_final_notice
from notiflow.privacy.export import ExportArchive, finish_file, write_export
from notiflow.privacy.service import RequestPayload

log = structlog.get_logger(__name__)

# One hour per run; a run holds its request at most a little longer.
JOB_TIMEOUT_SECONDS = 3600.0
LEASE = timedelta(seconds=JOB_TIMEOUT_SECONDS + 300)
# A pending export older than this was probably never woken (the queue lost the message).
LOST_WAKE_UP_AFTER = timedelta(minutes=1)
SWEEP_LIMIT = 500

_CLAIMABLE = (RequestStatus.PENDING.value, RequestStatus.FAILED.value)


def _claimable(model: type[DataExportRequest] | type[DataDeletionRequest], now: datetime) -> Any:
    return or_(
        model.status.in_(_CLAIMABLE),
        and_(
            model.status == RequestStatus.PROCESSING.value,
            model.updated_at < now - LEASE,
        ),
    )


async def _claim(
    context: NotifyingContext,
    model: type[DataExportRequest] | type[DataDeletionRequest],
    request_id: uuid.UUID,
    *conditions: Any,
) -> bool:
    now = utcnow()
    async with unit_of_work(context.sessionmaker) as session:
        claimed = await session.execute(
            update(model)
            .where(model.id == request_id, _claimable(model, now), *conditions)
            .values(status=RequestStatus.PROCESSING.value, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return getattr(claimed, "rowcount", 0) == 1


async def _mark_failed(
    context: NotifyingContext,
    model: type[DataExportRequest] | type[DataDeletionRequest],
    request_id: uuid.UUID,
    error: BaseException,
) -> None:
    async with unit_of_work(context.sessionmaker) as session:
        await session.execute(
            update(model)
            .where(model.id == request_id, model.status == RequestStatus.PROCESSING.value)
            .values(
                status=RequestStatus.FAILED.value,
                error=f"{type(error).__name__}: {error}"[:2000],
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )


# ---------------------------------------------------------------------------------- export


async def export_data(context: NotifyingContext, payload: RequestPayload) -> None:
    """Write the user's zip, record its size/hash/expiry and tell them it is ready."""
    request_id = payload.request_id
    if not await _claim(context, DataExportRequest, request_id):
        log.info("privacy_export_skipped", request_id=str(request_id), reason="not_claimable")
        return
    try:
        async with asyncio.timeout(JOB_TIMEOUT_SECONDS):
            await _build_export(context, request_id)
    except Exception as error:
        await _mark_failed(context, DataExportRequest, request_id, error)
        raise


async def _build_export(context: NotifyingContext, request_id: uuid.UUID) -> None:
    settings = context.settings
    async with context.sessionmaker() as session:
        request = await session.get(DataExportRequest, request_id)
        user = await session.get(User, request.user_id) if request is not None else None
        if request is None or user is None:  # the user was deleted meanwhile
            return
        user_id = user.id
        final = service.storage_root(settings) / service.export_relative_path(user_id, request_id)
        partial = final.with_name(f"{final.name}.part")
        async with ExportArchive(partial) as archive:
            contents = await write_export(session, archive, user, request)
    size, sha256 = await asyncio.to_thread(finish_file, partial, final)

    async with unit_of_work(context.sessionmaker) as session:
        request = await session.get(DataExportRequest, request_id, with_for_update=True)
        if request is None:  # deleted with its user while the file was written
            await asyncio.to_thread(_remove_files, [final])
            return
        now = utcnow()
        request.status = RequestStatus.COMPLETED.value
        request.file_path = service.export_relative_path(user_id, request_id)
        request.size_bytes = size
        request.sha256 = sha256
        request.completed_at = now
        request.expires_at = now + timedelta(hours=settings.data_export_ttl_hours)
        request.error = None
        await session.flush()
        await _notify_export_ready(context, session, request)
    log.info(
        "privacy_export_completed",
        request_id=str(request_id),
        tenant_id=str(request.tenant_id),
        size_bytes=size,
        files=contents.counts,
    )


async def _notify_export_ready(
    context: NotifyingContext, session: AsyncSession, request: DataExportRequest
) -> None:
    tenant_id = await service.tenant_to_notify(session, request.user_id, request.tenant_id)
    if tenant_id is None:
        return
    url = service.download_url(context.settings, request)
    assert request.expires_at is not None  # noqa: S101 - set just before
    until = request.expires_at.strftime("%d %B %Y, %H:%M UTC")
    await context.notification_service(session).send(
        request.user_id,
        NotificationType.DATA_EXPORT_READY,
        "Your data export is ready",
        (
            f"The copy of your data you asked for is ready: a zip file of "
            f"{_human_size(request.size_bytes or 0)}. Download it before {until}; after that the "
            "link stops working and the file is deleted. Anyone with the link can download the "
            "file, so do not forward this message."
        ),
        {
            "export_request_id": str(request.id),
            "download_url": url,
            "expires_at": service.iso(request.expires_at),
            "size_bytes": request.size_bytes,
            "sha256": request.sha256,
        },
        url if url and len(url) <= service.ACTION_URL_MAX else service.PRIVACY_SETTINGS_PATH,
        tenant_id=tenant_id,
        dedupe_key=f"data_export_ready:{request.id}",
    )


async def export_failed(
    context: NotifyingContext, payload: RequestPayload, error: BaseException
) -> None:
    """The last try failed: the request stays ``failed`` with the error; no half file stays."""
    request_id = payload.request_id
    async with unit_of_work(context.sessionmaker) as session:
        request = await session.get(DataExportRequest, request_id)
        if request is None:
            return
        if request.status != RequestStatus.COMPLETED.value:
            request.status = RequestStatus.FAILED.value
            request.error = f"{type(error).__name__}: {error}"[:2000]
        user_id = request.user_id
    final = service.storage_root(context.settings) / service.export_relative_path(
        user_id, request_id
    )
    await asyncio.to_thread(_remove_files, [final.with_name(f"{final.name}.part")])


# ---------------------------------------------------------------------------------- deletion


async def delete_data(context: NotifyingContext, payload: RequestPayload) -> None:
    """Carry out a deletion whose grace period ended; nothing when it was cancelled."""
    request_id = payload.request_id
    due = DataDeletionRequest.scheduled_for <= utcnow()
    if not await _claim(context, DataDeletionRequest, request_id, due):
        log.info("privacy_delete_skipped", request_id=str(request_id), reason="not_claimable")
        return
    try:
        async with asyncio.timeout(JOB_TIMEOUT_SECONDS):
            await _erase(context, request_id)
    except Exception as error:
        await _mark_failed(context, DataDeletionRequest, request_id, error)
        raise


async def _erase(context: NotifyingContext, request_id: uuid.UUID) -> None:
    settings = context.settings
    async with context.sessionmaker() as session:
        request = await session.get(DataDeletionRequest, request_id)
        if request is None:  # pragma: no cover - claimed a moment ago; never deleted
            return
        user = await session.get(User, request.user_id)
    if user is not None and NOTICE_KEY not in (request.report or {}):
        # First the email, while there is still someone to write to (at most once: see
        # notiflow.privacy.deletion).
        await send_final_notice(settings, context.sessionmaker, user, request)

    async with unit_of_work(context.sessionmaker) as session:
        request = await session.get(DataDeletionRequest, request_id, with_for_update=True)
        if request is None:  # pragma: no cover - see above
            return
        user = await session.get(User, request.user_id)
        report: dict[str, Any] = dict(request.report or {})
        directory = service.export_directory(settings, request.user_id)
        if user is None:
            # Removed some other way before the job ran: nothing personal is left to count.
            report["counts"] = {"users": 0}
            tenant_ids: list[uuid.UUID | None] = []
        else:
            tenant_ids = list(
                (
                    await session.scalars(
                        select(Membership.tenant_id).where(Membership.user_id == user.id)
                    )
                ).all()
            )
            report["counts"] = await erase_user(session, settings, user)
        report["export_files"] = await asyncio.to_thread(_count_files, directory)
        now = utcnow()
        request.report = report
        request.status = RequestStatus.COMPLETED.value
        request.completed_at = now
        request.error = None
        await record_deletion(session, request, tenant_ids, report["counts"])

        async def remove_files() -> None:
            await asyncio.to_thread(shutil.rmtree, directory, True)

        after_commit(session, remove_files)
    log.info(
        "privacy_delete_completed",
        request_id=str(request_id),
        tenant_id=str(request.tenant_id),
        counts=report["counts"],
    )


async def deletion_failed(
    context: NotifyingContext, payload: RequestPayload, error: BaseException
) -> None:
    """The last try failed: the request stays ``failed`` (admins are alerted by the queue);
    ``notiflow jobs retry`` runs it again."""
    request_id = payload.request_id
    async with unit_of_work(context.sessionmaker) as session:
        request = await session.get(DataDeletionRequest, request_id)
        if request is not None and request.status != RequestStatus.COMPLETED.value:
            request.status = RequestStatus.FAILED.value
            request.error = f"{type(error).__name__}: {error}"[:2000]


# ---------------------------------------------------------------------------------- sweep


async def sweep(context: NotifyingContext, payload: NoPayload) -> None:
    """Wake exports whose wake-up was lost and deletions that are due (or whose run died),
    expire old exports and remove their files, and remove files of users who are gone."""
    summary = await sweep_once(context)
    if any(summary.values()):
        log.info("privacy_sweep", job="privacy.sweep", **summary)


async def sweep_once(context: NotifyingContext, *, now: datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    settings = context.settings
    async with unit_of_work(context.sessionmaker) as session:
        exports = (
            await session.execute(
                select(DataExportRequest.id, DataExportRequest.tenant_id)
                .where(
                    or_(
                        and_(
                            DataExportRequest.status == RequestStatus.PENDING.value,
                            DataExportRequest.created_at < now - LOST_WAKE_UP_AFTER,
                        ),
                        and_(
                            DataExportRequest.status == RequestStatus.PROCESSING.value,
                            DataExportRequest.updated_at < now - LEASE,
                        ),
                    )
                )
                .order_by(DataExportRequest.created_at)
                .limit(SWEEP_LIMIT)
            )
        ).all()
        deletions = (
            await session.execute(
                select(DataDeletionRequest.id, DataDeletionRequest.tenant_id)
                .where(
                    or_(
                        and_(
                            DataDeletionRequest.status == RequestStatus.PENDING.value,
                            DataDeletionRequest.scheduled_for <= now,
                        ),
                        and_(
                            DataDeletionRequest.status == RequestStatus.PROCESSING.value,
                            DataDeletionRequest.updated_at < now - LEASE,
                        ),
                    )
                )
                .order_by(DataDeletionRequest.scheduled_for)
                .limit(SWEEP_LIMIT)
            )
        ).all()
        expired = list(
            (
                await session.scalars(
                    select(DataExportRequest)
                    .where(
                        DataExportRequest.status == RequestStatus.COMPLETED.value,
                        DataExportRequest.expires_at <= now,
                    )
                    .limit(SWEEP_LIMIT)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        files = [
            path
            for path in (service.export_file(settings, request) for request in expired)
            if path is not None
        ]
        for request in expired:
            request.status = RequestStatus.EXPIRED.value
            request.file_path = None
            request.updated_at = now

        async def remove_expired_files() -> None:
            await asyncio.to_thread(_remove_files, files)

        after_commit(session, remove_expired_files)
    if context.queue is not None:
        for job, rows in ((service.EXPORT_JOB, exports), (service.DELETE_JOB, deletions)):
            for request_id, tenant_id in rows:
                await context.queue.enqueue(
                    job, RequestPayload(request_id=request_id, tenant_id=tenant_id)
                )
    orphans = await _remove_orphan_directories(context)
    return {
        "exports_woken": len(exports),
        "deletions_woken": len(deletions),
        "exports_expired": len(expired),
        "orphan_directories_removed": orphans,
    }


async def _remove_orphan_directories(context: NotifyingContext) -> int:
    """Export directories of users who no longer exist (a deletion whose file removal failed
    after commit): nothing may outlive the user."""
    root = service.storage_root(context.settings) / "exports"
    names = await asyncio.to_thread(_directory_names, root)
    ids: dict[uuid.UUID, str] = {}
    for name in names:
        try:
            ids[uuid.UUID(name)] = name
        except ValueError:
            continue
    if not ids:
        return 0
    async with context.sessionmaker() as session:
        existing = set((await session.scalars(select(User.id).where(User.id.in_(ids)))).all())
    gone = [root / name for user_id, name in ids.items() if user_id not in existing]
    for directory in gone:
        await asyncio.to_thread(shutil.rmtree, directory, True)
    return len(gone)


# ---------------------------------------------------------------------------------- files


def _remove_files(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _count_files(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(1 for path in directory.iterdir() if path.is_file())


def _directory_names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return [path.name for path in root.iterdir() if path.is_dir()]


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover - the loop always returns


JOBS: list[Job[NotifyingContext, Any]] = [
    Job(
        service.EXPORT_JOB,
        export_data,
        RequestPayload,
        max_attempts=3,
        backoff_seconds=60.0,
        on_failure=export_failed,
    ),
    # Five tries, the first retry 2.5 to 5 minutes after the first failure, each wait then
    # doubling: a mail server down for a few hours delays the deletion (the final email must go
    # first) instead of failing it.
    Job(
        service.DELETE_JOB,
        delete_data,
        RequestPayload,
        max_attempts=5,
        backoff_seconds=300.0,
        on_failure=deletion_failed,
    ),
    # Runs every minute anyway: a failed run is reported at once, not retried.
    Job("privacy.sweep", sweep, NoPayload, max_attempts=1),
]
