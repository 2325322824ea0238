"""Analytics jobs: ``analytics.fetch_all_metrics`` and ``analytics.fetch_metrics``."""

from __future__ import annotations

from typing import Any

import structlog

from notiflow.analytics.service import fetch_workspace_metrics, workspaces_with_published_posts
from notiflow.kit.queue import Job, NoPayload, WorkspacePayload
from notiflow.social.ports import PlatformContext

log = structlog.get_logger(__name__)


async def fetch_all_metrics(context: PlatformContext, payload: NoPayload) -> None:
    """Every 6 hours: one ``analytics.fetch_metrics`` per workspace with recent published posts."""
    async with context.sessionmaker() as session:
        payloads = await workspaces_with_published_posts(session)
    if context.queue is None:  # pragma: no cover - every process wires a queue
        raise RuntimeError("analytics.fetch_all_metrics needs a job queue")
    for workspace in payloads:
        await context.queue.enqueue("analytics.fetch_metrics", workspace)
    log.info("metrics_dispatched", job="analytics.fetch_all_metrics", workspaces=len(payloads))


async def fetch_metrics(context: PlatformContext, payload: WorkspacePayload) -> None:
    """Snapshot the counts of one workspace's published posts."""
    await fetch_workspace_metrics(context, payload.workspace_id, payload.tenant_id)


JOBS: list[Job[PlatformContext, Any]] = [
    Job(
        "analytics.fetch_all_metrics",
        fetch_all_metrics,
        NoPayload,
        max_attempts=3,
        backoff_seconds=30.0,
    ),
    Job(
        "analytics.fetch_metrics",
        fetch_metrics,
        WorkspacePayload,
        max_attempts=3,
        backoff_seconds=120.0,
    ),
]
