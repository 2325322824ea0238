"""Invitations by email to join a tenant: create, list, revoke, send, accept.

The token is never stored. It is an HMAC of the invitation's id under ``NOTIFLOW_SECRET_KEY``,
so the database holds only its SHA-256 (a leaked table accepts nothing) while the email job can
rebuild it from the id alone: nothing secret travels in the job payload. Revoking, accepting or
the end of ``NOTIFLOW_INVITATION_TTL_DAYS`` makes it useless (single use: acceptance locks the
row). Whoever accepts proves they read the email (the token); for an email that already has an
account they must also prove they own it (their bearer token or their password), so a token
forwarded to someone else cannot attach that account to a tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta

import anyio.to_thread
import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import Actor, AuthenticatedActor
from notiflow.auth.service import hash_password, issue_token, verify_password
from notiflow.config import Settings
from notiflow.kit.errors import Conflict, Forbidden, NotFound, Unauthorized
from notiflow.kit.ids import utcnow
from notiflow.kit.pagination import Page
from notiflow.kit.tenant_scope import get_in_tenant, in_tenant
from notiflow.models import Invitation, Membership, Tenant, User
from notiflow.models.tenancy import Role
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationChannel, NotificationType
from notiflow.tenancy.service import admin_user_ids

log = structlog.get_logger(__name__)

SEND_JOB = "tenancy.send_invitation"
SWEEP_JOB = "tenancy.sweep_invitations"


def invitation_token(settings: Settings, invitation_id: uuid.UUID) -> str:
    """The invitation's token: ``<id>.<signature>``, URL-safe."""
    signature = hmac.new(
        settings.secret_key.encode(), b"invitation:" + invitation_id.bytes, hashlib.sha256
    ).digest()
    return f"{invitation_id.hex}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def accept_link(settings: Settings, invitation_id: uuid.UUID) -> str:
    """Where the invitee accepts: the app's page, which posts the token to the API."""
    base = settings.public_url.rstrip("/")
    return f"{base}/invitations/accept?token={invitation_token(settings, invitation_id)}"


def status_of(invitation: Invitation) -> str:
    if invitation.accepted_at is not None:
        return "accepted"
    if invitation.revoked_at is not None:
        return "revoked"
    if invitation.expires_at <= utcnow():
        return "expired"
    return "pending"


async def create_invitation(
    session: AsyncSession,
    settings: Settings,
    actor: Actor,
    tenant_id: uuid.UUID,
    *,
    email: str,
    role: Role,
    notifications: NotificationService | None,
    send_email: bool = True,
) -> Invitation:
    """Invite ``email`` with ``role``. 409 when they are a member already or have a pending
    invitation. An invitee who already has an account is told in-app too (``notifications``;
    None from the CLI, which has no runtime to deliver with). With ``send_email`` the email is
    due at once: the caller wakes the ``tenancy.send_invitation`` job after commit, and should
    that wake-up be lost, the sweep (``tenancy.sweep_invitations``) finds the invitation."""
    if actor.role is not None and not actor.is_admin:
        raise Forbidden("only tenant owners and admins may invite")
    if role is Role.OWNER and actor.role is not None and actor.role is not Role.OWNER:
        raise Forbidden("only an owner may invite an owner", code="owner_required")
    email = email.strip().lower()
    user = await session.scalar(select(User).where(User.email == email))
    if user is not None:
        member = await session.scalar(
            select(Membership.id).where(
                in_tenant(Membership, tenant_id), Membership.user_id == user.id
            )
        )
        if member is not None:
            raise Conflict(f"{email} is already a member of this tenant", code="already_member")
    pending = await session.scalar(
        select(Invitation.id).where(
            in_tenant(Invitation, tenant_id),
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > utcnow(),
        )
    )
    if pending is not None:
        raise Conflict(
            f"{email} already has a pending invitation: revoke it to send a new one",
            code="already_invited",
            details={"invitation_id": str(pending)},
        )
    invitation = Invitation(
        id=uuid.uuid4(),
        tenant_id=tenant_id,
        email=email,
        role=role.value,
        invited_by_id=actor.user_id,
        expires_at=utcnow() + timedelta(days=settings.invitation_ttl_days),
        email_due_at=utcnow() if send_email else None,
    )
    invitation.token_hash = token_digest(invitation_token(settings, invitation.id))
    session.add(invitation)
    await session.flush()
    await audit.record(
        session,
        action="invitation.created",
        subject_type="invitation",
        subject_id=invitation.id,
        before=None,
        after={"email": email, "role": role.value},
        actor_id=actor.user_id,
        tenant_id=tenant_id,
        ip_address=actor.ip_address,
    )
    if user is not None and notifications is not None:
        await _tell_existing_user(session, notifications, invitation, user)
    return invitation


