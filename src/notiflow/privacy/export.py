"""Building a user's data export: a zip of JSON files, written in a thread.

Rows are read a page at a time and each page is encoded and written to the zip in a worker
thread, so neither the event loop blocks on disk or compression nor a user with a million
notifications is held in memory. The zip is written under a temporary name and renamed when
complete: a run that crashed halfway leaves no file anyone can download, and the next run simply
writes it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from sqlalchemy import Select, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.ids import utcnow
from notiflow.models import (
    AuditLog,
    DataDeletionRequest,
    DataExportRequest,
    InboxItem,
    Membership,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    PersonalAccessToken,
    Post,
    PostTarget,
    PushSubscription,
    SocialAccount,
    Tenant,
    User,
)

FORMAT_VERSION = 1
PAGE_SIZE = 500
_READ_CHUNK = 1 << 20

# Never exported: secrets and keys. Columns not named here are exported, except where a
# section lists the columns it exports (tables that hold secrets next to data).
USER_SECRET_COLUMNS = frozenset({"password_hash"})
PUSH_SUBSCRIPTION_COLUMNS = ("id", "endpoint", "user_agent", "created_at", "last_used_at")
SOCIAL_ACCOUNT_COLUMNS = (
    "id",
    "tenant_id",
    "workspace_id",
    "provider",
    "external_account_id",
    "handle",
    "instance_url",
    "status",
    "status_reason",
    "created_at",
    "disconnected_at",
)
ACCESS_TOKEN_COLUMNS = ("id", "tenant_id", "name", "created_at", "last_used_at", "expires_at")
TARGET_COLUMNS = (
    "id",
    "social_account_id",
    "status",
    "external_id",
    "external_url",
    "published_at",
    "attempts",
    "last_error",
)

README = """\
Your notiflow data
==================

This archive holds the personal data notiflow keeps about you, as of {generated_at}
(export {request_id}, user {user_id}). Every file is UTF-8 JSON; times are ISO-8601 in UTC.
Lists are JSON arrays of objects, one object per database row.

{files}

Not included, on purpose: your password hash, the secret of your access tokens, the encryption
keys of your browsers' push subscriptions and the access tokens of social accounts. They are
secrets, not information about you, and copying them into a file would only put them at risk.

Data of your workspaces that you did not author (other people's posts, the inbox of accounts you
were not assigned) belongs to those workspaces and is not part of your personal export.
"""

FILE_DESCRIPTIONS = {
    "profile.json": "Your account: email, name, language, time zone, phone, global switches.",
    "memberships.json": "The organizations (tenants) you belong to, their names and your role.",
    "notifications.json": "Every notification sent to you, in every organization.",
    "notification_deliveries.json": (
        "How each notification reached you (or why not): channel, status, reason, attempts."
    ),
    "preferences.json": (
        "Your global email/push switches and your per-type notification settings."
    ),
    "push_subscriptions.json": "The browsers/devices registered for Web Push (endpoints only).",
    "access_tokens.json": "Your API access tokens: names and when they were used (no secrets).",
    "posts.json": "Posts you authored, with where each was published (targets).",
    "inbox_items.json": "Inbox items (comments, mentions) assigned to you.",
    "audit_log.json": "Changes you made, as the audit log recorded them (with the IP address).",
    "social_accounts.json": "Social accounts you connected (no tokens).",
    "privacy_requests.json": "Your data export and deletion requests, this one included.",
}


# ---------------------------------------------------------------------------------- values


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def row_dict(
    row: Any, *, only: Sequence[str] | None = None, exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """A model row as a JSON-ready dict: ``only`` these columns, or all but ``exclude``."""
    if only is not None:
        keys: Sequence[str] = only
    else:
        skip = set(exclude)
        keys = [attr.key for attr in inspect(type(row)).column_attrs if attr.key not in skip]
    return {key: jsonable(getattr(row, key)) for key in keys}


# ---------------------------------------------------------------------------------- the zip


def _encode_rows(rows: Sequence[dict[str, Any]], first: bool) -> bytes:
    parts = [json.dumps(row, ensure_ascii=False, indent=None) for row in rows]
    separator = "\n  " if first else ",\n  "
    return (separator + ",\n  ".join(parts)).encode("utf-8")


def _write_rows(handle: IO[bytes], rows: Sequence[dict[str, Any]], first: bool) -> None:
    handle.write(_encode_rows(rows, first))


class ExportArchive:
    """A zip being written, from async code: every disk and compression step runs in a thread.

    ::

        async with ExportArchive(path) as archive:
            await archive.write_document("profile.json", {...})
            count = await archive.write_rows("notifications.json", pages())
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None

    async def __aenter__(self) -> ExportArchive:
        def open_zip() -> zipfile.ZipFile:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # "w" truncates what a crashed run left behind.
            return zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED)

        self._zip = await asyncio.to_thread(open_zip)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._zip is not None:
            await asyncio.to_thread(self._zip.close)
            self._zip = None

    @property
    def zip(self) -> zipfile.ZipFile:
        if self._zip is None:
            raise RuntimeError("the archive is not open")
        return self._zip

    async def write_text(self, name: str, text: str) -> None:
        await asyncio.to_thread(self.zip.writestr, name, text.encode("utf-8"))

    async def write_document(self, name: str, value: Any) -> None:
        def write() -> None:
            self.zip.writestr(name, json.dumps(value, ensure_ascii=False, indent=2) + "\n")

        await asyncio.to_thread(write)

    async def write_rows(self, name: str, pages: AsyncIterator[list[dict[str, Any]]]) -> int:
        """A JSON array written page by page; returns how many rows it holds."""
        # force_zip64: the size is unknown until the end and may pass 2 GiB.
        handle = await asyncio.to_thread(self.zip.open, name, "w", force_zip64=True)
        count = 0
        try:
            await asyncio.to_thread(handle.write, b"[")
            async for rows in pages:
                if rows:
                    await asyncio.to_thread(_write_rows, handle, rows, count == 0)
                    count += len(rows)
            await asyncio.to_thread(handle.write, b"\n]\n" if count else b"]\n")
        finally:
            await asyncio.to_thread(handle.close)
        return count


