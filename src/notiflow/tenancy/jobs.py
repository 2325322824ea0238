"""Tenancy jobs: ``tenancy.send_invitation`` emails an invitation's accept link.

Straight through the email sender (like the final notice of ``notiflow.privacy.deletion``): the
invitee may have no account, so there is no user for the notification outbox to deliver to.
The job takes the invitation's id, reloads it and re-checks it: one revoked, accepted or expired
since, or already emailed, is left alone, so a late or repeated run sends nothing. The token is
rebuilt from the id (see ``notiflow.tenancy.invitations``); nothing secret is in the payload.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import select

from notiflow.config import Settings
from notiflow.delivery.channels import DeliveryContext, Outcome
from notiflow.delivery.mail_folder import build_email_sender
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import Job, JobContext, JobPayload
from notiflow.kit.uow import unit_of_work
from notiflow.models import Invitation, Notification, Tenant, User
from notiflow.notifications.types import NotificationType
from notiflow.tenancy.invitations import SEND_JOB, accept_link, status_of

log = structlog.get_logger(__name__)


class InvitationPayload(JobPayload):
    invitation_id: uuid.UUID
    tenant_id: uuid.UUID


class InvitationNotSent(Exception):
    """The mail server did not take the invitation yet: the queue retries."""


async def send_invitation(context: JobContext, payload: InvitationPayload) -> None:
    settings = context.settings
    async with unit_of_work(context.sessionmaker) as session:
        invitation = await session.get(Invitation, payload.invitation_id)
        if invitation is None or invitation.emailed_at is not None:
            return
        if status_of(invitation) != "pending":
            log.info("invitation_not_emailed", invitation_id=str(invitation.id))
            return
        tenant_name = await session.scalar(
            select(Tenant.name).where(Tenant.id == invitation.tenant_id)
        )
        inviter = (
            await session.get(User, invitation.invited_by_id) if invitation.invited_by_id else None
        )
        existing = await session.scalar(select(User).where(User.email == invitation.email))
    # Not stored: someone without an account yet gets an email all the same.
    recipient = existing or User(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"invitation:{invitation.id}"),
        email=invitation.email,
        name=invitation.email.split("@")[0],
        locale="en",
        timezone="UTC",
    )
    notification = _email_of(invitation, tenant_name or "", inviter, settings)

    async def commit_point() -> None:
        await _mark_emailed(context, invitation.id)

    sender = build_email_sender(settings)
    try:
        result = await sender.send(
            DeliveryContext(
                delivery_id=invitation.id,
                attempt=1,
                notification=notification,
                user=recipient,
                settings=settings,
                sessionmaker=context.sessionmaker,
                commit_point=commit_point,
            )
        )
    finally:
        await sender.close()
    if result.outcome is Outcome.SENT:
        await _mark_emailed(context, invitation.id)
        return
    if result.outcome is Outcome.RETRY:
        raise InvitationNotSent(result.error or "the mail server did not accept the email yet")
    log.warning("invitation_email_failed", invitation_id=str(invitation.id), error=result.error)


def _email_of(
    invitation: Invitation, tenant_name: str, inviter: User | None, settings: Settings
) -> Notification:
    who = inviter.name if inviter is not None else "An administrator"
    link = accept_link(settings, invitation.id)
    expires = invitation.expires_at.strftime("%d %B %Y")
    return Notification(
        id=invitation.id,
        tenant_id=invitation.tenant_id,
        user_id=uuid.UUID(int=0),
        type=NotificationType.INVITATION_RECEIVED.value,
        channel="email",
        title=f"{who} invited you to join {tenant_name}",
        message=(
            f"{who} invited you to join {tenant_name} on notiflow as {invitation.role}. "
            f"Accept before {expires}: {link}"
        ),
        data={"invitation_id": str(invitation.id), "tenant_name": tenant_name},
        action_url=link,
        event_id=invitation.id,
        created_at=utcnow(),
    )


async def _mark_emailed(context: JobContext, invitation_id: uuid.UUID) -> None:
    async with unit_of_work(context.sessionmaker) as session:
        invitation = await session.get(Invitation, invitation_id, with_for_update=True)
        if invitation is not None and invitation.emailed_at is None:
            invitation.emailed_at = utcnow()


JOBS: list[Job[JobContext, Any]] = [
    Job(SEND_JOB, send_invitation, InvitationPayload, max_attempts=5, backoff_seconds=60.0),
]
