"""Erasing a user: the last email, then one transaction that deletes or
anonymizes everything about them, with a report of what was done.

What goes, what is anonymized and what stays (and why) is in ``docs/privacy.md``; in short:
personal rows are deleted, the workspace's content (posts, inbox items, connected social
accounts) stays without the link to the person, and audit history stays without who did it,
from where, or their email/name/phone inside it.

The final email goes straight over SMTP (the outbox needs the user row, which is about to go)
with a commit point like the outbox's: the request records "notice sent" right before the SMTP
server can accept the message, so a crash between the email and the deletion never sends it
twice; the retry goes straight to the deletion.
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.audit import service as audit
from notiflow.config import Settings
from notiflow.delivery.channels import DeliveryContext, Outcome
from notiflow.delivery.channels import SendResult as ChannelResult
from notiflow.delivery.mail_folder import build_email_sender
from notiflow.kit.ids import utcnow
from notiflow.kit.uow import unit_of_work
from notiflow.models import (
    AuditLog,
    DataDeletionRequest,
    DataExportRequest,
    IdempotencyKey,
    InboxItem,
    Invitation,
    Membership,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    PersonalAccessToken,
    Post,
    PushSubscription,
    SocialAccount,
    User,
)
from notiflow.notifications.types import NotificationType

log = structlog.get_logger(__name__)

REDACTED = "[deleted user]"
AUDIT_PAGE = 1_000
NOTICE_KEY = "final_notice"


# ---------------------------------------------------------------------------------- the email


def final_notice(user: User, request: DataDeletionRequest) -> Notification:
    """The last message to the user, as a notification that is never stored (no user row will
    be left to hold it)."""
    requested = request.created_at.strftime("%d %B %Y")
    return Notification(
        id=request.id,
        tenant_id=request.tenant_id or uuid.UUID(int=0),
        user_id=user.id,
        type=NotificationType.DATA_DELETION_COMPLETED.value,
        channel="email",
        title="Your account has been deleted",
        message=(
            f"As you asked on {requested}, we are deleting your account and the personal data we "
            "hold about you now. This is the last email you will receive from us. Posts you "
            "wrote for your workspaces stay with those workspaces, without your name; the audit "
            "history keeps what was done but no longer who did it. Nothing else is kept."
        ),
        data={"deletion_request_id": str(request.id)},
        action_url=None,
        event_id=request.id,
        created_at=utcnow(),
    )


async def send_final_notice(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    user: User,
    request: DataDeletionRequest,
) -> dict[str, Any]:
    """Email the user that the deletion is happening; what happened, for the report.

    Sent whatever the user's email switches say: it is the answer to their own request, not a
    notification they can opt out of. A message the server refuses for good (unknown address)
    does not stop the deletion; one that may go through later raises, so the job retries.
    """
    handed_over = False

    async def commit_point() -> None:
        nonlocal handed_over
        await _record_notice(sessionmaker, request.id, {"status": "sent", "at": _now_iso()})
        handed_over = True

    sender = build_email_sender(settings)
    try:
        result: ChannelResult = await sender.send(
            DeliveryContext(
                # The request id makes the Message-ID: every try of this email is the same message.
                delivery_id=request.id,
                attempt=1,
                notification=final_notice(user, request),
                user=user,
                settings=settings,
                sessionmaker=sessionmaker,
                commit_point=commit_point,
            )
        )
    finally:
        await sender.close()
    if result.outcome is Outcome.SENT:
        notice = {"status": "sent", "at": _now_iso(), "message_id": result.provider_message_id}
        await _record_notice(sessionmaker, request.id, notice)
        return notice
    if handed_over:
        # Recorded at the commit point, but the server said no after all: take it back.
        await _record_notice(sessionmaker, request.id, None)
    if result.outcome is Outcome.RETRY:
        raise FinalNoticeNotSent(result.error or "the mail server did not accept the email yet")
    notice = {"status": "failed", "at": _now_iso(), "error": result.error}
    await _record_notice(sessionmaker, request.id, notice)
    return notice


class FinalNoticeNotSent(Exception):
    """The final email could not go out yet (mail server down or deferring): retry later."""


async def _record_notice(
    sessionmaker: async_sessionmaker[AsyncSession],
    request_id: uuid.UUID,
    notice: dict[str, Any] | None,
) -> None:
    async with unit_of_work(sessionmaker) as session:
        request = await session.get(DataDeletionRequest, request_id, with_for_update=True)
        if request is None:  # pragma: no cover - the request row is never deleted
            return
        report = dict(request.report or {})
        if notice is None:
            report.pop(NOTICE_KEY, None)
        else:
            report[NOTICE_KEY] = notice
        request.report = report


# ---------------------------------------------------------------------------------- the erasure


async def erase_user(session: AsyncSession, settings: Settings, user: User) -> dict[str, int]:
    """Delete and anonymize everything about ``user`` in the session's transaction (the caller
    commits). Returns counts per table. Files are not touched here: they go after commit."""
    user_id = user.id
    report: dict[str, int] = {}

    async def run(name: str, statement: Any) -> None:
        result = await session.execute(statement.execution_options(synchronize_session=False))
        report[name] = int(getattr(result, "rowcount", 0) or 0)

    tenant_ids = list(
        (
            await session.scalars(select(Membership.tenant_id).where(Membership.user_id == user_id))
        ).all()
    )
    # Deliveries first: they have no key to the user to cascade from, only to the notification.
    await run(
        "notification_deliveries",
        delete(NotificationDelivery).where(NotificationDelivery.user_id == user_id),
    )
    await run("notifications", delete(Notification).where(Notification.user_id == user_id))
    await run(
        "notification_preferences",
        delete(NotificationPreference).where(NotificationPreference.user_id == user_id),
    )
    await run(
        "push_subscriptions", delete(PushSubscription).where(PushSubscription.user_id == user_id)
    )
    await run(
        "personal_access_tokens",
        delete(PersonalAccessToken).where(PersonalAccessToken.user_id == user_id),
    )
    await run("idempotency_keys", delete(IdempotencyKey).where(IdempotencyKey.user_id == user_id))
    await run(
        "data_export_requests",
        delete(DataExportRequest).where(DataExportRequest.user_id == user_id),
    )
    await run("memberships", delete(Membership).where(Membership.user_id == user_id))
    # Invitations to their address hold it in clear; the ones they sent only lose the link
    # (invited_by_id is SET NULL by the foreign key).
    await run("invitations", delete(Invitation).where(Invitation.email == user.email))
    now = utcnow()
    # The workspace's content stays; only the link to the person goes.
    await run(
        "posts_authored_unlinked",
        update(Post).where(Post.author_id == user_id).values(author_id=None, updated_at=now),
    )
    await run(
        "posts_reviewed_unlinked",
        update(Post).where(Post.reviewed_by == user_id).values(reviewed_by=None, updated_at=now),
    )
    await run(
        "inbox_items_unassigned",
        update(InboxItem)
        .where(InboxItem.assigned_to == user_id)
        .values(assigned_to=None, assigned_at=None),
    )
    await run(
        "social_accounts_unlinked",
        update(SocialAccount)
        .where(SocialAccount.connected_by == user_id)
        .values(connected_by=None, updated_at=now),
    )
    await run(
        "audit_logs_anonymized",
        update(AuditLog).where(AuditLog.actor_id == user_id).values(actor_id=None, ip_address=None),
    )
    report["audit_logs_scrubbed"] = await scrub_audit_details(session, user, tenant_ids)
    await run("users", delete(User).where(User.id == user_id))
    return report


def personal_values(user: User) -> list[str]:
    """The strings that identify the user, as they may appear inside audit details."""
    values = [user.email, user.name, user.phone_number or ""]
    return [value.strip().lower() for value in values if value and len(value.strip()) >= 3]


def scrub(value: Any, needles: list[str], exact: set[str]) -> Any:
    """``value`` with every string that is, or contains, one of the user's identifiers replaced.

    Emails and phone numbers are replaced wherever they appear in a string; the name only where
    it is the whole string (a name like "Ann" inside free text is too likely to be someone or
    something else).
    """
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in exact or any(needle in lowered for needle in needles):
            return REDACTED
        return value
    if isinstance(value, dict):
        return {key: scrub(item, needles, exact) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item, needles, exact) for item in value]
    return value


async def scrub_audit_details(
    session: AsyncSession, user: User, tenant_ids: list[uuid.UUID]
) -> int:
    """Remove the user's email, phone and name from the before/after of audit entries about
    them or in their organizations; returns how many entries changed."""
    identifiers = personal_values(user)
    if not identifiers:
        return 0
    needles = [value for value in (user.email, user.phone_number) if value]
    needles = [value.strip().lower() for value in needles if len(value.strip()) >= 3]
    exact = set(identifiers)
    user_text = str(user.id)
    about_user = or_(
        AuditLog.subject_id == user_text,
        AuditLog.subject_id.like(f"{user_text}:%"),
        AuditLog.actor_id == user.id,
    )
    scope = about_user if not tenant_ids else or_(about_user, AuditLog.tenant_id.in_(tenant_ids))
    changed = 0
    last: uuid.UUID | None = None
    while True:
        query = (
            select(AuditLog.id, AuditLog.before, AuditLog.after)
            .where(scope, or_(AuditLog.before.is_not(None), AuditLog.after.is_not(None)))
            .order_by(AuditLog.id)
            .limit(AUDIT_PAGE)
        )
        if last is not None:
            query = query.where(AuditLog.id > last)
        rows = (await session.execute(query)).all()
        if not rows:
            return changed
        for entry_id, before, after in rows:
            new_before, new_after = scrub(before, needles, exact), scrub(after, needles, exact)
            if new_before != before or new_after != after:
                await session.execute(
                    update(AuditLog)
                    .where(AuditLog.id == entry_id)
                    .values(before=new_before, after=new_after)
                    .execution_options(synchronize_session=False)
                )
                changed += 1
        last = rows[-1][0]
        if len(rows) < AUDIT_PAGE:
            return changed


async def record_deletion(
    session: AsyncSession,
    request: DataDeletionRequest,
    tenant_ids: list[uuid.UUID | None],
    report: dict[str, Any],
) -> None:
    """Audit the deletion in each organization the user was in, naming no one: the request id
    and the counts."""
    for tenant_id in tenant_ids or [request.tenant_id]:
        await audit.record(
            session,
            action="data_deletion.completed",
            subject_type="data_deletion_request",
            subject_id=request.id,
            before=None,
            after={"status": "completed", "counts": report},
            actor_id=None,
            tenant_id=tenant_id,
        )


def _now_iso() -> str:
    return utcnow().isoformat().replace("+00:00", "Z")