def finish_file(partial: Path, final: Path) -> tuple[int, str]:
    """Make the written zip durable under its final name; its size and SHA-256 (blocking)."""
    digest = hashlib.sha256()
    with partial.open("rb") as stream:
        while chunk := stream.read(_READ_CHUNK):
            digest.update(chunk)
        os.fsync(stream.fileno())
    os.replace(partial, final)
    return final.stat().st_size, digest.hexdigest()


# ---------------------------------------------------------------------------------- reading


async def paged(
    session: AsyncSession,
    query: Select[Any],
    id_column: Any,
    convert: Callable[[Any], dict[str, Any]],
    *,
    page_size: int = PAGE_SIZE,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Rows of ``query`` (one entity) in pages, keyset on ``id_column`` (ids are time-ordered)."""
    last: uuid.UUID | None = None
    while True:
        page_query = query.order_by(id_column).limit(page_size)
        if last is not None:
            page_query = page_query.where(id_column > last)
        rows = list((await session.scalars(page_query)).all())
        if not rows:
            return
        last = rows[-1].id
        yield [convert(row) for row in rows]
        session.expunge_all()  # keep the identity map to one page
        if len(rows) < page_size:
            return


@dataclass
class ExportContents:
    """What went into the archive: rows per file, for the README and the log."""

    counts: dict[str, int] = field(default_factory=dict)


async def write_export(
    session: AsyncSession, archive: ExportArchive, user: User, request: DataExportRequest
) -> ExportContents:
    """Write every section of ``user``'s data into ``archive``."""
    user_id = user.id
    contents = ExportContents()
    counts = contents.counts

    profile = row_dict(user, exclude=USER_SECRET_COLUMNS)
    await archive.write_document("profile.json", profile)
    counts["profile.json"] = 1

    memberships = [
        {
            "tenant_id": jsonable(membership.tenant_id),
            "tenant_name": tenant_name,
            "role": membership.role,
            "joined_at": jsonable(membership.created_at),
        }
        for membership, tenant_name in (
            await session.execute(
                select(Membership, Tenant.name)
                .join(Tenant, Tenant.id == Membership.tenant_id)
                .where(Membership.user_id == user_id)
                .order_by(Membership.created_at)
            )
        ).all()
    ]
    await archive.write_document("memberships.json", memberships)
    counts["memberships.json"] = len(memberships)

    counts["notifications.json"] = await archive.write_rows(
        "notifications.json",
        paged(
            session,
            select(Notification).where(Notification.user_id == user_id),
            Notification.id,
            row_dict,
        ),
    )
    counts["notification_deliveries.json"] = await archive.write_rows(
        "notification_deliveries.json",
        paged(
            session,
            select(NotificationDelivery).where(NotificationDelivery.user_id == user_id),
            NotificationDelivery.id,
            row_dict,
        ),
    )

    per_type = [
        row_dict(preference, exclude=("user_id",))
        for preference in (
            await session.scalars(
                select(NotificationPreference)
                .where(NotificationPreference.user_id == user_id)
                .order_by(NotificationPreference.notification_type)
            )
        ).all()
    ]
    await archive.write_document(
        "preferences.json",
        {
            "global": {
                "email_notifications_enabled": profile["email_notifications_enabled"],
                "push_notifications_enabled": profile["push_notifications_enabled"],
            },
            "per_type": per_type,
        },
    )
    counts["preferences.json"] = len(per_type)

    counts["push_subscriptions.json"] = await archive.write_rows(
        "push_subscriptions.json",
        paged(
            session,
            select(PushSubscription).where(PushSubscription.user_id == user_id),
            PushSubscription.id,
            lambda row: row_dict(row, only=PUSH_SUBSCRIPTION_COLUMNS),
        ),
    )
    counts["access_tokens.json"] = await archive.write_rows(
        "access_tokens.json",
        paged(
            session,
            select(PersonalAccessToken).where(PersonalAccessToken.user_id == user_id),
            PersonalAccessToken.id,
            lambda row: row_dict(row, only=ACCESS_TOKEN_COLUMNS),
        ),
    )
    counts["posts.json"] = await archive.write_rows(
        "posts.json", _posts_with_targets(session, user_id)
    )
    counts["inbox_items.json"] = await archive.write_rows(
        "inbox_items.json",
        paged(
            session,
            select(InboxItem).where(InboxItem.assigned_to == user_id),
            InboxItem.id,
            row_dict,
        ),
    )
    counts["audit_log.json"] = await archive.write_rows(
        "audit_log.json",
        paged(
            session,
            select(AuditLog).where(AuditLog.actor_id == user_id),
            AuditLog.id,
            row_dict,
        ),
    )
    counts["social_accounts.json"] = await archive.write_rows(
        "social_accounts.json",
        paged(
            session,
            select(SocialAccount).where(SocialAccount.connected_by == user_id),
            SocialAccount.id,
            lambda row: row_dict(row, only=SOCIAL_ACCOUNT_COLUMNS),
        ),
    )

    exports = [
        row_dict(row, exclude=("user_id", "file_path"))
        for row in (
            await session.scalars(
                select(DataExportRequest)
                .where(DataExportRequest.user_id == user_id)
                .order_by(DataExportRequest.created_at)
            )
        ).all()
    ]
    deletions = [
        row_dict(row, exclude=("user_id",))
        for row in (
            await session.scalars(
                select(DataDeletionRequest)
                .where(DataDeletionRequest.user_id == user_id)
                .order_by(DataDeletionRequest.created_at)
            )
        ).all()
    ]
    await archive.write_document(
        "privacy_requests.json", {"exports": exports, "deletions": deletions}
    )
    counts["privacy_requests.json"] = len(exports) + len(deletions)

    generated_at = jsonable(utcnow())
    await archive.write_document(
        "manifest.json",
        {
            "format_version": FORMAT_VERSION,
            "generated_at": generated_at,
            "request_id": str(request.id),
            "user_id": str(user_id),
            "files": counts,
        },
    )
    files = "\n".join(
        f"- {name} ({counts.get(name, 0)} {'row' if counts.get(name, 0) == 1 else 'rows'}): "
        f"{description}"
        for name, description in FILE_DESCRIPTIONS.items()
    )
    files += "\n- manifest.json: the format version, when this was made and the counts above."
    await archive.write_text(
        "README.txt",
        README.format(
            generated_at=generated_at, request_id=request.id, user_id=user_id, files=files
        ),
    )
    return contents


async def _posts_with_targets(
    session: AsyncSession, user_id: uuid.UUID
) -> AsyncIterator[list[dict[str, Any]]]:
    """The user's posts a page at a time, each with its targets (account handle included)."""
    async for posts in paged(
        session, select(Post).where(Post.author_id == user_id), Post.id, row_dict
    ):
        post_ids = [uuid.UUID(post["id"]) for post in posts]
        targets: dict[str, list[dict[str, Any]]] = {}
        rows = await session.execute(
            select(PostTarget, SocialAccount.provider, SocialAccount.handle)
            .join(SocialAccount, SocialAccount.id == PostTarget.social_account_id)
            .where(PostTarget.post_id.in_(post_ids))
            .order_by(PostTarget.post_id, PostTarget.id)
        )
        for target, provider, handle in rows.all():
            entry = row_dict(target, only=TARGET_COLUMNS)
            entry.update(provider=provider, handle=handle)
            targets.setdefault(str(target.post_id), []).append(entry)
        for post in posts:
            post["targets"] = targets.get(post["id"], [])
        yield posts
