"""Inbox jobs: ``inbox.sync_all``, ``inbox.sync`` and ``inbox.archive_old``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.inbox.service import archive_older_than
from notiflow.inbox.sync import sync_workspace
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import Job, NoPayload, WorkspacePayload
from notiflow.kit.uow import unit_of_work
from notiflow.models import SocialAccount
from notiflow.models.platform import AccountStatus
from notiflow.social.ports import PlatformContext

log = structlog.get_logger(__name__)

ARCHIVE_BATCH = 1_000


async def workspaces_to_sync(session: AsyncSession) -> list[WorkspacePayload]:
    """The ``inbox.sync`` payload of every workspace with at least one active account."""
    rows = await session.execute(
        select(SocialAccount.workspace_id, SocialAccount.tenant_id)
        .where(SocialAccount.status == AccountStatus.ACTIVE.value)
        .distinct()
        .order_by(SocialAccount.workspace_id)
    )
    return [
        WorkspacePayload(workspace_id=workspace_id, tenant_id=tenant_id)
        for workspace_id, tenant_id in rows
    ]


async def sync_all(context: PlatformContext, payload: NoPayload) -> None:
    """Every 15 minutes: one ``inbox.sync`` per workspace with connected active accounts."""
    async with context.sessionmaker() as session:
        payloads = await workspaces_to_sync(session)
    if context.queue is None:  # pragma: no cover - every process wires a queue
        raise RuntimeError("inbox.sync_all needs a job queue")
    for workspace in payloads:
        await context.queue.enqueue("inbox.sync", workspace)
    log.info("inbox_sync_dispatched", job="inbox.sync_all", workspaces=len(payloads))


async def sync(context: PlatformContext, payload: WorkspacePayload) -> None:
    """Fetch the new comments and mentions of one workspace, store them once and notify."""
    await sync_workspace(context, payload.workspace_id, payload.tenant_id)


async def archive_old(context: PlatformContext, payload: WorkspacePayload) -> None:
    """Weekly: archive the workspace's items that occurred more than ``inbox_archive_days``
    ago, a batch per transaction. Running it again archives nothing more."""
    workspace_id = payload.workspace_id
    now = utcnow()
    cutoff = now - timedelta(days=context.settings.inbox_archive_days)
    archived = 0
    while True:
        async with unit_of_work(context.sessionmaker) as session:
            count = await archive_older_than(
                session, workspace_id, cutoff, now=now, batch_size=ARCHIVE_BATCH
            )
        archived += count
        if count < ARCHIVE_BATCH:
            break
    log.info(
        "inbox_archived",
        job="inbox.archive_old",
        workspace_id=str(workspace_id),
        tenant_id=str(payload.tenant_id),
        archived=archived,
    )


JOBS: list[Job[PlatformContext, Any]] = [
    Job("inbox.sync_all", sync_all, NoPayload, max_attempts=3, backoff_seconds=30.0),
    # Retried when an account failed transiently (the others were saved); a 401 is not retried.
    Job("inbox.sync", sync, WorkspacePayload, max_attempts=3, backoff_seconds=60.0),
    Job("inbox.archive_old", archive_old, WorkspacePayload, max_attempts=3, backoff_seconds=300.0),
]