async def _tell_existing_user(
    session: AsyncSession,
    notifications: NotificationService,
    invitation: Invitation,
    user: User,
) -> None:
    # The invitee is not a member of the inviting tenant yet: the in-app notice lands in their
    # own (oldest) tenant's feed. In-app only: the email with the accept link is the job's. The
    # token itself is never put in a notification (those rows are stored in clear).
    home = await session.scalar(
        select(Membership.tenant_id)
        .where(Membership.user_id == user.id)
        .order_by(Membership.created_at)
        .limit(1)
    )
    if home is None:
        return
    tenant_name = await session.scalar(select(Tenant.name).where(Tenant.id == invitation.tenant_id))
    await notifications.send(
        user.id,
        NotificationPayload(
            type=NotificationType.INVITATION_RECEIVED,
            title=f"You are invited to join {tenant_name}",
            message=(
                f"You are invited to join {tenant_name} as {invitation.role}. "
                "Use the link in the email we sent you to accept."
            ),
            data=_invitation_data(invitation, tenant_name or ""),
        ),
        channels=[NotificationChannel.IN_APP],
        tenant_id=home,
    )


def _invitation_data(invitation: Invitation, tenant_name: str) -> dict[str, str]:
    return {
        "invitation_id": str(invitation.id),
        "tenant_id": str(invitation.tenant_id),
        "tenant_name": tenant_name,
        "role": invitation.role,
    }


