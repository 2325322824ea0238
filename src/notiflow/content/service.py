"""Posts of a workspace: drafts, the approval flow and scheduling.

A post goes ``draft`` -> ``pending_approval`` (submitted by a member) -> ``scheduled`` (approved by
an owner/admin, or submitted by one) and is then picked up by the publishing scanner, which looks
for targets whose ``next_attempt_at`` is due. Every transition is one conditional ``UPDATE`` on the
state it starts from, so of two concurrent requests exactly one wins and the other gets a 409.
Changes to a scheduled post's targets are made only while every target is still untouched by the
publisher (pending, no attempt yet), targets first and the post row second (the order in which the
scanner claims them), so an edit never races a publish.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import AuthenticatedActor
from notiflow.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from notiflow.kit.ids import utcnow
from notiflow.kit.pagination import Page
from notiflow.kit.timezones import to_utc, zone
from notiflow.models import (
    Post,
    PostMetricSnapshot,
    PostTarget,
    SocialAccount,
    User,
    Workspace,
)
from notiflow.models.platform import AccountStatus, PostStatus, TargetStatus
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationType
from notiflow.tenancy.service import admin_user_ids, is_member

# A post can be changed, withdrawn or deleted only before the publisher has started on it.
EDITABLE = (PostStatus.DRAFT, PostStatus.PENDING_APPROVAL, PostStatus.SCHEDULED)
_EDITABLE_VALUES = tuple(status.value for status in EDITABLE)
EXCERPT_CHARS = 80


@dataclass(frozen=True, slots=True)
class NewPost:
    content: str
    account_ids: Sequence[uuid.UUID]
    # Naive = wall time in the workspace's timezone; aware = that instant.
    scheduled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PostChanges:
    """A partial edit: ``None`` leaves a field alone; ``clear_schedule`` removes the time."""

    content: str | None = None
    account_ids: Sequence[uuid.UUID] | None = None
    scheduled_at: datetime | None = None
    clear_schedule: bool = False


@dataclass(frozen=True, slots=True)
class TargetView:
    target: PostTarget
    account: SocialAccount


@dataclass(frozen=True, slots=True)
class PostView:
    post: Post
    targets: list[TargetView]
    timezone: str


@dataclass(frozen=True, slots=True)
class TargetMetrics:
    target: PostTarget
    account: SocialAccount
    snapshots: list[PostMetricSnapshot] = field(default_factory=list)


class PostService:
    """Business rules of posts; flushes, never commits (the request commits)."""

    def __init__(self, session: AsyncSession, notifications: NotificationService) -> None:
        self.session = session
        self.notifications = notifications

    # ------------------------------------------------------------------ reading

    async def list_posts(
        self,
        workspace: Workspace,
        *,
        status: PostStatus | None = None,
        page: int = 1,
        per_page: int = 15,
    ) -> Page[PostView]:
        """The workspace's posts, newest first, with their targets."""
        query = select(Post).where(Post.workspace_id == workspace.id)
        if status is not None:
            query = query.where(Post.status == status.value)
        total = int(
            await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        )
        posts = list(
            (
                await self.session.scalars(
                    query.order_by(Post.created_at.desc(), Post.id.desc())
                    .offset((page - 1) * per_page)
                    .limit(per_page)
                )
            ).all()
        )
        targets = await self._targets_of([post.id for post in posts])
        views = [
            PostView(post=post, targets=targets.get(post.id, []), timezone=workspace.timezone)
            for post in posts
        ]
        return Page(items=views, per_page=per_page, next_cursor=None, page=page, total=total)

    async def get_post(self, workspace: Workspace, post_id: uuid.UUID) -> PostView:
        return await self._view(workspace, await self._load(workspace, post_id))

    async def metrics(
        self, workspace: Workspace, post_id: uuid.UUID, *, limit: int = 100
    ) -> list[TargetMetrics]:
        """Each target's metric snapshots, newest first (at most ``limit`` per target)."""
        view = await self.get_post(workspace, post_id)
        result: list[TargetMetrics] = []
        for item in view.targets:
            snapshots = (
                await self.session.scalars(
                    select(PostMetricSnapshot)
                    .where(PostMetricSnapshot.post_target_id == item.target.id)
                    .order_by(PostMetricSnapshot.captured_at.desc(), PostMetricSnapshot.id.desc())
                    .limit(limit)
                )
            ).all()
            result.append(TargetMetrics(item.target, item.account, list(snapshots)))
        return result

    # ------------------------------------------------------------------ writing

    async def create(
        self, workspace: Workspace, caller: AuthenticatedActor, new: NewPost
    ) -> PostView:
        """A draft by ``caller`` with one pending, unscheduled target per account."""
        scheduled_at = self._future_instant(new.scheduled_at, workspace)
        accounts = await self._accounts_for(workspace, new.account_ids)
        post = Post(
            tenant_id=workspace.tenant_id,
            workspace_id=workspace.id,
            author_id=caller.user_id,
            content=new.content,
            status=PostStatus.DRAFT.value,
            scheduled_at=scheduled_at,
            scheduled_timezone=workspace.timezone if scheduled_at else None,
        )
        self.session.add(post)
        await self.session.flush()
        self.session.add_all(
            PostTarget(post_id=post.id, social_account_id=account.id, workspace_id=workspace.id)
            for account in accounts
        )
        await self.session.flush()
        return await self._view(workspace, post)

    async def update(
        self,
        workspace: Workspace,
        post_id: uuid.UUID,
        caller: AuthenticatedActor,
        changes: PostChanges,
    ) -> PostView:
        """Edit a post that the publisher has not started on. A content change bumps the
        version (new idempotency keys); a scheduled post's targets move with its time. A
        member's edit of an approved (scheduled) post sends it back for approval."""
        post = await self._load(workspace, post_id)
        self._require_author_or_admin(post, caller, "edit")
        status = self._editable_status(post, "edited")
        now = utcnow()

        values: dict[str, Any] = {}
        if changes.content is not None and changes.content != post.content:
            values["content"] = changes.content
            values["version"] = post.version + 1
        if changes.clear_schedule:
            if status is PostStatus.SCHEDULED:
                raise InvalidInput(
                    "a scheduled post keeps its time: give a new scheduled_at, or unschedule it",
                    code="schedule_required",
                )
            if post.scheduled_at is not None:
                values["scheduled_at"] = None
                values["scheduled_timezone"] = None
        elif changes.scheduled_at is not None:
            scheduled_at = self._future_instant(changes.scheduled_at, workspace)
            if scheduled_at != post.scheduled_at:
                values["scheduled_at"] = scheduled_at
                values["scheduled_timezone"] = workspace.timezone

        current = await self._targets_of([post.id])
        current_targets = current.get(post.id, [])
        current_ids = {item.account.id for item in current_targets}
        add_accounts: list[SocialAccount] = []
        remove_account_ids: set[uuid.UUID] = set()
        if changes.account_ids is not None:
            accounts = await self._accounts_for(workspace, changes.account_ids)
            wanted = {account.id for account in accounts}
            add_accounts = [account for account in accounts if account.id not in current_ids]
            remove_account_ids = current_ids - wanted

        if not values and not add_accounts and not remove_account_ids:
            return await self._view(workspace, post)
        values["updated_at"] = now  # also when only the targets change

        back_to_review = status is PostStatus.SCHEDULED and not caller.is_admin
        new_status = PostStatus.PENDING_APPROVAL if back_to_review else status
        if back_to_review:
            values.update(
                status=new_status.value,
                submitted_at=now,
                reviewed_by=None,
                reviewed_at=None,
                review_note=None,
            )
        scheduled_at = values.get("scheduled_at", post.scheduled_at)
        next_attempt_at = scheduled_at if new_status is PostStatus.SCHEDULED else None

        # Targets first (the publisher's claim order), and only while none has been claimed.
        if status is PostStatus.SCHEDULED:
            await self._hold_targets(post, current_targets, next_attempt_at=next_attempt_at)
        if remove_account_ids:
            await self.session.execute(
                delete(PostTarget)
                .where(
                    PostTarget.post_id == post.id,
                    PostTarget.social_account_id.in_(remove_account_ids),
                )
                .execution_options(synchronize_session=False)
            )
        if add_accounts:
            self.session.add_all(
                PostTarget(
                    post_id=post.id,
                    social_account_id=account.id,
                    workspace_id=workspace.id,
                    next_attempt_at=next_attempt_at,
                )
                for account in add_accounts
            )
            await self.session.flush()
        await self._transition(post, (status,), values, expected_version=post.version)
        if back_to_review:
            await self._audit(post, caller, "post.resubmitted", status, new_status)
            await self._notify_reviewers(workspace, post, caller)
        return await self._view(workspace, post)

    async def submit(
        self, workspace: Workspace, post_id: uuid.UUID, caller: AuthenticatedActor
    ) -> PostView:
        """Ask for approval. An owner/admin needs none: their post is scheduled at once and
        recorded as approved by themselves. Without a time the post goes out when approved."""
        post = await self._load(workspace, post_id)
        self._require_author_or_admin(post, caller, "submit")
        if post.status != PostStatus.DRAFT.value:
            raise Conflict(
                f"only a draft can be submitted; this post is {post.status}",
                code="invalid_post_status",
            )
        now = utcnow()
        if post.scheduled_at is not None and post.scheduled_at <= now:
            # A conflict with the post as it is (the request has no body to fix): 409.
            raise Conflict(
                "the post's scheduled time has passed: pick a new scheduled_at first",
                code="scheduled_at_in_past",
                details=[{"loc": ["scheduled_at"], "msg": "must be in the future"}],
            )
        targets = (await self._targets_of([post.id])).get(post.id, [])
        if not targets:
            raise InvalidInput(
                "the post has no social accounts left: add at least one first",
                code="no_accounts",
            )
        if caller.is_admin:
            await self._schedule(workspace, post, caller, PostStatus.DRAFT, now, submitted=True)
            return await self._view(workspace, post)
        await self._transition(
            post,
            (PostStatus.DRAFT,),
            {"status": PostStatus.PENDING_APPROVAL.value, "submitted_at": now},
        )
        await self._audit(post, caller, "post.submitted", PostStatus.DRAFT, post.status)
        await self._notify_reviewers(workspace, post, caller)
        return await self._view(workspace, post)

    async def approve(
        self, workspace: Workspace, post_id: uuid.UUID, caller: AuthenticatedActor
    ) -> PostView:
        """pending_approval -> scheduled; a time already past means due now."""
        post = await self._load(workspace, post_id)
        self._require_admin(caller, "approve posts")
        self._require_status(post, PostStatus.PENDING_APPROVAL, "approved")
        await self._schedule(workspace, post, caller, PostStatus.PENDING_APPROVAL, utcnow())
        return await self._view(workspace, post)

    async def reject(
        self, workspace: Workspace, post_id: uuid.UUID, caller: AuthenticatedActor, reason: str
    ) -> PostView:
        """pending_approval -> draft, with the reason kept and sent to the author."""
        post = await self._load(workspace, post_id)
        self._require_admin(caller, "reject posts")
        self._require_status(post, PostStatus.PENDING_APPROVAL, "rejected")
        now = utcnow()
        await self._transition(
            post,
            (PostStatus.PENDING_APPROVAL,),
            {
                "status": PostStatus.DRAFT.value,
                "reviewed_by": caller.user_id,
                "reviewed_at": now,
                "review_note": reason,
            },
        )
        await self._audit(
            post, caller, "post.rejected", PostStatus.PENDING_APPROVAL, post.status, reason=reason
        )
        await self._notify_author(
            post,
            caller,
            NotificationType.POST_REJECTED,
            "Your post was rejected",
            f"{await self._name(caller.user_id)} rejected your post "
            f"\u201c{_excerpt(post.content)}\u201d: {reason}",
            {"reason": reason},
            dedupe=f"rejected:{now.isoformat()}",
        )
        return await self._view(workspace, post)

    async def unschedule(
        self, workspace: Workspace, post_id: uuid.UUID, caller: AuthenticatedActor
    ) -> PostView:
        """scheduled or pending_approval -> draft; nothing will be published until it is
        submitted (and approved) again."""
        post = await self._load(workspace, post_id)
        self._require_author_or_admin(post, caller, "unschedule")
        status = PostStatus(post.status)
        if status not in (PostStatus.SCHEDULED, PostStatus.PENDING_APPROVAL):
            raise Conflict(
                f"only a scheduled or submitted post can go back to draft; this one is {status}",
                code="invalid_post_status",
            )
        if status is PostStatus.SCHEDULED:
            targets = (await self._targets_of([post.id])).get(post.id, [])
            await self._hold_targets(post, targets, next_attempt_at=None)
        await self._transition(post, (status,), {"status": PostStatus.DRAFT.value})
        await self._audit(post, caller, "post.unscheduled", status, post.status)
        return await self._view(workspace, post)

    async def delete(
        self, workspace: Workspace, post_id: uuid.UUID, caller: AuthenticatedActor
    ) -> None:
        """Delete a post the publisher has not started on (draft, submitted or scheduled)."""
        post = await self._load(workspace, post_id)
        self._require_author_or_admin(post, caller, "delete")
        status = self._editable_status(post, "deleted")
        targets = (await self._targets_of([post.id])).get(post.id, [])
        if status is PostStatus.SCHEDULED:
            await self._hold_targets(post, targets, next_attempt_at=None)
        deleted = await self.session.execute(
            delete(Post)
            .where(Post.id == post.id, Post.status == status.value)
            .returning(Post.id)
            .execution_options(synchronize_session=False)
        )
        if deleted.scalar_one_or_none() is None:
            raise _changed_meanwhile()
        await self._audit(post, caller, "post.deleted", status, None)
        self.session.expunge(post)

    # ------------------------------------------------------------------ helpers

    async def _schedule(
        self,
        workspace: Workspace,
        post: Post,
        caller: AuthenticatedActor,
        from_status: PostStatus,
        now: datetime,
        *,
        submitted: bool = False,
    ) -> None:
        """Approve (or self-approve) and make every target due at the scheduled time."""
        values: dict[str, Any] = {
            "status": PostStatus.SCHEDULED.value,
            "reviewed_by": caller.user_id,
            "reviewed_at": now,
            "review_note": None,
        }
        if submitted:
            values["submitted_at"] = now
        due = post.scheduled_at
        if due is None:  # no time given: "publish as soon as approved"
            due = now
            values.update(scheduled_at=now, scheduled_timezone=workspace.timezone)
        await self._transition(post, (from_status,), values)
        # The post row is ours now; its targets wait (next_attempt_at None) and nothing else
        # moves them, so they can follow.
        await self.session.execute(
            update(PostTarget)
            .where(PostTarget.post_id == post.id, PostTarget.status == TargetStatus.PENDING)
            .values(next_attempt_at=max(due, now))
            .execution_options(synchronize_session=False)
        )
        await self._audit(
            post,
            caller,
            "post.self_approved" if submitted else "post.approved",
            from_status,
            post.status,
            scheduled_at=_utc_iso(post.scheduled_at),
        )
        local = _local_phrase(post.scheduled_at or now, workspace.timezone, now)
        approver = await self._name(caller.user_id)
        dedupe = f"approved:{now.isoformat()}"
        await self._notify_author(
            post,
            caller,
            NotificationType.POST_APPROVED,
            "Your post was approved",
            f"{approver} approved your post \u201c{_excerpt(post.content)}\u201d.",
            {},
            dedupe=dedupe,
        )
        await self._notify_author(
            post,
            caller,
            NotificationType.POST_SCHEDULED,
            "Post scheduled",
            f"Your post \u201c{_excerpt(post.content)}\u201d will be published {local}.",
            _schedule_data(post, workspace.timezone),
            dedupe=dedupe,
        )

    async def _transition(
        self,
        post: Post,
        from_statuses: Sequence[PostStatus],
        values: dict[str, Any],
        *,
        expected_version: int | None = None,
    ) -> None:
        """Apply ``values`` only if the post is still in one of ``from_statuses`` (and at
        ``expected_version``); otherwise someone else changed it first: 409."""
        statement = update(Post).where(
            Post.id == post.id, Post.status.in_([status.value for status in from_statuses])
        )
        if expected_version is not None:
            statement = statement.where(Post.version == expected_version)
        result = await self.session.execute(
            statement.values(**values)
            .returning(Post.id)
            .execution_options(synchronize_session=False)
        )
        if result.scalar_one_or_none() is None:
            raise _changed_meanwhile()
        await self.session.refresh(post)

    async def _hold_targets(
        self, post: Post, targets: list[TargetView], *, next_attempt_at: datetime | None
    ) -> None:
        """Set every target's due time, but only if the publisher has claimed none (409)."""
        held = await self.session.execute(
            update(PostTarget)
            .where(
                PostTarget.post_id == post.id,
                PostTarget.status == TargetStatus.PENDING,
                PostTarget.attempts == 0,
            )
            .values(next_attempt_at=next_attempt_at)
            .returning(PostTarget.id)
            .execution_options(synchronize_session=False)
        )
        if len(held.scalars().all()) != len(targets):
            raise Conflict(
                "publishing of this post has started: it can no longer be changed",
                code="post_publishing",
            )

    async def _load(self, workspace: Workspace, post_id: uuid.UUID) -> Post:
        post = await self.session.scalar(
            select(Post).where(Post.id == post_id, Post.workspace_id == workspace.id)
        )
        if post is None:
            raise NotFound("post not found")
        return post

    async def _view(self, workspace: Workspace, post: Post) -> PostView:
        targets = await self._targets_of([post.id])
        return PostView(post=post, targets=targets.get(post.id, []), timezone=workspace.timezone)

    async def _targets_of(self, post_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[TargetView]]:
        if not post_ids:
            return {}
        rows = (
            await self.session.execute(
                select(PostTarget, SocialAccount)
                .join(SocialAccount, SocialAccount.id == PostTarget.social_account_id)
                .where(PostTarget.post_id.in_(post_ids))
                .order_by(PostTarget.created_at, PostTarget.id)
                .execution_options(populate_existing=True)
            )
        ).all()
        grouped: dict[uuid.UUID, list[TargetView]] = {}
        for target, account in rows:
            grouped.setdefault(target.post_id, []).append(TargetView(target, account))
        return grouped

    async def _accounts_for(
        self, workspace: Workspace, account_ids: Sequence[uuid.UUID]
    ) -> list[SocialAccount]:
        """The workspace's accounts with these ids, in the order given; every one must exist
        in this workspace (accounts of other workspaces count as unknown) and be active."""
        ids = list(dict.fromkeys(account_ids))
        if not ids:
            raise InvalidInput(
                "choose at least one social account",
                details=[{"loc": ["body", "account_ids"], "msg": "at least one account"}],
            )
        found = {
            account.id: account
            for account in (
                await self.session.scalars(
                    select(SocialAccount).where(
                        SocialAccount.id.in_(ids), SocialAccount.workspace_id == workspace.id
                    )
                )
            ).all()
        }
        unknown = [str(account_id) for account_id in ids if account_id not in found]
        if unknown:
            raise InvalidInput(
                "some account_ids are not social accounts of this workspace",
                code="unknown_accounts",
                details=[
                    {
                        "loc": ["body", "account_ids"],
                        "msg": "not an account of this workspace",
                        "ids": unknown,
                    }
                ],
            )
        inactive = [
            {"id": str(account.id), "handle": account.handle, "status": account.status}
            for account in found.values()
            if account.status != AccountStatus.ACTIVE.value
        ]
        if inactive:
            raise InvalidInput(
                "some accounts cannot publish: reconnect or choose other ones",
                code="inactive_accounts",
                details=[
                    {
                        "loc": ["body", "account_ids"],
                        "msg": "account is not active",
                        "accounts": inactive,
                    }
                ],
            )
        return [found[account_id] for account_id in ids]

    @staticmethod
    def _future_instant(value: datetime | None, workspace: Workspace) -> datetime | None:
        if value is None:
            return None
        instant = to_utc(value, workspace.timezone)
        if instant <= utcnow():
            raise InvalidInput(
                "scheduled_at must be in the future",
                code="scheduled_at_in_past",
                details=[
                    {
                        "loc": ["body", "scheduled_at"],
                        "msg": "must be in the future",
                        "instant": _utc_iso(instant),
                    }
                ],
            )
        return instant

    @staticmethod
    def _require_admin(caller: AuthenticatedActor, what: str) -> None:
        if not caller.is_admin:
            raise Forbidden(f"only owners and admins may {what}")

    @staticmethod
    def _require_author_or_admin(post: Post, caller: AuthenticatedActor, verb: str) -> None:
        if not caller.is_admin and post.author_id != caller.user_id:
            raise Forbidden(f"only the post's author or an owner/admin may {verb} it")

    @staticmethod
    def _require_status(post: Post, status: PostStatus, participle: str) -> None:
        if post.status != status.value:
            raise Conflict(
                f"only a post pending approval can be {participle}; this one is {post.status}",
                code="invalid_post_status",
            )

    @staticmethod
    def _editable_status(post: Post, participle: str) -> PostStatus:
        if post.status not in _EDITABLE_VALUES:
            raise Conflict(
                f"a {post.status} post can no longer be {participle}",
                code="post_not_editable",
            )
        return PostStatus(post.status)

    async def _audit(
        self,
        post: Post,
        caller: AuthenticatedActor,
        action: str,
        before: PostStatus,
        after: str | None,
        **extra: Any,
    ) -> None:
        await audit.record(
            self.session,
            action=action,
            subject_type="post",
            subject_id=post.id,
            before={"status": before.value},
            after=None if after is None else {"status": after, **extra},
            actor_id=caller.user_id,
            tenant_id=post.tenant_id,
            ip_address=caller.ip_address,
        )

    async def _name(self, user_id: uuid.UUID) -> str:
        user = await self.session.get(User, user_id)
        return user.name if user is not None else "Someone"

    async def _notify_reviewers(
        self, workspace: Workspace, post: Post, caller: AuthenticatedActor
    ) -> None:
        """Tell the tenant's owners/admins (but not the submitter) a post awaits review."""
        reviewers = [
            user_id
            for user_id in await admin_user_ids(self.session, post.tenant_id)
            if user_id != caller.user_id
        ]
        if not reviewers:
            return
        when = (
            _local_phrase(post.scheduled_at, workspace.timezone, utcnow())
            if post.scheduled_at is not None
            else "as soon as it is approved"
        )
        await self.notifications.send_to_users(
            reviewers,
            NotificationPayload(
                type=NotificationType.POST_SUBMITTED,
                title="Post awaiting approval",
                message=(
                    f"{await self._name(caller.user_id)} submitted a post for "
                    f"{workspace.name}, to go out {when}: \u201c{_excerpt(post.content)}\u201d"
                ),
                data=_post_data(post) | _schedule_data(post, workspace.timezone),
                action_url=_post_url(post),
                dedupe_key=f"post:{post.id}:submitted:{_utc_iso(post.submitted_at)}",
            ),
            tenant_id=post.tenant_id,
        )

    async def _notify_author(
        self,
        post: Post,
        caller: AuthenticatedActor,
        notification_type: NotificationType,
        title: str,
        message: str,
        data: dict[str, Any],
        *,
        dedupe: str,
    ) -> None:
        """Tell the author, unless they did it themselves or have left the tenant."""
        author_id = post.author_id
        if author_id is None or author_id == caller.user_id:
            return
        if not await is_member(self.session, post.tenant_id, author_id):
            return
        await self.notifications.send_to_users(
            [author_id],
            NotificationPayload(
                type=notification_type,
                title=title,
                message=message,
                data=_post_data(post) | data,
                action_url=_post_url(post),
                dedupe_key=f"post:{post.id}:{notification_type.value}:{dedupe}",
            ),
            tenant_id=post.tenant_id,
        )


