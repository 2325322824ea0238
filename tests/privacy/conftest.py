"""Fixtures of the privacy tests: files under tmp_path, a real SMTP server, a recording queue,
and people with data in every table a user's data lives in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from notiflow.audit import service as audit
from notiflow.auth.service import hash_password
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import JobPayload, payload_json
from notiflow.main.runtime import Runtime
from notiflow.models import (
    InboxItem,
    NotificationPreference,
    Post,
    PostTarget,
    PushSubscription,
    SocialAccount,
    User,
    Workspace,
)
from notiflow.notifications.types import NotificationType
from tests.conftest import MakeMember, Member
from tests.delivery.conftest import SMTP_MAIL_FROM, SMTP_PUBLIC_URL, SmtpServer

PASSWORD = "correct horse battery staple"


class RecordingQueue:
    """Stands in for the job queue: remembers what was enqueued (after commit), as the JSON
    the real queue carries."""

    # Counts no runs (the real queue's ``throughput``).
    throughput = None

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, dict[str, Any]]] = []

    async def enqueue(self, name: str, payload: JobPayload | dict[str, Any]) -> None:
        self.enqueued.append((name, payload_json(payload)))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [payload for job, payload in self.enqueued if job == name]


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def privacy_runtime(
    runtime: Runtime, tmp_path: Path, smtp_server: SmtpServer, queue: RecordingQueue
) -> Runtime:
    """The test runtime with files under tmp_path, email to the local SMTP server and a
    recording queue."""
    runtime.settings = runtime.settings.model_copy(
        update={
            "storage_dir": str(tmp_path / "storage"),
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_timeout_seconds": 5.0,
            "public_url": SMTP_PUBLIC_URL,
            "mail_from": SMTP_MAIL_FROM,
        }
    )
    runtime.queue = queue  # type: ignore[assignment] - a stand-in with the same enqueue()
    return runtime


@dataclass
class Person:
    """A member and the data seeded for them, marked with their own ``tag``."""

    member: Member
    tag: str
    workspace_id: uuid.UUID
    post_id: uuid.UUID
    inbox_item_id: uuid.UUID
    social_account_id: uuid.UUID
    push_endpoint: str
    push_keys: tuple[str, str]
    notification_ids: list[uuid.UUID] = field(default_factory=list)

    @property
    def id(self) -> uuid.UUID:
        return self.member.id

    @property
    def email(self) -> str:
        return self.member.user.email


async def seed_person(runtime: Runtime, make_member: MakeMember, tenant: str, tag: str) -> Person:
    """A member of ``tenant`` with a row in every table that holds a user's data; every text
    carries ``tag`` so a test can tell whose data it is looking at."""
    member = await make_member(tenant, email=f"{tag}@{tenant}.example", phone_number="+15550100")
    async with runtime.sessionmaker() as session:
        user = await session.get(User, member.id)
        assert user is not None
        user.name = f"Person {tag}"
        user.password_hash = hash_password(PASSWORD)
        workspace = Workspace(tenant_id=member.tenant_id, name=f"{tenant} workspace {tag}")
        session.add(workspace)
        await session.flush()
        account = SocialAccount(
            tenant_id=member.tenant_id,
            workspace_id=workspace.id,
            provider="sandbox",
            external_account_id=f"ext-{tag}",
            handle=f"@{tag}-brand",
            access_token_encrypted=f"SECRET-ACCESS-{tag}",
            refresh_token_encrypted=f"SECRET-REFRESH-{tag}",
            connected_by=member.id,
        )
        session.add(account)
        await session.flush()
        post = Post(
            tenant_id=member.tenant_id,
            workspace_id=workspace.id,
            author_id=member.id,
            content=f"post by {tag}",
        )
        session.add(post)
        await session.flush()
        session.add(
            PostTarget(
                post_id=post.id,
                social_account_id=account.id,
                workspace_id=workspace.id,
                external_url=f"https://social.example/{tag}/1",
            )
        )
        inbox_item = InboxItem(
            tenant_id=member.tenant_id,
            workspace_id=workspace.id,
            social_account_id=account.id,
            external_id=f"inbox-{tag}",
            kind="comment",
            author_handle="@fan",
            text=f"comment for {tag}",
            occurred_at=utcnow(),
            assigned_to=member.id,
            assigned_at=utcnow(),
        )
        session.add(inbox_item)
        keys = (f"P256DH-{tag}-{uuid.uuid4().hex}", f"AUTH-{tag}-{uuid.uuid4().hex}")
        endpoint = f"https://push.example/{tag}/{uuid.uuid4().hex}"
        session.add(
            PushSubscription(user_id=member.id, endpoint=endpoint, p256dh=keys[0], auth=keys[1])
        )
        session.add(
            NotificationPreference(
                user_id=member.id,
                notification_type=NotificationType.NEW_COMMENT.value,
                email_enabled=False,
            )
        )
        await audit.record(
            session,
            action="user.notification_settings.updated",
            subject_type="user",
            subject_id=member.id,
            before={"email": member.user.email, "email_notifications_enabled": True},
            after={"email": member.user.email, "email_notifications_enabled": False},
            actor_id=member.id,
            tenant_id=member.tenant_id,
            ip_address="203.0.113.7",
        )
        service = runtime.notification_service(session)
        notification = await service.send(
            member.id,
            NotificationType.NEW_MENTION,
            f"mention for {tag}",
            f"someone mentioned {tag}",
            tenant_id=member.tenant_id,
        )
        person = Person(
            member=member,
            tag=tag,
            workspace_id=workspace.id,
            post_id=post.id,
            inbox_item_id=inbox_item.id,
            social_account_id=account.id,
            push_endpoint=endpoint,
            push_keys=keys,
            notification_ids=[notification.id],
        )
        await commit_and_flush_effects(session)
    return person