async def list_invitations(
    session: AsyncSession, tenant_id: uuid.UUID, *, page: int = 1, per_page: int = 50
) -> Page[Invitation]:
    """The tenant's invitations, newest first (every status)."""
    query = select(Invitation).where(in_tenant(Invitation, tenant_id))
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = (
        await session.scalars(
            query.order_by(Invitation.created_at.desc(), Invitation.id)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    ).all()
    return Page(items=list(rows), per_page=per_page, next_cursor=None, page=page, total=total or 0)


async def revoke_invitation(
    session: AsyncSession, actor: AuthenticatedActor, invitation_id: uuid.UUID
) -> Invitation:
    """Revoke a pending invitation (its link stops working). Revoking twice changes nothing;
    an accepted one is a 409 (remove the member instead)."""
    invitation = await get_in_tenant(
        session, Invitation, invitation_id, actor.tenant_id, what="invitation"
    )
    if invitation.accepted_at is not None:
        raise Conflict(
            "this invitation was accepted: remove the member instead", code="invitation_used"
        )
    if invitation.revoked_at is not None:
        return invitation
    before = status_of(invitation)
    invitation.revoked_at = utcnow()
    await session.flush()
    await audit.record(
        session,
        action="invitation.revoked",
        subject_type="invitation",
        subject_id=invitation.id,
        before={"status": before},
        after={"status": "revoked"},
        actor_id=actor.user_id,
        tenant_id=actor.tenant_id,
        ip_address=actor.ip_address,
    )
    return invitation


@dataclass(frozen=True, slots=True)
class Accepted:
    invitation: Invitation
    user: User
    token: str
    user_created: bool


async def accept_invitation(
    session: AsyncSession,
    notifications: NotificationService,
    *,
    token: str,
    name: str | None,
    password: str | None,
    caller: AuthenticatedActor | None,
    ip_address: str | None,
) -> Accepted:
    """Join the tenant with the invitation's role and get a bearer token for it.

    A new email needs ``password`` (so the account can sign in again) and may give ``name``.
    An existing account must prove it is theirs: a bearer token of that user, or its password
    (401 otherwise). Unknown token 404; used, revoked or expired 409 with the reason's code.
    """
    invitation = await session.scalar(
        select(Invitation).where(Invitation.token_hash == token_digest(token)).with_for_update()
    )
    if invitation is None:
        raise NotFound("invitation not found: check the link", code="invitation_not_found")
    status = status_of(invitation)
    if status != "pending":
        reasons = {
            "accepted": "this invitation was already used",
            "revoked": "this invitation was revoked: ask for a new one",
            "expired": "this invitation has expired: ask for a new one",
        }
        raise Conflict(reasons[status], code=f"invitation_{status}")
    user = await session.scalar(select(User).where(User.email == invitation.email))
    created = user is None
    if user is None:
        if not password:
            raise Unauthorized("choose a password for your new account", code="password_required")
        user = User(
            email=invitation.email,
            name=(name or "").strip() or invitation.email.split("@")[0],
            password_hash=await anyio.to_thread.run_sync(hash_password, password),
        )
        session.add(user)
        await session.flush()
    else:
        await _check_owner_of(user, caller, password)
        member = await session.scalar(
            select(Membership.id).where(
                in_tenant(Membership, invitation.tenant_id), Membership.user_id == user.id
            )
        )
        if member is not None:
            raise Conflict("you are already a member of this tenant", code="already_member")
    session.add(Membership(tenant_id=invitation.tenant_id, user_id=user.id, role=invitation.role))
    invitation.accepted_at = utcnow()
    invitation.accepted_user_id = user.id
    await session.flush()
    await audit.record(
        session,
        action="invitation.accepted",
        subject_type="invitation",
        subject_id=invitation.id,
        before={"status": "pending"},
        after={"status": "accepted", "user_id": str(user.id), "user_created": created},
        actor_id=user.id,
        tenant_id=invitation.tenant_id,
        ip_address=ip_address,
    )
    await audit.record(
        session,
        action="member.added",
        subject_type="user",
        subject_id=user.id,
        before=None,
        after={"role": invitation.role, "invitation_id": str(invitation.id)},
        actor_id=user.id,
        tenant_id=invitation.tenant_id,
        ip_address=ip_address,
    )
    await _tell_the_team(session, notifications, invitation, user)
    bearer = await issue_token(session, user.id, invitation.tenant_id, name="invitation")
    return Accepted(invitation=invitation, user=user, token=bearer, user_created=created)


async def _check_owner_of(
    user: User, caller: AuthenticatedActor | None, password: str | None
) -> None:
    if caller is not None and caller.user_id == user.id:
        return
    if password:
        matches: bool = await anyio.to_thread.run_sync(
            verify_password, user.password_hash, password
        )
        if matches:
            return
    raise Unauthorized(
        "this email already has an account: sign in as that user (bearer token) or give its "
        "password to accept",
        code="login_required",
    )


async def _tell_the_team(
    session: AsyncSession,
    notifications: NotificationService,
    invitation: Invitation,
    user: User,
) -> None:
    tenant_name = await session.scalar(select(Tenant.name).where(Tenant.id == invitation.tenant_id))
    data = {**_invitation_data(invitation, tenant_name or ""), "user_id": str(user.id)}
    admins = set(await admin_user_ids(session, invitation.tenant_id))
    inviter = invitation.invited_by_id
    if inviter is not None and inviter in admins:
        await notifications.send(
            inviter,
            NotificationPayload(
                type=NotificationType.INVITATION_ACCEPTED,
                title=f"{user.name} accepted your invitation",
                message=f"{user.name} ({user.email}) joined {tenant_name} as {invitation.role}.",
                data=data,
            ),
            tenant_id=invitation.tenant_id,
        )
    others = sorted(admins - {user.id, inviter} if inviter else admins - {user.id})
    if others:
        await notifications.send_to_users(
            others,
            NotificationPayload(
                type=NotificationType.MEMBER_ADDED,
                title=f"{user.name} joined {tenant_name}",
                message=f"{user.name} ({user.email}) joined {tenant_name} as {invitation.role}.",
                data=data,
            ),
            tenant_id=invitation.tenant_id,
        )
