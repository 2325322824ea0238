"""Inbox rules: storing fetched items once, who hears about new ones, archiving, assignment."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import Actor
from notiflow.kit.bulk import dialect_insert
from notiflow.kit.errors import InvalidInput, NotFound
from notiflow.kit.ids import new_id
from notiflow.kit.pagination import Cursor, Page, paginate
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import InboxItem, Membership, Post, PostTarget, SocialAccount
from notiflow.notifications.ports import NotifyingContext
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.types import NotificationType
from notiflow.social.providers.base import InboxEntry
from notiflow.tenancy.service import admin_user_ids, is_member


class InboxKind(StrEnum):
    COMMENT = "comment"  # a reply to one of the workspace's posts
    MENTION = "mention"


_KINDS = frozenset(kind.value for kind in InboxKind)
# Rows per INSERT statement (14 columns each: far below every backend's parameter limit).
INSERT_CHUNK = 500
# How many items a summary notification lists in its data (the UI links to the inbox for more).
SUMMARY_ITEM_IDS = 50
PREVIEW_CHARS = 200


@dataclass(frozen=True, slots=True)
class NewItem:
    """An item this sync stored for the first time (what notifications are made of)."""

    id: uuid.UUID
    workspace_id: uuid.UUID
    social_account_id: uuid.UUID
    account_handle: str
    kind: str
    author_handle: str
    text: str
    url: str | None
    post_target_id: uuid.UUID | None
    archived: bool


def _clip(value: str | None, length: int) -> str | None:
    """Fit a column on every backend: PostgreSQL refuses NUL characters and overlong values."""
    if value is None:
        return None
    return value.replace("\x00", "")[:length]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def store_entries(
    session: AsyncSession,
    account: SocialAccount,
    entries: Sequence[InboxEntry],
    *,
    now: datetime,
    archive_before: datetime,
) -> list[NewItem]:
    """Insert the entries the account does not have yet; return only those just inserted.

    ``INSERT ... ON CONFLICT (social_account_id, external_id) DO NOTHING RETURNING``: an entry
    fetched again (the same cursor twice, a retried sync, overlapping pages) is neither stored
    nor announced twice. Entries already older than the archive threshold are stored archived.
    Comments are linked to the post target of this account that they answer. Flushes only.
    """
    unique: dict[str, InboxEntry] = {}
    for entry in entries:
        external_id = entry.external_id.replace("\x00", "")
        if not external_id or len(external_id) > 255 or entry.kind not in _KINDS:
            continue
        unique.setdefault(external_id, entry)
    if not unique:
        return []
    targets = await _targets_by_external_id(
        session,
        account.id,
        {e.in_reply_to_external_id for e in unique.values() if e.in_reply_to_external_id},
    )
    rows: list[dict[str, Any]] = []
    for external_id, entry in unique.items():
        occurred_at = _aware(entry.occurred_at)
        rows.append(
            {
                "id": new_id(),
                "tenant_id": account.tenant_id,
                "workspace_id": account.workspace_id,
                "social_account_id": account.id,
                "external_id": external_id,
                "kind": entry.kind,
                "author_handle": _clip(entry.author_handle, 255) or "unknown",
                "author_name": _clip(entry.author_name, 255),
                "text": _clip(entry.text, 100_000) or "",
                "url": _clip(entry.url, 1000),
                "post_target_id": targets.get(entry.in_reply_to_external_id or ""),
                "occurred_at": occurred_at,
                "fetched_at": now,
                "archived_at": now if occurred_at < archive_before else None,
            }
        )
    inserted: set[str] = set()
    for start in range(0, len(rows), INSERT_CHUNK):
        statement = (
            dialect_insert(session, InboxItem)
            .values(rows[start : start + INSERT_CHUNK])
            .on_conflict_do_nothing(index_elements=["social_account_id", "external_id"])
            .returning(InboxItem.external_id)
        )
        inserted.update((await session.scalars(statement)).all())
    return [
        NewItem(
            id=row["id"],
            workspace_id=row["workspace_id"],
            social_account_id=account.id,
            account_handle=account.handle,
            kind=row["kind"],
            author_handle=row["author_handle"],
            text=row["text"],
            url=row["url"],
            post_target_id=row["post_target_id"],
            archived=row["archived_at"] is not None,
        )
        for row in rows
        if row["external_id"] in inserted
    ]


async def _targets_by_external_id(
    session: AsyncSession, account_id: uuid.UUID, external_ids: set[str]
) -> dict[str, uuid.UUID]:
    if not external_ids:
        return {}
    rows = await session.execute(
        select(PostTarget.external_id, PostTarget.id).where(
            PostTarget.social_account_id == account_id,
            PostTarget.external_id.in_(sorted(external_ids)),
        )
    )
    return {external_id: target_id for external_id, target_id in rows if external_id}


def inbox_path(workspace_id: uuid.UUID, item_id: uuid.UUID | None = None) -> str:
    """Where the UI shows the inbox (or one item of it): the ``action_url`` of notifications."""
    base = f"/workspaces/{workspace_id}/inbox"
    return f"{base}/{item_id}" if item_id is not None else base


async def notify_new_items(
    context: NotifyingContext, session: AsyncSession, tenant_id: uuid.UUID, items: Sequence[NewItem]
) -> int:
    """Tell the workspace's people about new comments and mentions; returns the sends made.

    Who: every comment goes to the author of the post it answers (when they are still a member)
    and to the tenant's owners and admins; mentions go to the owners and admins. How many: one
    notification per kind per recipient per sync -- the item itself when there is one, a
    summary ("5 new comments") when there are more -- so a burst never becomes hundreds of
    notifications. Items stored already archived (too old when fetched) are not announced.
    """
    fresh = [item for item in items if not item.archived]
    if not fresh:
        return 0
    admins = await admin_user_ids(session, tenant_id)
    authors = await _post_authors(
        session, tenant_id, {item.post_target_id for item in fresh if item.post_target_id}
    )
    sends = 0
    for kind in InboxKind:
        of_kind = [item for item in fresh if item.kind == kind.value]
        if not of_kind:
            continue
        per_user: dict[uuid.UUID, list[NewItem]] = defaultdict(list)
        for item in of_kind:
            recipients = set(admins)
            if kind is InboxKind.COMMENT and item.post_target_id in authors:
                recipients.add(authors[item.post_target_id])
            for user_id in recipients:
                per_user[user_id].append(item)
        # Recipients who get the same items get one send (one bulk write for all of them).
        groups: dict[tuple[uuid.UUID, ...], list[uuid.UUID]] = defaultdict(list)
        for user_id, user_items in per_user.items():
            groups[tuple(item.id for item in user_items)].append(user_id)
        by_id = {item.id: item for item in of_kind}
        for item_ids, user_ids in groups.items():
            payload = _payload(kind, [by_id[item_id] for item_id in item_ids])
            await context.notification_service(session).send_to_users(
                sorted(user_ids), payload, tenant_id=tenant_id
            )
            sends += 1
    return sends


async def _post_authors(
    session: AsyncSession, tenant_id: uuid.UUID, target_ids: set[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """The author of each target's post, for authors who are still members of the tenant."""
    if not target_ids:
        return {}
    rows = await session.execute(
        select(PostTarget.id, Post.author_id)
        .join(Post, Post.id == PostTarget.post_id)
        .join(
            Membership,
            (Membership.user_id == Post.author_id) & in_tenant(Membership, tenant_id),
        )
        .where(PostTarget.id.in_(sorted(target_ids)))
    )
    return {target_id: author_id for target_id, author_id in rows if author_id is not None}


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def _payload(kind: InboxKind, items: list[NewItem]) -> NotificationPayload:
    notification_type = (
        NotificationType.NEW_COMMENT if kind is InboxKind.COMMENT else NotificationType.NEW_MENTION
    )
    workspace_id = items[0].workspace_id
    if len(items) == 1:
        item = items[0]
        title = (
            f"New comment from {item.author_handle}"
            if kind is InboxKind.COMMENT
            else f"{item.author_handle} mentioned {item.account_handle}"
        )
        return NotificationPayload(
            type=notification_type,
            title=title[:200],
            message=_preview(item.text) or "(no text)",
            data={
                "workspace_id": str(workspace_id),
                "inbox_item_id": str(item.id),
                "social_account_id": str(item.social_account_id),
                "kind": kind.value,
                "author_handle": item.author_handle,
                "post_target_id": str(item.post_target_id) if item.post_target_id else None,
                "url": item.url,
                "count": 1,
            },
            action_url=inbox_path(workspace_id, item.id),
            dedupe_key=f"inbox_item:{item.id}",
        )
    handles = list(dict.fromkeys(item.author_handle for item in items))
    named = ", ".join(handles[:2])
    if len(handles) > 2:
        named += f" and {len(handles) - 2} other{'s' if len(handles) > 3 else ''}"
    noun = "comments" if kind is InboxKind.COMMENT else "mentions"
    verb = "commented on your posts" if kind is InboxKind.COMMENT else "mentioned your accounts"
    return NotificationPayload(
        type=notification_type,
        title=f"{len(items)} new {noun}",
        message=f"{named} {verb}.",
        data={
            "workspace_id": str(workspace_id),
            "kind": kind.value,
            "count": len(items),
            "inbox_item_ids": [str(item.id) for item in items[:SUMMARY_ITEM_IDS]],
        },
        action_url=f"{inbox_path(workspace_id)}?kind={kind.value}",
    )


