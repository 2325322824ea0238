"""Tenancy jobs: ``tenancy.send_invitation`` emails an invitation's accept link, and
``tenancy.sweep_invitations`` finds the invitations whose wake-up was lost.

Straight through the email sender (like the final notice of ``notiflow.privacy.deletion``): the
invitee may have no account, so there is no user for the notification outbox to deliver to.
The invitation row is the outbox instead: ``email_due_at`` says an email is wanted. The job
takes the invitation's id and claims the row (``email_due_at`` due or None, not emailed, still
pending), holding it for :data:`SEND_LEASE`: one revoked, accepted or expired since, already
emailed, or being sent by another run is left alone, so a late, repeated or concurrent run sends
nothing. A mail server that is not taking email yet gives the row back to the queue's retries
(``job_attempts``, stored); a refused address ends it. The sweep hands out again every row
still due :data:`LOST_WAKE_UP_AFTER` after its time: its wake-up never reached the queue (Redis
down at the time) or its run died. The token is rebuilt from the id (see
``notiflow.tenancy.invitations``); nothing secret is in the payload.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, or_, select, update

from notiflow.config import Settings
from notiflow.delivery.channels import DeliveryContext, Outcome
from notiflow.delivery.mail_folder import build_email_sender
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import Job, JobContext, JobPayload, NoPayload
from notiflow.kit.uow import unit_of_work
from notiflow.models import Invitation, Notification, Tenant, User
from notiflow.notifications.types import NotificationType
from notiflow.tenancy.invitations import SEND_JOB, SWEEP_JOB, accept_link

log = structlog.get_logger(__name__)

# How long a run holds an invitation: longer than any send (SMTP timeouts included).
SEND_LEASE = timedelta(minutes=10)
# A due invitation nobody claimed this long after its time lost its wake-up.
LOST_WAKE_UP_AFTER = timedelta(minutes=1)
SWEEP_LIMIT = 500


class InvitationPayload(JobPayload):
    invitation_id: uuid.UUID
    tenant_id: uuid.UUID


class InvitationNotSent(Exception):
    """The mail server did not take the invitation yet: the queue retries."""


def _wants_email(now: datetime) -> tuple[ColumnElement[bool], ...]:
    """Invitations still pending and not emailed yet."""
    return (
        Invitation.emailed_at.is_(None),
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > now,
    )


async def _claim(context: JobContext, invitation_id: uuid.UUID) -> bool:
    """Hold the invitation for this run, if it still wants its email and no run holds it."""
    now = utcnow()
    async with unit_of_work(context.sessionmaker) as session:
        claimed = await session.scalar(
            update(Invitation)
            .where(
                Invitation.id == invitation_id,
                *_wants_email(now),
                or_(Invitation.email_due_at.is_(None), Invitation.email_due_at <= now),
            )
            .values(email_due_at=now + SEND_LEASE)
            .returning(Invitation.id)
        )
    return claimed is not None


async def _release(context: JobContext, invitation_id: uuid.UUID) -> None:
    """Give the invitation back (to the queue's stored retries, or to nobody)."""
    async with unit_of_work(context.sessionmaker) as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.id == invitation_id, Invitation.emailed_at.is_(None))
            .values(email_due_at=None)
        )


async def send_invitation(context: JobContext, payload: InvitationPayload) -> None:
    if not await _claim(context, payload.invitation_id):
        log.info("invitation_not_emailed", invitation_id=str(payload.invitation_id))
        return
    try:
        await _send(context, payload)
    except Exception:
        # The queue's retry (or `notiflow jobs retry`) must find it free, not held for the
        # lease. Should that fail too (the database down), the lease runs out and the sweep
        # hands it out again.
        try:
            await _release(context, payload.invitation_id)
        except Exception:
            log.warning("invitation_release_failed", invitation_id=str(payload.invitation_id))
        raise


async def _send(context: JobContext, payload: InvitationPayload) -> None:
    settings = context.settings
    async with unit_of_work(context.sessionmaker) as session:
        invitation = await session.get(Invitation, payload.invitation_id)
        if invitation is None:
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
    await _release(context, invitation.id)
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
            invitation.email_due_at = None


async def sweep_invitations(context: JobContext, payload: NoPayload) -> None:
    """Wake the email job of every invitation whose wake-up was lost."""
    woken = await sweep_once(context)
    if woken:
        log.info("invitation_sweep", job=SWEEP_JOB, woken=woken)


async def sweep_once(context: JobContext, *, now: datetime | None = None) -> int:
    """Hand the queue the invitations due for longer than :data:`LOST_WAKE_UP_AFTER`; how many.
    The job claims each, so a wake-up handed out twice sends one email."""
    queue = context.queue
    if queue is None:
        return 0
    now = now or utcnow()
    async with unit_of_work(context.sessionmaker) as session:
        lost = (
            await session.execute(
                select(Invitation.id, Invitation.tenant_id)
                .where(*_wants_email(now), Invitation.email_due_at <= now - LOST_WAKE_UP_AFTER)
                .order_by(Invitation.email_due_at)
                .limit(SWEEP_LIMIT)
            )
        ).all()
    for invitation_id, tenant_id in lost:
        await queue.enqueue(
            SEND_JOB, InvitationPayload(invitation_id=invitation_id, tenant_id=tenant_id)
        )
    return len(lost)


JOBS: list[Job[JobContext, Any]] = [
    Job(SEND_JOB, send_invitation, InvitationPayload, max_attempts=5, backoff_seconds=60.0),
    Job(SWEEP_JOB, sweep_invitations, NoPayload),
]
