"""``notiflow serve --demo``: a tenant with a workspace, two people, a sandbox account and a post
scheduled two minutes ahead, so a new user sees scheduling, publishing and inbox notifications.

The workspace is in Asia/Baku (UTC+4) to show local times; the sandbox account produces comments
and mentions every minute (the demo syncs the inbox every minute instead of every 15).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.auth.service import issue_token
from notiflow.kit.crypto import TokenCipher
from notiflow.kit.ids import utcnow
from notiflow.kit.tenant_scope import in_tenant
from notiflow.kit.timezones import local_iso
from notiflow.models import Membership, Post, PostTarget, SocialAccount, User, Workspace
from notiflow.models.platform import AccountStatus, PostStatus, TargetStatus, WorkspaceSchedule
from notiflow.models.tenancy import Role
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationType
from notiflow.tenancy.service import create_user, get_or_create_tenant

DEMO_TENANT = "Demo Agency"
DEMO_WORKSPACE = "Demo Brand"
DEMO_TIMEZONE = "Asia/Baku"
OWNER_EMAIL = "owner@demo.notiflow.localhost"
EDITOR_EMAIL = "editor@demo.notiflow.localhost"
# One comment and one mention every minute, the first of each at the first sync (the minute
# before the demo started), which runs at the scheduler's first look; the demo post goes out in
# two minutes.
SANDBOX_OPTIONS = {
    "username": "demo_brand",
    "latency_ms": 150,
    "comment_rate": 1.0,
    "mention_rate": 1.0,
    "bucket_seconds": 60,
    "initial_buckets": 1,
}
INBOX_SYNC_JOB = "inbox.sync"


@dataclass(frozen=True, slots=True)
class DemoSeed:
    tenant_id: str
    workspace_id: str
    owner_token: str
    editor_token: str
    account_id: str
    post_id: str
    scheduled_at: str
    scheduled_at_local: str


async def seed_demo(
    session: AsyncSession, cipher: TokenCipher, notifications: NotificationService
) -> DemoSeed:
    """Create (or reuse) the demo tenant and add a fresh post due in two minutes. Flushes; the
    caller commits."""
    tenant, _ = await get_or_create_tenant(session, DEMO_TENANT)
    owner = await _member(session, tenant.name, OWNER_EMAIL, "Aysel (owner)", Role.OWNER)
    editor = await _member(session, tenant.name, EDITOR_EMAIL, "Rauf (editor)", Role.MEMBER)

    workspace = await session.scalar(
        select(Workspace).where(in_tenant(Workspace, tenant.id), Workspace.name == DEMO_WORKSPACE)
    )
    if workspace is None:
        workspace = Workspace(tenant_id=tenant.id, name=DEMO_WORKSPACE, timezone=DEMO_TIMEZONE)
        session.add(workspace)
        await session.flush()

    account = await session.scalar(
        select(SocialAccount).where(
            SocialAccount.workspace_id == workspace.id, SocialAccount.provider == "sandbox"
        )
    )
    if account is None:
        account = SocialAccount(
            tenant_id=tenant.id,
            workspace_id=workspace.id,
            provider="sandbox",
            external_account_id="demo-brand",
            handle="@demo_brand@sandbox.local",
            access_token_encrypted=cipher.encrypt(f"sandbox-{secrets.token_urlsafe(16)}"),
            refresh_token_encrypted=cipher.encrypt(f"sandbox-refresh-{secrets.token_urlsafe(16)}"),
            token_expires_at=utcnow() + timedelta(days=5),  # refreshed by the daily job
            options=dict(SANDBOX_OPTIONS),
            status=AccountStatus.ACTIVE.value,
            connected_by=owner.id,
        )
        session.add(account)
        await session.flush()
        await notifications.send(
            owner.id,
            NotificationType.ACCOUNT_CONNECTED,
            "Sandbox account connected",
            f"{account.handle} is connected to {workspace.name}.",
            {"account_id": str(account.id), "workspace_id": str(workspace.id)},
            f"/workspaces/{workspace.id}/social-accounts/{account.id}",
            tenant_id=tenant.id,
        )

    else:
        account.options = dict(SANDBOX_OPTIONS)

    now = utcnow()
    first_sync = await session.scalar(
        select(WorkspaceSchedule).where(
            WorkspaceSchedule.workspace_id == workspace.id,
            WorkspaceSchedule.job_name == INBOX_SYNC_JOB,
        )
    )
    if first_sync is None:
        session.add(
            WorkspaceSchedule(workspace_id=workspace.id, job_name=INBOX_SYNC_JOB, next_run_at=now)
        )
    else:
        first_sync.next_run_at = now
    scheduled_at = (now + timedelta(minutes=2)).replace(microsecond=0)
    post = Post(
        tenant_id=tenant.id,
        workspace_id=workspace.id,
        author_id=editor.id,
        content="Hello from the notiflow demo! Scheduled two minutes ahead in Baku time.",
        status=PostStatus.SCHEDULED.value,
        scheduled_at=scheduled_at,
        scheduled_timezone=DEMO_TIMEZONE,
        submitted_at=now,
        reviewed_by=owner.id,
        reviewed_at=now,
    )
    session.add(post)
    await session.flush()
    session.add(
        PostTarget(
            post_id=post.id,
            social_account_id=account.id,
            workspace_id=workspace.id,
            status=TargetStatus.PENDING.value,
            next_attempt_at=scheduled_at,
        )
    )
    local = local_iso(scheduled_at, DEMO_TIMEZONE) or ""
    await notifications.send(
        editor.id,
        NotificationType.POST_SCHEDULED,
        "Post scheduled",
        f"Your post goes out at {local[11:16]} ({DEMO_TIMEZONE}).",
        {"post_id": str(post.id), "workspace_id": str(workspace.id), "scheduled_at": local},
        f"/workspaces/{workspace.id}/posts/{post.id}",
        tenant_id=tenant.id,
    )
    await session.flush()
    return DemoSeed(
        tenant_id=str(tenant.id),
        workspace_id=str(workspace.id),
        owner_token=await issue_token(session, owner.id, tenant.id, name="demo"),
        editor_token=await issue_token(session, editor.id, tenant.id, name="demo"),
        account_id=str(account.id),
        post_id=str(post.id),
        scheduled_at=scheduled_at.isoformat(),
        scheduled_at_local=local,
    )


async def _member(session: AsyncSession, tenant: str, email: str, name: str, role: Role) -> User:
    user = await session.scalar(select(User).where(User.email == email))
    if user is not None:
        member = await session.scalar(select(Membership).where(Membership.user_id == user.id))
        if member is not None:
            return user
    created = await create_user(session, tenant_name=tenant, email=email, name=name, role=role)
    return created.user
