"""Inbox sync of one workspace: fetch every active account from its cursor, store, notify.

The network is asked with no transaction open; what came back is then written in ONE transaction
per sync: the new items of every account, each account's new cursor and ``last_inbox_sync_at``,
the ``needs_reauth`` marks and the notifications. So an item is never stored without its cursor
moving past it, and never announced unless it was stored.

Per account: a 401 (:class:`NeedsReauthError`) marks the account ``needs_reauth`` (its owners are
told once) and the others still sync; a transient failure keeps the cursor where the last page
that did arrive left it, and the sync raises at the end so the job is retried; a permanent refusal
is logged and skipped until the next run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import select

from notiflow.inbox.service import NewItem, notify_new_items, store_entries
from notiflow.kit.ids import utcnow
from notiflow.kit.locks import job_lease
from notiflow.kit.tenant_scope import find_in_tenant
from notiflow.kit.uow import unit_of_work
from notiflow.models import SocialAccount, Workspace
from notiflow.models.platform import AccountStatus
from notiflow.social.credentials import credentials_of
from notiflow.social.ports import PlatformContext
from notiflow.social.providers.base import (
    InboxEntry,
    NeedsReauthError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)
from notiflow.social.service import mark_needs_reauth

log = structlog.get_logger(__name__)

# Pages fetched per account per sync; the rest waits for the next sync (the cursor is kept).
MAX_PAGES_PER_ACCOUNT = 20
# How long a sync may hold its workspace before another run may take over (a crashed holder
# frees it when this runs out).
LEASE_SECONDS = 900.0


class InboxSyncIncomplete(Exception):
    """Some accounts could not be fetched for a transient reason: retry the job (the accounts
    that did sync are saved)."""


@dataclass
class AccountFetch:
    account_id: uuid.UUID
    entries: list[InboxEntry] = field(default_factory=list)
    cursor: str | None = None
    complete: bool = False
    # retryable | needs_reauth | permanent | error, and what was said.
    failure: str | None = None
    reason: str | None = None


@dataclass
class SyncReport:
    workspace_id: uuid.UUID
    skipped: bool = False
    accounts: int = 0
    new_items: int = 0
    notifications: int = 0
    failed_accounts: dict[str, str] = field(default_factory=dict)


async def sync_workspace(
    context: PlatformContext, workspace_id: uuid.UUID, tenant_id: uuid.UUID
) -> SyncReport:
    """Sync the inbox of one workspace, unless a sync of it is already running (then skip: the
    running one covers it). Raises :class:`InboxSyncIncomplete` after saving what it could when
    an account failed transiently."""
    async with job_lease(
        context.sessionmaker, f"inbox.sync:{workspace_id}", seconds=LEASE_SECONDS
    ) as held:
        if not held:
            log.info(
                "inbox_sync_skipped",
                reason="already_running",
                workspace_id=str(workspace_id),
                tenant_id=str(tenant_id),
            )
            return SyncReport(workspace_id=workspace_id, skipped=True)
        return await _sync(context, workspace_id, tenant_id)


async def _sync(
    context: PlatformContext, workspace_id: uuid.UUID, tenant_id: uuid.UUID
) -> SyncReport:
    report = SyncReport(workspace_id=workspace_id)
    async with context.sessionmaker() as session:
        workspace = await find_in_tenant(session, Workspace, workspace_id, tenant_id)
        if workspace is None:
            log.warning(
                "inbox_sync_skipped",
                reason="no_such_workspace",
                workspace_id=str(workspace_id),
                tenant_id=str(tenant_id),
            )
            report.skipped = True
            return report
        accounts = list(
            (
                await session.scalars(
                    select(SocialAccount)
                    .where(
                        SocialAccount.workspace_id == workspace_id,
                        SocialAccount.status == AccountStatus.ACTIVE.value,
                    )
                    .order_by(SocialAccount.created_at, SocialAccount.id)
                )
            ).all()
        )
    report.accounts = len(accounts)
    fetched = [await _fetch(context, account) for account in accounts]

    now = utcnow()
    archive_before = now - timedelta(days=context.settings.inbox_archive_days)
    new_items: list[NewItem] = []
    async with unit_of_work(context.sessionmaker) as session:
        for result in fetched:
            account = await session.get(SocialAccount, result.account_id)
            if account is None:  # deleted while we were fetching
                continue
            if result.entries:
                new_items += await store_entries(
                    session, account, result.entries, now=now, archive_before=archive_before
                )
            if result.cursor is not None:
                account.inbox_cursor = result.cursor
            if result.complete:
                account.last_inbox_sync_at = now
            if result.failure == "needs_reauth":
                await mark_needs_reauth(context, session, account, result.reason or "unauthorized")
        await session.flush()
        report.new_items = len(new_items)
        report.notifications = await notify_new_items(context, session, tenant_id, new_items)

    retry: dict[str, str | None] = {}
    for result in fetched:
        if result.failure is not None:
            report.failed_accounts[str(result.account_id)] = f"{result.failure}: {result.reason}"
            if result.failure in ("retryable", "error"):
                retry[str(result.account_id)] = result.reason
    log.info(
        "inbox_sync",
        workspace_id=str(workspace_id),
        tenant_id=str(tenant_id),
        accounts=report.accounts,
        new_items=report.new_items,
        notifications=report.notifications,
        failed_accounts=report.failed_accounts or None,
    )
    if retry:
        raise InboxSyncIncomplete(
            "inbox sync incomplete for accounts "
            + "; ".join(f"{account}: {reason}" for account, reason in retry.items())
        )
    return report


async def _fetch(context: PlatformContext, account: SocialAccount) -> AccountFetch:
    """Everything new for one account, page after page from its cursor (bounded)."""
    result = AccountFetch(account_id=account.id, cursor=account.inbox_cursor)
    log_context = {
        "workspace_id": str(account.workspace_id),
        "social_account_id": str(account.id),
        "provider": account.provider,
    }
    provider = context.providers.get(account.provider)
    if provider is None:
        result.failure, result.reason = "permanent", f"unknown provider {account.provider!r}"
        log.warning(
            "inbox_fetch_failed", failure=result.failure, reason=result.reason, **log_context
        )
        return result
    cursor = account.inbox_cursor
    try:
        credentials = credentials_of(account, context.token_cipher())
        for _ in range(MAX_PAGES_PER_ACCOUNT):
            page = await provider.fetch_inbox(credentials, cursor)
            result.entries.extend(page.entries)
            moved = page.cursor is not None and page.cursor != cursor
            if page.cursor is not None:
                cursor = page.cursor
            # Stored only with the entries of the pages that arrived (a failure on the next page
            # resumes from here).
            result.cursor = cursor
            if not page.entries or not moved:
                result.complete = True
                break
        else:
            # The bound was reached: the rest is fetched by the next sync, from this cursor.
            result.complete = True
    except NeedsReauthError as error:
        result.failure, result.reason = "needs_reauth", error.message
    except (RetryableError, OutcomeUnknownError) as error:
        result.failure, result.reason = "retryable", error.message
    except PermanentError as error:
        result.failure, result.reason = "permanent", error.message
    except Exception as error:  # one broken account must not stop the workspace's others
        log.exception("inbox_fetch_crashed", **log_context)
        result.failure, result.reason = "error", f"{type(error).__name__}: {error}"
    if result.failure is not None:
        log.warning(
            "inbox_fetch_failed", failure=result.failure, reason=result.reason, **log_context
        )
    return result