def _changed_meanwhile() -> Conflict:
    return Conflict(
        "the post was changed by someone else meanwhile: reload it and try again",
        code="post_changed",
    )


def _post_url(post: Post) -> str:
    return f"/workspaces/{post.workspace_id}/posts/{post.id}"


def _post_data(post: Post) -> dict[str, Any]:
    return {"post_id": str(post.id), "workspace_id": str(post.workspace_id)}


def _schedule_data(post: Post, timezone: str) -> dict[str, Any]:
    if post.scheduled_at is None:
        return {"scheduled_at": None, "scheduled_at_local": None, "timezone": timezone}
    return {
        "scheduled_at": _utc_iso(post.scheduled_at),
        "scheduled_at_local": post.scheduled_at.astimezone(zone(timezone)).isoformat(),
        "timezone": timezone,
    }


def _utc_iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _local_phrase(instant: datetime, timezone: str, now: datetime) -> str:
    """'on Sun 14 Mar 2027 at 09:00 +04 (Asia/Baku)', or 'now' for a time already due."""
    if instant <= now:
        return "now"
    local = instant.astimezone(zone(timezone))
    return f"on {local:%a %d %b %Y at %H:%M} {local.tzname()} ({timezone})"


def _excerpt(content: str) -> str:
    text = " ".join(content.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1].rstrip() + "\u2026"
