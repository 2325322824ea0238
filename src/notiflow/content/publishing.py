"""Scheduled publishing: claim due post targets, publish each one once, record what happened.

    claimed = await scan_due_posts(context)          # every few seconds, by the scheduler
    await Publisher(context).publish(post_id, target_ids, claim)   # the content.publish_post job

The database is the source of truth. A target is claimed by one conditional UPDATE
(``pending`` and due, or ``publishing`` with an expired lease) that stamps ``lease_until``; that
stamp is the claim, and a job only works on targets still carrying it. Before each call to the
network the job saves the target's idempotency key and a ``publish_attempts`` row and commits;
after the call it records the outcome under the same claim. A call whose outcome is unknown (a
timeout, a crash while in flight) is never re-sent blindly: the next run asks the network first.
Retries are per target and timed by ``next_attempt_at``; the scanner picks them up when due.
docs/publishing.md tells the whole story.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import InvalidInput, NotFound
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import IsoDatetime, JobPayload
from notiflow.kit.retry import RetryPolicy
from notiflow.kit.uow import unit_of_work
from notiflow.models import Post, PostTarget, PublishAttempt, SocialAccount
from notiflow.models.platform import AccountStatus, PostStatus, TargetStatus
from notiflow.notifications.types import NotificationType
from notiflow.social.credentials import credentials_of
from notiflow.social.ports import PlatformContext
from notiflow.social.providers.base import (
    ErrorKind,
    NeedsReauthError,
    OutcomeUnknownError,
    ProviderError,
    PublishedPost,
    PublishRequest,
)
from notiflow.social.service import mark_needs_reauth

log = structlog.get_logger(__name__)

T = TypeVar("T")

PUBLISH_JOB = "content.publish_post"


class PublishPayload(JobPayload):
    """The ``content.publish_post`` payload: the targets of one post that one scan claimed."""

    post_id: uuid.UUID
    workspace_id: uuid.UUID
    tenant_id: uuid.UUID
    target_ids: tuple[uuid.UUID, ...]
    # The lease stamped on the targets: the job works only on targets still holding it.
    claim: IsoDatetime


# Targets claimed per statement, and at most per scan (the rest waits for the next scan).
CLAIM_BATCH = 2_000
MAX_PER_SCAN = 20_000
# Wake-up messages handed to the queue at once.
ENQUEUE_CONCURRENCY = 200
BACKOFF_CAP_SECONDS = 6 * 3600.0
# A reset time the network gives is waited for, unless it is further away than this.
RETRY_AFTER_CAP_SECONDS = 24 * 3600.0
# Publisher transactions open at once per process (the pool holds 10 + 20 connections). The
# network calls are not counted. Needed because the embedded in-memory broker starts every
# enqueued job at once (it ignores max_async_tasks), and a job publishes its targets together.
DB_SLOTS = 20
_db_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)

ACTIVE_POST_STATUSES = (PostStatus.SCHEDULED.value, PostStatus.PUBLISHING.value)
OPEN_TARGET_STATUSES = (TargetStatus.PENDING.value, TargetStatus.PUBLISHING.value)

NEEDS_REAUTH_REASON = "account needs re-authorization"
UNCONFIRMED_REASON = (
    "we sent the post but could not confirm it was published; check the account before "
    "posting again"
)


@dataclass(frozen=True, slots=True)
class ClaimedPost:
    """The targets of one post claimed by one scan; ``claim`` is the lease stamped on them."""

    post_id: uuid.UUID
    workspace_id: uuid.UUID
    tenant_id: uuid.UUID
    target_ids: list[uuid.UUID]
    claim: datetime

    def payload(self) -> PublishPayload:
        return PublishPayload(
            post_id=self.post_id,
            workspace_id=self.workspace_id,
            tenant_id=self.tenant_id,
            target_ids=tuple(self.target_ids),
            claim=self.claim,
        )


# ----------------------------------------------------------------------------- the scanner


def _due(now: datetime) -> Any:
    return (
        (PostTarget.status == TargetStatus.PENDING.value) & (PostTarget.next_attempt_at <= now)
    ) | ((PostTarget.status == TargetStatus.PUBLISHING.value) & (PostTarget.lease_until < now))


async def claim_due_targets(
    context: PlatformContext, *, now: datetime | None = None, limit: int = CLAIM_BATCH
) -> list[ClaimedPost]:
    """Claim up to ``limit`` due targets in one transaction, grouped by post (committed).

    Due = ``pending`` with ``next_attempt_at <= now``, or ``publishing`` whose lease expired (a
    publisher that crashed), of a post still ``scheduled``/``publishing``. On PostgreSQL the
    candidates are locked with SKIP LOCKED, so concurrent scanners split the work instead of
    waiting on each other; SQLite runs one writer at a time. Claimed posts become ``publishing``.
    """
    now = now or utcnow()
    claim = now + timedelta(seconds=context.settings.publish_lease_seconds)
    # A CTE is evaluated once. As an IN (subquery) PostgreSQL may plan a nested loop that runs
    # the subquery again per row, locking rows on each pass that the UPDATE then never claims
    # (seen here: concurrent scans left due targets behind).
    due = (
        select(PostTarget.id)
        .join(Post, Post.id == PostTarget.post_id)
        .where(_due(now), Post.status.in_(ACTIVE_POST_STATUSES))
        .order_by(PostTarget.next_attempt_at)
        .limit(limit)
        .with_for_update(of=PostTarget, skip_locked=True)
        .cte("due_targets")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    async with unit_of_work(context.sessionmaker) as session:
        rows = (
            await session.execute(
                update(PostTarget)
                # The condition again: on SQLite the subquery takes no lock.
                .where(PostTarget.id.in_(select(due.c.id)), _due(now))
                .values(status=TargetStatus.PUBLISHING.value, lease_until=claim, updated_at=now)
                .returning(PostTarget.id, PostTarget.post_id)
                .execution_options(synchronize_session=False)
            )
        ).all()
        if not rows:
            return []
        by_post: dict[uuid.UUID, list[uuid.UUID]] = {}
        for target_id, post_id in rows:
            by_post.setdefault(post_id, []).append(target_id)
        # Lock the posts in one order, so two scanners touching the same posts cannot deadlock.
        posts = (
            await session.execute(
                select(Post.id, Post.workspace_id, Post.tenant_id, Post.status)
                .where(Post.id.in_(list(by_post)))
                .order_by(Post.id)
                .with_for_update()
            )
        ).all()
        to_start = [row.id for row in posts if row.status == PostStatus.SCHEDULED.value]
        if to_start:
            await session.execute(
                update(Post)
                .where(Post.id.in_(to_start), Post.status == PostStatus.SCHEDULED.value)
                .values(status=PostStatus.PUBLISHING.value, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    return [
        ClaimedPost(row.id, row.workspace_id, row.tenant_id, by_post[row.id], claim)
        for row in posts
    ]


async def scan_due_posts(
    context: PlatformContext,
    *,
    now: datetime | None = None,
    limit: int = MAX_PER_SCAN,
    batch: int = CLAIM_BATCH,
) -> int:
    """Claim every due target (up to ``limit``) and wake one ``content.publish_post`` per post,
    after each batch commits. Returns how many targets were claimed.

    A wake-up that is lost costs a delay, not a post: its targets stay ``publishing`` until
    their lease expires, and the next scan claims them again.
    """
    queue = context.queue
    if queue is None:  # nothing would run the jobs: leave the targets for a process that can
        return 0
    claimed_total = 0
    while claimed_total < limit:
        size = min(batch, limit - claimed_total)
        claimed = await claim_due_targets(context, now=now, limit=size)
        count = sum(len(post.target_ids) for post in claimed)
        claimed_total += count
        await _dispatch(context, claimed)
        if count < size:
            break
    if claimed_total:
        log.info("publish_scan", claimed=claimed_total)
    return claimed_total


async def _dispatch(context: PlatformContext, claimed: Sequence[ClaimedPost]) -> None:
    queue = context.queue
    if queue is None:
        return

    async def wake(post: ClaimedPost) -> None:
        try:
            await queue.enqueue(PUBLISH_JOB, post.payload())
        except Exception:  # its targets are claimed again when the lease expires
            log.exception("publish_enqueue_failed", post_id=str(post.post_id))

    for start in range(0, len(claimed), ENQUEUE_CONCURRENCY):
        await asyncio.gather(*(wake(post) for post in claimed[start : start + ENQUEUE_CONCURRENCY]))


# --------------------------------------------------------------------------- the publisher


@dataclass(frozen=True, slots=True)
class _Started:
    """A target this run holds, saved (key, attempt row) and ready for the call."""

    target: PostTarget
    post: Post
    account: SocialAccount
    attempt_id: uuid.UUID
    lease: datetime
    # The previous call's outcome is unknown: ask the network before sending again.
    reconcile: bool


@dataclass(frozen=True, slots=True)
class _Outcome:
    kind: str  # "published" or an ErrorKind value
    message: str | None = None
    published: PublishedPost | None = None
    retry_after: float | None = None


def _db_slot() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slot = _db_slots.get(loop)
    if slot is None:
        slot = _db_slots[loop] = asyncio.Semaphore(DB_SLOTS)
    return slot


def idempotency_key(target_id: uuid.UUID, version: int) -> str:
    """The same for every try of one target and post version; new when the content changes."""
    return f"nf-{target_id.hex}-v{version}"


def retry_delay(attempt: int, base: float, retry_after: float | None = None) -> float:
    """base * 2^(attempt-1) with jitter in [50%, 100%], or what the network asked if longer."""
    policy = RetryPolicy(
        base=base, cap=BACKOFF_CAP_SECONDS, retry_after_cap=RETRY_AFTER_CAP_SECONDS
    )
    return policy.delay(attempt, retry_after)


class Publisher:
    """Publishes claimed targets and records each outcome (the body of content.publish_post)."""

    def __init__(self, context: PlatformContext) -> None:
        self.context = context
        self.settings = context.settings

    async def publish(
        self, post_id: uuid.UUID, target_ids: Sequence[uuid.UUID], claim: datetime
    ) -> dict[str, int]:
        """Publish the targets of one post still holding ``claim``; returns outcome counts.
        Targets go out concurrently; a database failure is raised after all have finished,
        so the job is retried (the targets it still holds are then picked up again)."""
        results = await asyncio.gather(
            *(self._publish_target(post_id, target_id, claim) for target_id in target_ids),
            return_exceptions=True,
        )
        outcomes: dict[str, int] = {}
        for result in results:
            if isinstance(result, BaseException):
                raise result
            outcomes[result] = outcomes.get(result, 0) + 1
        return outcomes

    async def _publish_target(
        self, post_id: uuid.UUID, target_id: uuid.UUID, claim: datetime
    ) -> str:
        async with _db_slot():
            started = await self._start(post_id, target_id, claim)
        if isinstance(started, str):
            return started
        outcome = await self._call(started)
        async with _db_slot():
            return await self._record(started, outcome)

    async def _start(
        self, post_id: uuid.UUID, target_id: uuid.UUID, claim: datetime
    ) -> _Started | str:
        """Take the target over from the claim (a fresh lease), check that it should still go
        out, save its idempotency key and an attempt row, and commit before any call."""
        now = utcnow()
        lease = now + timedelta(seconds=self.settings.publish_lease_seconds)
        async with unit_of_work(self.context.sessionmaker) as session:
            held = await session.scalar(
                update(PostTarget)
                .where(
                    PostTarget.id == target_id,
                    PostTarget.post_id == post_id,
                    PostTarget.status == TargetStatus.PUBLISHING.value,
                    PostTarget.lease_until == claim,
                )
                .values(lease_until=lease, updated_at=now)
                .returning(PostTarget.id)
                .execution_options(synchronize_session=False)
            )
            if held is None:  # published, retried or taken over since the scan: not ours
                return "skipped"
            # A call of an earlier run that never finished: its process died during it.
            unfinished = exists().where(
                PublishAttempt.target_id == PostTarget.id, PublishAttempt.finished_at.is_(None)
            )
            target, post, account, in_doubt = (
                await session.execute(
                    select(PostTarget, Post, SocialAccount, unfinished.label("in_doubt"))
                    .join(Post, Post.id == PostTarget.post_id)
                    .join(SocialAccount, SocialAccount.id == PostTarget.social_account_id)
                    .where(PostTarget.id == target_id)
                    .execution_options(populate_existing=True)
                )
            ).one()
            if post.status not in ACTIVE_POST_STATUSES:
                # Taken back (unscheduled, sent for approval) since the scan: do not publish.
                target.status = TargetStatus.PENDING.value
                target.lease_until = None
                return "released"
            if account.status != AccountStatus.ACTIVE.value:
                kind = (
                    ErrorKind.NEEDS_REAUTH
                    if account.status == AccountStatus.NEEDS_REAUTH.value
                    else ErrorKind.PERMANENT
                )
                reason = (
                    NEEDS_REAUTH_REASON
                    if kind is ErrorKind.NEEDS_REAUTH
                    else "account is disconnected"
                )
                _close(target, TargetStatus.FAILED, kind.value, reason)
                await self._finalize_post(session, post_id)
                return "failed"
            reconcile = bool(in_doubt) or target.last_error_kind == ErrorKind.UNKNOWN.value
            target.attempts += 1
            if target.idempotency_key is None:
                target.idempotency_key = idempotency_key(target.id, post.version)
            attempt = PublishAttempt(target_id=target_id, attempt=target.attempts, started_at=now)
            session.add(attempt)
        return _Started(target, post, account, attempt.id, lease, reconcile)

    async def _call(self, started: _Started) -> _Outcome:
        """Ask the network (first whether it already has the post, when the last call's outcome
        is unknown), each call under the provider timeout."""
        target, account = started.target, started.account
        provider = self.context.providers.get(account.provider)
        if provider is None:
            return _Outcome(
                ErrorKind.PERMANENT.value, f"no adapter for provider {account.provider!r}"
            )
        credentials = credentials_of(account, self.context.token_cipher())
        assert target.idempotency_key is not None  # noqa: S101 - set by _start
        request = PublishRequest(started.post.content, target.idempotency_key, target.attempts)
        if started.reconcile:
            try:
                found = await self._timed(provider.find_published(credentials, request))
            except NeedsReauthError as error:
                return _Outcome(ErrorKind.NEEDS_REAUTH.value, error.message)
            except ProviderError as error:
                # Whatever went wrong, whether the earlier call published is still unknown.
                return _Outcome(ErrorKind.UNKNOWN.value, error.message, None, error.retry_after)
            except Exception as error:
                return _unexpected(error, target)
            if found is not None:
                return _Outcome("published", published=found)
        try:
            published = await self._timed(provider.publish(credentials, request))
        except ProviderError as error:
            return _Outcome(error.kind.value, error.message, None, error.retry_after)
        except Exception as error:
            return _unexpected(error, target)
        return _Outcome("published", published=published)

    async def _timed(self, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.settings.provider_timeout_seconds):
                return await call
        except TimeoutError:
            raise OutcomeUnknownError(
                f"no answer within {self.settings.provider_timeout_seconds:g} s"
            ) from None

    async def _record(self, started: _Started, outcome: _Outcome) -> str:
        """Store the outcome on the target (under this run's lease), finish the attempt row and,
        once every target of the post is final, the post and its author's notification."""
        now = utcnow()
        target = started.target
        values, result = self._target_values(started, outcome, now)
        async with unit_of_work(self.context.sessionmaker) as session:
            condition = [PostTarget.id == target.id]
            if outcome.kind == "published":
                # A publication is a fact: recorded even if the lease was lost meanwhile.
                condition.append(PostTarget.status != TargetStatus.PUBLISHED.value)
            else:
                condition += [
                    PostTarget.status == TargetStatus.PUBLISHING.value,
                    PostTarget.lease_until == started.lease,
                ]
            updated = await session.scalar(
                update(PostTarget)
                .where(*condition)
                .values(**values, updated_at=now)
                .returning(PostTarget.id)
                .execution_options(synchronize_session=False)
            )
            await session.execute(
                update(PublishAttempt)
                .where(PublishAttempt.id == started.attempt_id)
                .values(finished_at=now, outcome=outcome.kind, error=outcome.message)
                .execution_options(synchronize_session=False)
            )
            if updated is None:
                log.warning(
                    "publish_lease_lost",
                    target_id=str(target.id),
                    outcome=outcome.kind,
                    workspace_id=str(target.workspace_id),
                )
                return "lost"
            if outcome.kind == ErrorKind.NEEDS_REAUTH.value:
                await _mark_needs_reauth(self.context, session, started.account, outcome.message)
            await self._finalize_post(session, started.post.id)
        log.info(
            "publish_target",
            target_id=str(target.id),
            post_id=str(started.post.id),
            provider=started.account.provider,
            attempt=target.attempts,
            outcome=result,
            error=outcome.message,
            workspace_id=str(target.workspace_id),
        )
        return result

    def _target_values(
        self, started: _Started, outcome: _Outcome, now: datetime
    ) -> tuple[dict[str, Any], str]:
        attempts = started.target.attempts
        out_of_tries = attempts >= self.settings.publish_max_attempts
        if outcome.kind == "published":
            assert outcome.published is not None  # noqa: S101 - set with kind "published"
            return {
                "status": TargetStatus.PUBLISHED.value,
                "lease_until": None,
                "external_id": outcome.published.external_id,
                "external_url": outcome.published.url,
                "published_at": outcome.published.published_at or now,
                "last_error_kind": None,
                "last_error": None,
            }, "published"
        message = outcome.message or "unknown error"
        if outcome.kind == ErrorKind.NEEDS_REAUTH.value:
            reason = f"{NEEDS_REAUTH_REASON} ({message})"
            if started.reconcile:  # and the earlier call may have published it
                reason = f"{reason}; {UNCONFIRMED_REASON}"
                return _closed(TargetStatus.UNCONFIRMED, ErrorKind.UNKNOWN.value, reason)
            return _closed(TargetStatus.FAILED, outcome.kind, reason)
        if outcome.kind == ErrorKind.PERMANENT.value:
            return _closed(TargetStatus.FAILED, outcome.kind, message)
        if out_of_tries:
            if outcome.kind == ErrorKind.UNKNOWN.value:
                reason = f"{UNCONFIRMED_REASON} ({message})"
                return _closed(TargetStatus.UNCONFIRMED, outcome.kind, reason)
            reason = f"{message} (gave up after {attempts} tries)"
            return _closed(TargetStatus.FAILED, outcome.kind, reason)
        delay = retry_delay(attempts, self.settings.publish_backoff_seconds, outcome.retry_after)
        return {
            "status": TargetStatus.PENDING.value,
            "lease_until": None,
            "next_attempt_at": now + timedelta(seconds=delay),
            "last_error_kind": outcome.kind,
            "last_error": message,
        }, "retry"

    async def _finalize_post(self, session: AsyncSession, post_id: uuid.UUID) -> None:
        """When no target of the post is open any more: its final status, and one notification
        to its author (deduplicated per post version, so a re-run never tells twice)."""
        await session.flush()  # the reads below refresh from the database
        post = await session.scalar(
            select(Post)
            .where(Post.id == post_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        if post is None:
            return
        rows = (
            await session.execute(
                select(PostTarget, SocialAccount)
                .join(SocialAccount, SocialAccount.id == PostTarget.social_account_id)
                .where(PostTarget.post_id == post_id)
                .order_by(SocialAccount.handle)
                .execution_options(populate_existing=True)
            )
        ).all()
        if not rows or any(target.status in OPEN_TARGET_STATUSES for target, _ in rows):
            return
        published = [target for target, _ in rows if target.status == TargetStatus.PUBLISHED.value]
        if len(published) == len(rows):
            status = PostStatus.PUBLISHED
        elif published:
            status = PostStatus.PARTIALLY_PUBLISHED
        else:
            status = PostStatus.FAILED
        was_open = post.status in ACTIVE_POST_STATUSES
        post.status = status.value
        post.published_at = min(
            (target.published_at for target in published if target.published_at), default=None
        )
        if was_open:
            await self._notify_author(session, post, status, rows)

    async def _notify_author(
        self,
        session: AsyncSession,
        post: Post,
        status: PostStatus,
        rows: Sequence[Any],
    ) -> None:
        if post.author_id is None:
            return
        targets = [
            {
                "target_id": str(target.id),
                "social_account_id": str(account.id),
                "provider": account.provider,
                "handle": account.handle,
                "status": target.status,
                "url": target.external_url,
                "error": target.last_error,
            }
            for target, account in rows
        ]
        links = [item["url"] for item in targets if item["url"]]
        done = [item for item in targets if item["status"] == TargetStatus.PUBLISHED.value]
        not_done = [item for item in targets if item["status"] != TargetStatus.PUBLISHED.value]
        if status is PostStatus.PUBLISHED:
            kind = NotificationType.POST_PUBLISHED
            title = "Your post was published"
            message = "Published to " + ", ".join(
                f"{item['handle']} ({item['provider']})"
                + (f": {item['url']}" if item["url"] else "")
                for item in done
            )
        else:
            kind = NotificationType.POST_FAILED
            title = (
                f"Your post was published to {len(done)} of {len(targets)} accounts"
                if done
                else "Your post could not be published"
            )
            message = "; ".join(
                f"{item['handle']} ({item['provider']}): "
                + (
                    "not confirmed"
                    if item["status"] == TargetStatus.UNCONFIRMED.value
                    else "failed"
                )
                + f" - {item['error']}"
                for item in not_done
            )
            if done:
                message += ". Published to " + ", ".join(str(item["handle"]) for item in done)
        try:
            await self.context.notification_service(session).send(
                post.author_id,
                kind,
                title,
                message[:2000],
                {
                    "post_id": str(post.id),
                    "workspace_id": str(post.workspace_id),
                    "status": status.value,
                    "targets": targets,
                },
                links[0] if links else None,
                tenant_id=post.tenant_id,
                dedupe_key=f"post:{post.id}:v{post.version}",
            )
        except (InvalidInput, NotFound):  # the author left the organization
            log.warning("publish_author_not_notified", post_id=str(post.id))

    async def give_up(
        self, post_id: uuid.UUID, target_ids: Sequence[uuid.UUID], error: str
    ) -> None:
        """The job failed for good (its ``failed()`` hook): close its open targets, failed, or
        unconfirmed where a call may have gone out, and tell the author."""
        async with unit_of_work(self.context.sessionmaker) as session:
            targets = (
                await session.scalars(
                    select(PostTarget)
                    .where(
                        PostTarget.id.in_(list(target_ids)),
                        PostTarget.post_id == post_id,
                        PostTarget.status.in_(OPEN_TARGET_STATUSES),
                    )
                    .with_for_update()
                    .execution_options(populate_existing=True)
                )
            ).all()
            in_flight = set(
                (
                    await session.scalars(
                        select(PublishAttempt.target_id).where(
                            PublishAttempt.target_id.in_([target.id for target in targets]),
                            PublishAttempt.finished_at.is_(None),
                        )
                    )
                ).all()
            )
            for target in targets:
                unknown = (
                    target.id in in_flight or target.last_error_kind == ErrorKind.UNKNOWN.value
                )
                if unknown:
                    _close(
                        target,
                        TargetStatus.UNCONFIRMED,
                        ErrorKind.UNKNOWN.value,
                        UNCONFIRMED_REASON,
                    )
                else:
                    _close(
                        target,
                        TargetStatus.FAILED,
                        ErrorKind.PERMANENT.value,
                        f"publishing failed: {error}"[:2000],
                    )
            await self._finalize_post(session, post_id)


def _closed(status: TargetStatus, kind: str, reason: str) -> tuple[dict[str, Any], str]:
    values = {
        "status": status.value,
        "lease_until": None,
        "last_error_kind": kind,
        "last_error": reason[:2000],
    }
    return values, status.value


def _close(target: PostTarget, status: TargetStatus, kind: str, reason: str) -> None:
    target.status = status.value
    target.lease_until = None
    target.last_error_kind = kind
    target.last_error = reason[:2000]


def _unexpected(error: Exception, target: PostTarget) -> _Outcome:
    # A bug or an unmapped failure in an adapter: the request may have gone out.
    log.exception("publish_call_crashed", target_id=str(target.id))
    return _Outcome(ErrorKind.UNKNOWN.value, f"{type(error).__name__}: {error}"[:500])


async def _mark_needs_reauth(
    context: PlatformContext, session: AsyncSession, account: SocialAccount, reason: str | None
) -> None:
    stored = await session.get_one(SocialAccount, account.id)
    await mark_needs_reauth(context, session, stored, reason or NEEDS_REAUTH_REASON)


__all__ = [
    "PUBLISH_JOB",
    "ClaimedPost",
    "Publisher",
    "claim_due_targets",
    "idempotency_key",
    "retry_delay",
    "scan_due_posts",
]