# ------------------------------------------------------------------------------ archiving


async def archive_older_than(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    cutoff: datetime,
    *,
    now: datetime,
    batch_size: int,
) -> int:
    """Archive one batch of the workspace's unarchived items that occurred before ``cutoff``;
    returns how many (fewer than ``batch_size`` means none are left). Flushes only."""
    ids = list(
        (
            await session.scalars(
                select(InboxItem.id)
                .where(
                    InboxItem.workspace_id == workspace_id,
                    InboxItem.archived_at.is_(None),
                    InboxItem.occurred_at < cutoff,
                )
                .order_by(InboxItem.occurred_at)
                .limit(batch_size)
            )
        ).all()
    )
    if not ids:
        return 0
    await session.execute(
        update(InboxItem)
        .where(InboxItem.id.in_(ids), InboxItem.archived_at.is_(None))
        .values(archived_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(ids)


# ------------------------------------------------------------------------------ the API's rules


@dataclass(frozen=True, slots=True)
class InboxFilters:
    archived: bool = False
    # A user id; ``unassigned`` for items nobody has.
    assigned_to: uuid.UUID | None = None
    unassigned: bool = False
    kind: InboxKind | None = None
    social_account_id: uuid.UUID | None = None


def _list_query(workspace_id: uuid.UUID, filters: InboxFilters) -> Select[InboxItem]:
    query = (
        select(InboxItem)
        .where(InboxItem.workspace_id == workspace_id)
        .order_by(InboxItem.occurred_at.desc(), InboxItem.id.desc())
    )
    query = query.where(
        InboxItem.archived_at.is_not(None) if filters.archived else InboxItem.archived_at.is_(None)
    )
    if filters.unassigned:
        query = query.where(InboxItem.assigned_to.is_(None))
    elif filters.assigned_to is not None:
        query = query.where(InboxItem.assigned_to == filters.assigned_to)
    if filters.kind is not None:
        query = query.where(InboxItem.kind == filters.kind.value)
    if filters.social_account_id is not None:
        query = query.where(InboxItem.social_account_id == filters.social_account_id)
    return query


async def list_items(
    session: AsyncSession,
    workspace_id: uuid.UUID,
    filters: InboxFilters,
    *,
    page: int = 1,
    per_page: int = 25,
    cursor: Cursor | None = None,
) -> Page[InboxItem]:
    """The workspace's inbox, newest first (by when it happened on the network). Pages by
    number with totals, or by the opaque cursor of ``meta.next_cursor`` (no totals)."""
    return await paginate(
        session,
        _list_query(workspace_id, filters),
        key=(InboxItem.occurred_at, InboxItem.id),
        position=lambda item: (item.occurred_at, item.id),
        page=page,
        per_page=per_page,
        cursor=cursor,
    )


async def get_item(
    session: AsyncSession, workspace_id: uuid.UUID, item_id: uuid.UUID, *, for_update: bool = False
) -> InboxItem:
    query = select(InboxItem).where(InboxItem.id == item_id, InboxItem.workspace_id == workspace_id)
    if for_update:
        query = query.with_for_update()
    item = await session.scalar(query)
    if item is None:
        raise NotFound("inbox item not found")
    return item


def _assignment(item: InboxItem) -> dict[str, Any]:
    return {"assigned_to": str(item.assigned_to) if item.assigned_to else None}


async def assign(
    context: NotifyingContext,
    session: AsyncSession,
    item: InboxItem,
    assignee_id: uuid.UUID,
    *,
    actor: Actor,
    now: datetime,
) -> InboxItem:
    """Give the item to a member of the tenant (422 otherwise) and tell them, unless they took
    it themselves. Assigning it to whoever already has it changes nothing and tells no one."""
    if not await is_member(session, item.tenant_id, assignee_id):
        raise InvalidInput(
            "the assignee must be a member of this tenant",
            code="not_a_member",
            details=[{"loc": ["body", "user_id"], "msg": "not a member of this tenant"}],
        )
    if item.assigned_to == assignee_id:
        return item
    before = _assignment(item)
    item.assigned_to = assignee_id
    item.assigned_at = now
    await session.flush()
    await audit.record(
        session,
        action="inbox_item.assigned",
        subject_type="inbox_item",
        subject_id=item.id,
        before=before,
        after=_assignment(item),
        actor_id=actor.user_id,
        tenant_id=item.tenant_id,
        ip_address=actor.ip_address,
    )
    if assignee_id != actor.user_id:
        await context.notification_service(session).send_to_users(
            [assignee_id],
            NotificationPayload(
                type=NotificationType.INBOX_ASSIGNED,
                title=f"Assigned to you: {item.kind} from {item.author_handle}"[:200],
                message=_preview(item.text) or "(no text)",
                data={
                    "workspace_id": str(item.workspace_id),
                    "inbox_item_id": str(item.id),
                    "kind": item.kind,
                    "author_handle": item.author_handle,
                    "assigned_by": str(actor.user_id) if actor.user_id else None,
                },
                action_url=inbox_path(item.workspace_id, item.id),
            ),
            tenant_id=item.tenant_id,
        )
    return item


async def unassign(session: AsyncSession, item: InboxItem, *, actor: Actor) -> InboxItem:
    if item.assigned_to is None:
        return item
    before = _assignment(item)
    item.assigned_to = None
    item.assigned_at = None
    await session.flush()
    await audit.record(
        session,
        action="inbox_item.unassigned",
        subject_type="inbox_item",
        subject_id=item.id,
        before=before,
        after=_assignment(item),
        actor_id=actor.user_id,
        tenant_id=item.tenant_id,
        ip_address=actor.ip_address,
    )
    return item


async def set_archived(
    session: AsyncSession, item: InboxItem, archived: bool, *, now: datetime
) -> InboxItem:
    """Archive or bring back one item (idempotent: archiving twice keeps the first time)."""
    if archived and item.archived_at is None:
        item.archived_at = now
    elif not archived:
        item.archived_at = None
    await session.flush()
    return item
