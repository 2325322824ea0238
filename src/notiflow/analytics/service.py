"""Post metrics: one snapshot per published target per run, and the workspace summary.

A run (``analytics.fetch_metrics``, every 6 hours) asks each active account's network for the
counts of the workspace's targets published in the last :data:`WINDOW_DAYS` days, in batches of
:data:`BATCH_SIZE`, with no transaction open; then writes every snapshot in one transaction.
Targets the network no longer has (deleted, made private) are left out by the provider and get no
snapshot. A target snapshotted less than :data:`FRESH_MINUTES` ago is skipped, so a retried or
doubly dispatched run does not record the same moment twice.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.ids import new_id, utcnow
from notiflow.kit.locks import job_lease
from notiflow.kit.queue import WorkspacePayload
from notiflow.kit.tenant_scope import find_in_tenant
from notiflow.kit.uow import unit_of_work
from notiflow.models import PostMetricSnapshot, PostTarget, SocialAccount, Workspace
from notiflow.models.platform import AccountStatus, TargetStatus
from notiflow.social.credentials import credentials_of
from notiflow.social.ports import PlatformContext
from notiflow.social.providers.base import (
    NeedsReauthError,
    OutcomeUnknownError,
    PermanentError,
    PostMetrics,
    RetryableError,
)
from notiflow.social.service import mark_needs_reauth

log = structlog.get_logger(__name__)

# Posts older than this are no longer measured (their counts have settled).
WINDOW_DAYS = 90
# External ids per call (Bluesky getPosts takes at most 25, Mastodon's batch 20).
BATCH_SIZE = 20
FRESH_MINUTES = 30
LEASE_SECONDS = 1_800.0
_MAX_COUNT = 2**31 - 1  # an INTEGER column


class MetricsFetchIncomplete(Exception):
    """Some accounts could not be asked for a transient reason: retry the job (the snapshots
    taken are saved, and the retry skips them as fresh)."""


@dataclass
class MetricsReport:
    workspace_id: uuid.UUID
    skipped: bool = False
    targets: int = 0
    snapshots: int = 0
    missing: int = 0
    failed_accounts: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Target:
    id: uuid.UUID
    external_id: str


def _published_since(cutoff: datetime) -> ColumnElement[bool]:
    return func.coalesce(PostTarget.published_at, PostTarget.created_at) >= cutoff


async def workspaces_with_published_posts(
    session: AsyncSession, now: datetime | None = None
) -> list[WorkspacePayload]:
    """The ``analytics.fetch_metrics`` payload of every workspace with a post published within
    the window on an active account."""
    cutoff = (now or utcnow()) - timedelta(days=WINDOW_DAYS)
    rows = await session.execute(
        select(PostTarget.workspace_id, Workspace.tenant_id)
        .join(Workspace, Workspace.id == PostTarget.workspace_id)
        .join(SocialAccount, SocialAccount.id == PostTarget.social_account_id)
        .where(
            PostTarget.status == TargetStatus.PUBLISHED.value,
            PostTarget.external_id.is_not(None),
            SocialAccount.status == AccountStatus.ACTIVE.value,
            _published_since(cutoff),
        )
        .distinct()
        .order_by(PostTarget.workspace_id)
    )
    return [
        WorkspacePayload(workspace_id=workspace_id, tenant_id=tenant_id)
        for workspace_id, tenant_id in rows
    ]


async def fetch_workspace_metrics(
    context: PlatformContext, workspace_id: uuid.UUID, tenant_id: uuid.UUID
) -> MetricsReport:
    """Snapshot the counts of the workspace's recent published posts (skipped while another run
    for the workspace holds its lease)."""
    async with job_lease(
        context.sessionmaker, f"analytics.metrics:{workspace_id}", seconds=LEASE_SECONDS
    ) as held:
        if not held:
            log.info(
                "metrics_fetch_skipped",
                reason="already_running",
                workspace_id=str(workspace_id),
                tenant_id=str(tenant_id),
            )
            return MetricsReport(workspace_id=workspace_id, skipped=True)
        return await _fetch(context, workspace_id, tenant_id)


async def _fetch(
    context: PlatformContext, workspace_id: uuid.UUID, tenant_id: uuid.UUID
) -> MetricsReport:
    report = MetricsReport(workspace_id=workspace_id)
    now = utcnow()
    async with context.sessionmaker() as session:
        workspace = await find_in_tenant(session, Workspace, workspace_id, tenant_id)
        if workspace is None:
            log.warning(
                "metrics_fetch_skipped",
                reason="no_such_workspace",
                workspace_id=str(workspace_id),
                tenant_id=str(tenant_id),
            )
            report.skipped = True
            return report
        targets, accounts = await _due_targets(session, workspace_id, now)
    report.targets = sum(len(items) for items in targets.values())

    rows: list[dict[str, Any]] = []
    needs_reauth: dict[uuid.UUID, str] = {}
    retry: dict[str, str] = {}
    for account in accounts:
        failure, reason, measured = await _measure(context, account, targets[account.id])
        report.missing += len(targets[account.id]) - len(measured)
        for target, metrics in measured:
            rows.append(_snapshot_row(target, workspace_id, metrics, now))
        if failure is not None:
            report.failed_accounts[str(account.id)] = f"{failure}: {reason}"
        if failure == "needs_reauth":
            needs_reauth[account.id] = reason or "unauthorized"
        elif failure in ("retryable", "error"):
            retry[str(account.id)] = reason or failure

    async with unit_of_work(context.sessionmaker) as session:
        if rows:
            await session.execute(insert(PostMetricSnapshot), rows)
        for account_id, reason in needs_reauth.items():
            stored = await session.get(SocialAccount, account_id)
            if stored is not None:
                await mark_needs_reauth(context, session, stored, reason)
    report.snapshots = len(rows)
    log.info(
        "metrics_fetched",
        job="analytics.fetch_metrics",
        workspace_id=str(workspace_id),
        tenant_id=str(tenant_id),
        targets=report.targets,
        snapshots=report.snapshots,
        failed_accounts=report.failed_accounts or None,
    )
    if retry:
        raise MetricsFetchIncomplete(
            "metrics fetch incomplete for accounts "
            + "; ".join(f"{account}: {reason}" for account, reason in retry.items())
        )
    return report


async def _due_targets(
    session: AsyncSession, workspace_id: uuid.UUID, now: datetime
) -> tuple[dict[uuid.UUID, list[_Target]], list[SocialAccount]]:
    """The targets to measure, per active account, and those accounts."""
    fresh = select(PostMetricSnapshot.post_target_id).where(
        PostMetricSnapshot.workspace_id == workspace_id,
        PostMetricSnapshot.captured_at >= now - timedelta(minutes=FRESH_MINUTES),
    )
    rows = await session.execute(
        select(PostTarget.id, PostTarget.external_id, PostTarget.social_account_id)
        .join(SocialAccount, SocialAccount.id == PostTarget.social_account_id)
        .where(
            PostTarget.workspace_id == workspace_id,
            PostTarget.status == TargetStatus.PUBLISHED.value,
            PostTarget.external_id.is_not(None),
            SocialAccount.status == AccountStatus.ACTIVE.value,
            _published_since(now - timedelta(days=WINDOW_DAYS)),
            PostTarget.id.not_in(fresh),
        )
        .order_by(PostTarget.social_account_id, PostTarget.id)
    )
    targets: dict[uuid.UUID, list[_Target]] = defaultdict(list)
    for target_id, external_id, account_id in rows:
        if external_id is not None:  # the query's own condition; narrows the type
            targets[account_id].append(_Target(id=target_id, external_id=external_id))
    if not targets:
        return targets, []
    accounts = list(
        (
            await session.scalars(
                select(SocialAccount)
                .where(SocialAccount.id.in_(sorted(targets)))
                .order_by(SocialAccount.created_at, SocialAccount.id)
            )
        ).all()
    )
    return targets, accounts


async def _measure(
    context: PlatformContext, account: SocialAccount, targets: Sequence[_Target]
) -> tuple[str | None, str | None, list[tuple[_Target, PostMetrics]]]:
    """Ask the account's network for its targets' counts, a batch at a time: (failure, reason,
    the targets it measured). A refused batch is skipped; an account-wide failure stops."""
    fields = {
        "workspace_id": str(account.workspace_id),
        "social_account_id": str(account.id),
        "provider": account.provider,
    }
    provider = context.providers.get(account.provider)
    if provider is None:
        reason = f"unknown provider {account.provider!r}"
        log.warning("metrics_fetch_failed", failure="permanent", reason=reason, **fields)
        return "permanent", reason, []
    measured: list[tuple[_Target, PostMetrics]] = []
    try:
        credentials = credentials_of(account, context.token_cipher())
        for start in range(0, len(targets), BATCH_SIZE):
            batch = targets[start : start + BATCH_SIZE]
            try:
                metrics = await provider.fetch_metrics(
                    credentials, [target.external_id for target in batch]
                )
            except PermanentError as error:
                log.warning(
                    "metrics_batch_refused", reason=error.message, targets=len(batch), **fields
                )
                continue
            measured += [(t, metrics[t.external_id]) for t in batch if t.external_id in metrics]
    except NeedsReauthError as error:
        failure, reason = "needs_reauth", error.message
    except (RetryableError, OutcomeUnknownError) as error:
        failure, reason = "retryable", error.message
    except Exception as error:  # one broken account must not stop the workspace's others
        log.exception("metrics_fetch_crashed", **fields)
        failure, reason = "error", f"{type(error).__name__}: {error}"
    else:
        return None, None, measured
    log.warning("metrics_fetch_failed", failure=failure, reason=reason, **fields)
    return failure, reason, measured


def _count(value: int | None) -> int:
    return max(0, min(int(value or 0), _MAX_COUNT))


def _snapshot_row(
    target: _Target, workspace_id: uuid.UUID, metrics: PostMetrics, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "post_target_id": target.id,
        "workspace_id": workspace_id,
        "captured_at": now,
        "likes": _count(metrics.likes),
        "reposts": _count(metrics.reposts),
        "replies": _count(metrics.replies),
        "impressions": _count(metrics.impressions) if metrics.impressions is not None else None,
        "raw": dict(metrics.raw),
    }


@dataclass(frozen=True, slots=True)
class TargetMetrics:
    post_id: uuid.UUID
    post_target_id: uuid.UUID
    social_account_id: uuid.UUID
    likes: int
    reposts: int
    replies: int
    impressions: int | None
    captured_at: datetime

    @property
    def engagement(self) -> int:
        return self.likes + self.reposts + self.replies


@dataclass(frozen=True, slots=True)
class WorkspaceSummary:
    days: int
    posts: int
    likes: int
    reposts: int
    replies: int
    impressions: int
    last_captured_at: datetime | None
    top_posts: list[TargetMetrics]


async def workspace_summary(
    session: AsyncSession, workspace_id: uuid.UUID, *, days: int, top: int = 5
) -> WorkspaceSummary:
    """Totals of the latest snapshot of each target published in the last ``days`` days, and
    the targets with the most engagement (likes + reposts + replies)."""
    latest = (
        select(
            PostMetricSnapshot.post_target_id,
            func.max(PostMetricSnapshot.captured_at).label("captured_at"),
        )
        .where(PostMetricSnapshot.workspace_id == workspace_id)
        .group_by(PostMetricSnapshot.post_target_id)
        .subquery()
    )
    rows = await session.execute(
        select(PostMetricSnapshot, PostTarget.post_id, PostTarget.social_account_id)
        .join(
            latest,
            (PostMetricSnapshot.post_target_id == latest.c.post_target_id)
            & (PostMetricSnapshot.captured_at == latest.c.captured_at),
        )
        .join(PostTarget, PostTarget.id == PostMetricSnapshot.post_target_id)
        .where(
            PostMetricSnapshot.workspace_id == workspace_id,
            _published_since(utcnow() - timedelta(days=days)),
        )
    )
    per_target: dict[uuid.UUID, TargetMetrics] = {}
    for snapshot, post_id, account_id in rows:
        per_target[snapshot.post_target_id] = TargetMetrics(
            post_id=post_id,
            post_target_id=snapshot.post_target_id,
            social_account_id=account_id,
            likes=snapshot.likes,
            reposts=snapshot.reposts,
            replies=snapshot.replies,
            impressions=snapshot.impressions,
            captured_at=snapshot.captured_at,
        )
    measured = list(per_target.values())
    return WorkspaceSummary(
        days=days,
        posts=len(measured),
        likes=sum(item.likes for item in measured),
        reposts=sum(item.reposts for item in measured),
        replies=sum(item.replies for item in measured),
        impressions=sum(item.impressions or 0 for item in measured),
        last_captured_at=max((item.captured_at for item in measured), default=None),
        top_posts=sorted(measured, key=lambda item: (-item.engagement, str(item.post_target_id)))[
            :top
        ],
    )
