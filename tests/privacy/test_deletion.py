"""Data deletion: scheduling with a grace period, cancelling, and the erasure itself (with the
final email received by a real SMTP server before the account is gone)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.config import Settings
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import (
    AuditLog,
    DataDeletionRequest,
    DataExportRequest,
    IdempotencyKey,
    InboxItem,
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
from notiflow.models.platform import RequestStatus
from notiflow.models.tenancy import Role
from notiflow.privacy import jobs as privacy_jobs
from notiflow.privacy.deletion import FinalNoticeNotSent
from notiflow.privacy.jobs import delete_data, export_data
from notiflow.privacy.service import RequestPayload
from tests.conftest import MakeMember
from tests.delivery.conftest import SmtpServer
from tests.privacy.conftest import RecordingQueue, seed_person

USER_TABLES: list[tuple[Any, Any]] = [
    (Notification, Notification.user_id),
    (NotificationDelivery, NotificationDelivery.user_id),
    (NotificationPreference, NotificationPreference.user_id),
    (PushSubscription, PushSubscription.user_id),
    (PersonalAccessToken, PersonalAccessToken.user_id),
    (Membership, Membership.user_id),
    (IdempotencyKey, IdempotencyKey.user_id),
    (DataExportRequest, DataExportRequest.user_id),
    (User, User.id),
]


async def _count(session: AsyncSession, column: Any, user_id: uuid.UUID) -> int:
    return int(await session.scalar(select(func.count()).where(column == user_id)) or 0)


async def _make_due(runtime: Runtime, request_id: str) -> None:
    async with runtime.sessionmaker() as session:
        request = await session.get(DataDeletionRequest, uuid.UUID(request_id))
        assert request is not None
        request.scheduled_for = utcnow() - timedelta(seconds=1)
        await session.commit()


async def _request(runtime: Runtime, request_id: str) -> DataDeletionRequest:
    async with runtime.sessionmaker() as session:
        request = await session.get(DataDeletionRequest, uuid.UUID(request_id))
    assert request is not None
    return request


def _iso_to_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_the_only_owner_of_an_organization_with_members_cannot_delete_themselves(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    await make_member("acme")
    refused = await client.post("/api/v1/me/data-deletion", headers=owner.headers)
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "sole_owner"
    assert "acme" in error["message"]
    async with privacy_runtime.sessionmaker() as session:
        assert (await session.scalars(select(DataDeletionRequest))).all() == []

    # With a second owner (or alone in the organization) the request is accepted.
    await make_member("acme", role=Role.OWNER)
    accepted = await client.post("/api/v1/me/data-deletion", headers=owner.headers)
    assert accepted.status_code == 202, accepted.text
    loner = await make_member("solo-shop", role=Role.OWNER)
    alone = await client.post("/api/v1/me/data-deletion", headers=loner.headers)
    assert alone.status_code == 202, alone.text


async def test_a_deletion_is_scheduled_after_the_grace_period_and_the_user_is_told(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    queue: RecordingQueue,
) -> None:
    member = await make_member("acme")
    before = utcnow()
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    assert response.status_code == 202, response.text
    body = response.json()["data"]
    assert body["status"] == "pending"
    assert body["can_cancel"] is True
    scheduled_for = _iso_to_datetime(body["scheduled_for"])
    assert before + timedelta(days=14) <= scheduled_for <= utcnow() + timedelta(days=14)
    # Not due yet: nothing is woken now; the sweep starts it when the grace period ends.
    assert queue.named("privacy.delete") == []

    again = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    assert again.status_code == 200
    assert again.json()["data"]["id"] == body["id"]
    shown = await client.get("/api/v1/me/data-deletion", headers=member.headers)
    assert shown.json()["data"]["id"] == body["id"]

    async with privacy_runtime.sessionmaker() as session:
        notices = list(
            (
                await session.scalars(
                    select(Notification).where(
                        Notification.user_id == member.id,
                        Notification.type == "data_deletion_scheduled",
                    )
                )
            ).all()
        )
        email = await session.scalar(
            select(NotificationDelivery).where(
                NotificationDelivery.user_id == member.id, NotificationDelivery.channel == "email"
            )
        )
    assert len(notices) == 1
    assert scheduled_for.strftime("%d %B %Y") in notices[0].message
    assert "cancel" in notices[0].message
    assert notices[0].data is not None
    assert notices[0].data["deletion_request_id"] == body["id"]
    assert email is not None
    assert email.status == "pending"


async def test_no_deletion_request_is_404(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    shown = await client.get("/api/v1/me/data-deletion", headers=member.headers)
    assert shown.status_code == 404
    assert shown.json()["error"]["code"] == "no_deletion_request"
    cancelled = await client.delete("/api/v1/me/data-deletion", headers=member.headers)
    assert cancelled.status_code == 404


async def test_a_cancelled_deletion_does_nothing_when_its_job_runs(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
) -> None:
    member = await make_member("acme")
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    request_id = response.json()["data"]["id"]

    cancelled = await client.delete("/api/v1/me/data-deletion", headers=member.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["data"]["status"] == "cancelled"
    assert cancelled.json()["data"]["cancelled_at"] is not None
    assert (
        await client.delete("/api/v1/me/data-deletion", headers=member.headers)
    ).status_code == 404

    await _make_due(privacy_runtime, request_id)
    await delete_data(privacy_runtime, RequestPayload(request_id=request_id))

    assert smtp_server.received == []
    async with privacy_runtime.sessionmaker() as session:
        assert await session.get(User, member.id) is not None
        audit_actions = set(
            (
                await session.scalars(
                    select(AuditLog.action).where(AuditLog.subject_id == request_id)
                )
            ).all()
        )
    assert audit_actions == {"data_deletion.requested", "data_deletion.cancelled"}
    assert (await _request(privacy_runtime, request_id)).status == "cancelled"
    # The account works as before, and a new request may be made.
    again = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    assert again.status_code == 202
    assert again.json()["data"]["id"] != request_id


async def test_a_deletion_under_way_cannot_be_cancelled(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    request_id = response.json()["data"]["id"]
    async with privacy_runtime.sessionmaker() as session:
        request = await session.get(DataDeletionRequest, uuid.UUID(request_id))
        assert request is not None
        request.status = RequestStatus.PROCESSING.value
        await session.commit()
    refused = await client.post("/api/v1/me/data-deletion/cancel", headers=member.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "deletion_in_progress"


async def test_a_due_deletion_erases_the_user_after_the_final_email_and_spares_everyone_else(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ann = await seed_person(privacy_runtime, make_member, "acme", "ann")
    bob = await seed_person(privacy_runtime, make_member, "acme", "bob")
    cat = await seed_person(privacy_runtime, make_member, "globex", "cat")
    # Ann has a finished export on disk, and a colleague's audit entry names her.
    exported = await client.post("/api/v1/me/data-export", headers=ann.member.headers)
    await export_data(privacy_runtime, RequestPayload(request_id=exported.json()["data"]["id"]))
    export_dir = Path(privacy_runtime.settings.storage_dir) / "exports" / str(ann.id)
    assert any(export_dir.iterdir())
    async with privacy_runtime.sessionmaker() as session:
        session.add(
            AuditLog(
                tenant_id=bob.member.tenant_id,
                actor_id=bob.id,
                action="member.role_changed",
                subject_type="membership",
                subject_id=str(uuid.uuid4()),
                before={"member": ann.email, "role": "member"},
                after={"member": ann.email, "role": "admin", "note": f"asked by {ann.email}"},
                ip_address="198.51.100.9",
            )
        )
        await session.commit()

    response = await client.post("/api/v1/me/data-deletion", headers=ann.member.headers)
    request_id = response.json()["data"]["id"]
    await _make_due(privacy_runtime, request_id)

    # Watch the moment the erasure starts: the email must be in the mailbox and the user row
    # still there (so the email could be addressed).
    seen_at_erasure: dict[str, Any] = {}
    real_erase: Callable[..., Awaitable[dict[str, int]]] = privacy_jobs.erase_user

    async def watching_erase(
        session: AsyncSession, settings: Settings, user: User
    ) -> dict[str, int]:
        seen_at_erasure["mails"] = [mail.rcpt_tos for mail in smtp_server.received]
        seen_at_erasure["user_exists"] = await session.get(User, user.id) is not None
        return await real_erase(session, settings, user)

    monkeypatch.setattr(privacy_jobs, "erase_user", watching_erase)
    await delete_data(privacy_runtime, RequestPayload(request_id=request_id))

    assert seen_at_erasure == {"mails": [[ann.email]], "user_exists": True}
    (mail,) = smtp_server.received
    message = mail.message
    assert message["Subject"] == "Your account has been deleted"
    assert message["Message-ID"] == f"<{request_id}@notiflow.example>"
    text = message.get_body(("plain",))
    assert text is not None
    assert "last email" in text.get_content()

    request = await _request(privacy_runtime, request_id)
    assert request.status == "completed"
    assert request.completed_at is not None
    assert request.report["final_notice"]["status"] == "sent"
    counts = request.report["counts"]
    assert counts["users"] == 1
    assert counts["notifications"] == 3  # the mention, "export ready", "deletion scheduled"
    assert counts["notification_deliveries"] >= 3
    assert counts["notification_preferences"] == 1
    assert counts["push_subscriptions"] == 1
    assert counts["personal_access_tokens"] == 1
    assert counts["memberships"] == 1
    assert counts["data_export_requests"] == 1
    assert counts["posts_authored_unlinked"] == 1
    assert counts["inbox_items_unassigned"] == 1
    assert counts["social_accounts_unlinked"] == 1
    assert counts["audit_logs_anonymized"] == 3  # settings change, export and deletion asked
    assert counts["audit_logs_scrubbed"] >= 2
    assert request.report["export_files"] == 1

    async with privacy_runtime.sessionmaker() as session:
        for _model, column in USER_TABLES:
            assert await _count(session, column, ann.id) == 0, column
            for other in (bob, cat):
                if column is not IdempotencyKey.user_id and column is not DataExportRequest.user_id:
                    assert await _count(session, column, other.id) >= 1, (column, other.tag)
        # The workspace keeps its content, without the link to Ann.
        post = await session.get(Post, ann.post_id)
        assert post is not None
        assert post.author_id is None
        assert post.content == "post by ann"
        item = await session.get(InboxItem, ann.inbox_item_id)
        assert item is not None
        assert item.assigned_to is None
        assert item.assigned_at is None
        account = await session.get(SocialAccount, ann.social_account_id)
        assert account is not None
        assert account.connected_by is None
        for other in (bob, cat):
            post = await session.get(Post, other.post_id)
            assert post is not None
            assert post.author_id == other.id
            account = await session.get(SocialAccount, other.social_account_id)
            assert account is not None
            assert account.connected_by == other.id
        # Audit history stays, without who did it, from where, or her email inside it.
        entries = list((await session.scalars(select(AuditLog))).all())
    assert not [entry for entry in entries if entry.actor_id == ann.id]
    her_settings = [
        entry
        for entry in entries
        if entry.action == "user.notification_settings.updated" and entry.subject_id == str(ann.id)
    ]
    assert len(her_settings) == 1
    assert her_settings[0].actor_id is None
    assert her_settings[0].ip_address is None
    assert her_settings[0].after == {
        "email": "[deleted user]",
        "email_notifications_enabled": False,
    }
    role_change = next(entry for entry in entries if entry.action == "member.role_changed")
    assert role_change.actor_id == bob.id
    assert role_change.ip_address == "198.51.100.9"
    assert role_change.after == {
        "member": "[deleted user]",
        "role": "admin",
        "note": "[deleted user]",
    }
    bobs = [
        entry
        for entry in entries
        if entry.actor_id == bob.id and entry.action == "user.notification_settings.updated"
    ]
    assert bobs[0].ip_address == "203.0.113.7"
    assert bobs[0].after == {"email": bob.email, "email_notifications_enabled": False}
    # The deletion itself is audited, naming no one.
    (completed,) = [entry for entry in entries if entry.action == "data_deletion.completed"]
    assert completed.actor_id is None
    assert completed.ip_address is None
    assert completed.tenant_id == ann.member.tenant_id
    assert ann.email not in str(completed.after)
    assert str(ann.id) not in str(completed.after)
    # Her files are gone.
    assert not export_dir.exists()

    # Running the job again does nothing, and sends nothing.
    await delete_data(privacy_runtime, RequestPayload(request_id=request_id))
    assert len(smtp_server.received) == 1


async def test_a_crash_after_the_email_does_not_send_it_twice(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    member = await make_member("acme")
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    request_id = response.json()["data"]["id"]
    await _make_due(privacy_runtime, request_id)

    real_erase = privacy_jobs.erase_user

    async def crashing_erase(
        session: AsyncSession, settings: Settings, user: User
    ) -> dict[str, int]:
        raise ConnectionError("database went away")

    monkeypatch.setattr(privacy_jobs, "erase_user", crashing_erase)
    with pytest.raises(ConnectionError):
        await delete_data(privacy_runtime, RequestPayload(request_id=request_id))
    assert len(smtp_server.received) == 1
    failed = await _request(privacy_runtime, request_id)
    assert failed.status == "failed"
    assert failed.error == "ConnectionError: database went away"
    assert failed.report["final_notice"]["status"] == "sent"
    async with privacy_runtime.sessionmaker() as session:
        assert await session.get(User, member.id) is not None

    # The retry (the queue's backoff) goes straight to the deletion.
    monkeypatch.setattr(privacy_jobs, "erase_user", real_erase)
    await delete_data(privacy_runtime, RequestPayload(request_id=request_id))
    assert len(smtp_server.received) == 1
    done = await _request(privacy_runtime, request_id)
    assert done.status == "completed"
    async with privacy_runtime.sessionmaker() as session:
        assert await session.get(User, member.id) is None


async def test_no_email_no_deletion_while_the_mail_server_is_down(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
) -> None:
    member = await make_member("acme")
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    request_id = response.json()["data"]["id"]
    await _make_due(privacy_runtime, request_id)

    smtp_server.stop()
    with pytest.raises(FinalNoticeNotSent):
        await delete_data(privacy_runtime, RequestPayload(request_id=request_id))
    request = await _request(privacy_runtime, request_id)
    assert request.status == "failed"
    assert "final_notice" not in request.report
    async with privacy_runtime.sessionmaker() as session:
        assert await session.get(User, member.id) is not None

    smtp_server.start()
    await delete_data(privacy_runtime, RequestPayload(request_id=request_id))
    assert [mail.rcpt_tos for mail in smtp_server.received] == [[member.user.email]]
    assert (await _request(privacy_runtime, request_id)).status == "completed"


async def test_an_address_the_server_refuses_for_good_does_not_block_the_deletion(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
) -> None:
    member = await make_member("acme")
    smtp_server.refuse(member.user.email, "550 5.1.1 no such mailbox")
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    request_id = response.json()["data"]["id"]
    await _make_due(privacy_runtime, request_id)

    await delete_data(privacy_runtime, RequestPayload(request_id=request_id))

    request = await _request(privacy_runtime, request_id)
    assert request.status == "completed"
    assert request.report["final_notice"]["status"] == "failed"
    assert "550" in request.report["final_notice"]["error"]


async def test_a_deletion_that_is_not_due_yet_is_not_started(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
) -> None:
    member = await make_member("acme")
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    request_id = response.json()["data"]["id"]
    await delete_data(privacy_runtime, RequestPayload(request_id=request_id))
    assert smtp_server.received == []
    assert (await _request(privacy_runtime, request_id)).status == "pending"


async def test_the_deleted_users_token_no_longer_works(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
) -> None:
    member = await make_member("acme")
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    await _make_due(privacy_runtime, response.json()["data"]["id"])
    await delete_data(privacy_runtime, RequestPayload(request_id=response.json()["data"]["id"]))
    assert (await client.get("/api/v1/user", headers=member.headers)).status_code == 401


async def test_with_no_grace_period_the_job_is_woken_at_once(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    queue: RecordingQueue,
) -> None:
    privacy_runtime.settings = privacy_runtime.settings.model_copy(
        update={"data_deletion_grace_days": 0}
    )
    member = await make_member("acme")
    response = await client.post("/api/v1/me/data-deletion", headers=member.headers)
    assert queue.named("privacy.delete") == [
        {"request_id": response.json()["data"]["id"], "tenant_id": str(member.tenant_id)}
    ]
