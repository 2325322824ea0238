"""Invitations by email: invite -> email (mail folder) -> accept -> notifications, and the rules."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from notiflow.auth.actor import Actor
from notiflow.config import MailDriver, Settings
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import JobQueue, build_broker, job_queue_depth
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, Invitation, Membership, Notification
from notiflow.models.tenancy import Role
from notiflow.tenancy.invitations import create_invitation, invitation_token, token_digest
from notiflow.tenancy.jobs import JOBS as TENANCY_JOBS
from notiflow.tenancy.jobs import InvitationNotSent, InvitationPayload, send_invitation, sweep_once
from tests.conftest import MakeMember
from tests.delivery.processes import free_port
from tests.fault_servers import OwnRedis


@dataclass
class MailContext:
    """The job's context with the mail folder driver: each email lands in ``mail_dir``."""

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    queue: Any = None
    alerter: Any = None


def _mail_context(runtime: Runtime, tmp_path: Path) -> MailContext:
    settings = runtime.settings.model_copy(
        update={
            "mail_driver": MailDriver.FILE,
            "mail_dir": tmp_path / "mail",
            "public_url": "https://app.example.test",
        }
    )
    return MailContext(settings=settings, sessionmaker=runtime.sessionmaker)


async def _invite(
    client: httpx.AsyncClient, headers: dict[str, str], address: str, role: str = "member"
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/tenant/invitations", json={"email": address, "role": role}, headers=headers
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _email_token(context: MailContext, invitation: dict[str, Any]) -> tuple[str, str]:
    """Run the email job, read the .eml it wrote: (recipient, token from the accept link)."""
    payload = InvitationPayload(invitation_id=invitation["id"], tenant_id=invitation["tenant_id"])
    await send_invitation(context, payload)  # type: ignore[arg-type]  # a narrow test context
    await send_invitation(context, payload)  # type: ignore[arg-type]  # twice: one email
    files = sorted((context.settings.mail_dir).glob("*.eml"))
    assert len(files) == 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    match = re.search(r"https://app\.example\.test/invitations/accept\?token=([\w.-]+)", text)
    assert match, text
    return str(message["To"]), match.group(1)


async def _types_for(runtime: Runtime, user_id: uuid.UUID) -> list[str]:
    async with runtime.sessionmaker() as session:
        return list(
            (
                await session.scalars(
                    select(Notification.type).where(Notification.user_id == user_id)
                )
            ).all()
        )


async def test_invite_email_accept_as_a_new_user_notifies_the_team(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime, tmp_path: Path
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    admin = await make_member("acme", role=Role.ADMIN)
    invitation = await _invite(client, admin.headers, "New.Person@Example.com", "member")
    assert invitation["email"] == "new.person@example.com"
    assert invitation["status"] == "pending"
    context = _mail_context(runtime, tmp_path)
    recipient, token = await _email_token(context, invitation)
    assert "new.person@example.com" in recipient
    async with runtime.sessionmaker() as session:
        stored = await session.get(Invitation, uuid.UUID(invitation["id"]))
        assert stored is not None
        assert stored.token_hash == token_digest(token)
        assert token not in str(stored.__dict__)
        assert stored.emailed_at is not None

    # A new account needs a password.
    refused = await client.post("/api/v1/invitations/accept", json={"token": token})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "password_required"

    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "name": "New Person", "password": "correct horse"},
    )
    assert accepted.status_code == 200, accepted.text
    data = accepted.json()["data"]
    assert data["role"] == "member"
    assert data["user_created"] is True
    me = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {data['token']}"})
    assert me.status_code == 200
    assert me.json()["data"]["name"] == "New Person"
    assert me.json()["data"]["tenant_id"] == str(owner.tenant_id)
    # They can sign in with the password they chose.
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": "new.person@example.com", "password": "correct horse"},
    )
    assert login.status_code == 200, login.text

    assert await _types_for(runtime, admin.id) == ["invitation_accepted"]
    assert await _types_for(runtime, owner.id) == ["member_added"]
    # Single use.
    again = await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": "correct horse"}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invitation_accepted"
    async with runtime.sessionmaker() as session:
        actions = set((await session.scalars(select(AuditLog.action))).all())
    assert {"invitation.created", "invitation.accepted", "member.added"} <= actions


async def test_an_existing_user_is_told_in_app_and_must_sign_in_to_accept(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime, tmp_path: Path
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    invitee = await make_member("globex", password="their password")
    invitation = await _invite(client, owner.headers, invitee.user.email, "admin")
    assert await _types_for(runtime, invitee.id) == ["invitation_received"]
    _, token = await _email_token(_mail_context(runtime, tmp_path), invitation)

    for body, headers in [
        ({"token": token}, {}),
        ({"token": token, "password": "not their password"}, {}),
    ]:
        refused = await client.post("/api/v1/invitations/accept", json=body, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "login_required"
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=invitee.headers
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["user_created"] is False
    async with runtime.sessionmaker() as session:
        roles = (
            await session.scalars(
                select(Membership.role).where(
                    Membership.user_id == invitee.id, Membership.tenant_id == owner.tenant_id
                )
            )
        ).all()
    assert roles == ["admin"]


async def test_revoked_expired_and_unknown_tokens_are_refused(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime, tmp_path: Path
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    context = _mail_context(runtime, tmp_path)
    revoked = await _invite(client, owner.headers, "a@example.com")
    _, revoked_token = await _email_token(context, revoked)
    response = await client.delete(
        f"/api/v1/tenant/invitations/{revoked['id']}", headers=owner.headers
    )
    assert response.status_code == 204
    listed = await client.get("/api/v1/tenant/invitations", headers=owner.headers)
    assert [item["status"] for item in listed.json()["data"]] == ["revoked"]
    refused = await client.post(
        "/api/v1/invitations/accept", json={"token": revoked_token, "password": "long enough"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "invitation_revoked"

    expired = await _invite(client, owner.headers, "b@example.com")
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Invitation)
            .where(Invitation.id == uuid.UUID(expired["id"]))
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()
    expired_token = invitation_token(runtime.settings, uuid.UUID(expired["id"]))
    refused = await client.post(
        "/api/v1/invitations/accept", json={"token": expired_token, "password": "long enough"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "invitation_expired"

    unknown = await client.post(
        "/api/v1/invitations/accept", json={"token": "nope.nope", "password": "long enough"}
    )
    assert unknown.status_code == 404
    async with runtime.sessionmaker() as session:
        assert len((await session.scalars(select(Membership))).all()) == 1


async def test_invitation_rules_and_bad_input(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    admin = await make_member("acme", role=Role.ADMIN)
    member = await make_member("acme")
    stranger = await make_member("globex", role=Role.OWNER)

    refused = await client.post(
        "/api/v1/tenant/invitations", json={"email": "x@example.com"}, headers=member.headers
    )
    assert refused.status_code == 403
    refused = await client.post(
        "/api/v1/tenant/invitations",
        json={"email": "x@example.com", "role": "owner"},
        headers=admin.headers,
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "owner_required"
    already = await client.post(
        "/api/v1/tenant/invitations", json={"email": member.user.email}, headers=owner.headers
    )
    assert already.status_code == 409
    assert already.json()["error"]["code"] == "already_member"
    for body in [{"email": "not an email"}, {"email": "x@example.com", "role": "king"}, {}]:
        response = await client.post("/api/v1/tenant/invitations", json=body, headers=owner.headers)
        assert response.status_code == 422, body
    first = await _invite(client, owner.headers, "x@example.com")
    twice = await client.post(
        "/api/v1/tenant/invitations", json={"email": "X@example.com"}, headers=owner.headers
    )
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "already_invited"
    # Another tenant's invitation is not found, neither listed nor revocable.
    theirs = await client.get("/api/v1/tenant/invitations", headers=stranger.headers)
    assert theirs.json()["data"] == []
    response = await client.delete(
        f"/api/v1/tenant/invitations/{first['id']}", headers=stranger.headers
    )
    assert response.status_code == 404
    async with runtime.sessionmaker() as session:
        assert len((await session.scalars(select(Invitation))).all()) == 1


async def test_accept_refuses_bad_input_and_changes_nothing(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    invitation = await _invite(client, owner.headers, "c@example.com")
    token = invitation_token(runtime.settings, uuid.UUID(invitation["id"]))
    for body in [
        {},
        {"token": ""},
        {"token": token, "password": "short"},
        {"token": token, "password": "long enough", "role": "owner"},
        {"token": token, "password": "long enough", "name": ""},
    ]:
        response = await client.post("/api/v1/invitations/accept", json=body)
        assert response.status_code == 422, body
        assert set(response.json()["error"]) == {"code", "message", "details"}
    bad_bearer = await client.post(
        "/api/v1/invitations/accept",
        json={"token": token, "password": "long enough"},
        headers={"Authorization": "Bearer nope"},
    )
    assert bad_bearer.status_code == 401
    listed = await client.get("/api/v1/tenant/invitations", headers=owner.headers)
    assert [item["status"] for item in listed.json()["data"]] == ["pending"]
    async with runtime.sessionmaker() as session:
        assert len((await session.scalars(select(Membership))).all()) == 1


async def test_an_invitation_whose_wake_up_was_lost_with_redis_is_still_emailed(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime, tmp_path: Path
) -> None:
    """The queue (a redis-server of this test) is down when the invitation commits: the
    wake-up is lost, the invitation is not. Once Redis is back the sweep hands it out, and the
    job sends it once."""
    admin = await make_member("acme", role=Role.ADMIN)
    with OwnRedis() as own:
        queue = JobQueue(build_broker(own.url), list(TENANCY_JOBS))
        await queue.start(runtime)
        runtime.queue = queue
        try:
            own.stop()  # SIGKILL: the enqueue after commit fails
            invitation = await _invite(client, admin.headers, "bob@example.com")
            assert invitation["emailed_at"] is None
            async with runtime.sessionmaker() as session:
                stored = await session.get(Invitation, uuid.UUID(invitation["id"]))
                assert stored is not None
                assert stored.email_due_at is not None
            own.start()  # back, empty: the wake-up is nowhere
            redis = Redis.from_url(own.url)
            try:
                assert await job_queue_depth(redis) == 0
                # Within a minute of its time it may still be on its way: left alone.
                assert await sweep_once(runtime) == 0
                later = utcnow() + timedelta(minutes=2)
                assert await sweep_once(runtime, now=later) == 1
                assert await job_queue_depth(redis) == 1
            finally:
                await redis.aclose()
        finally:
            runtime.queue = None
            await queue.close()
    context = _mail_context(runtime, tmp_path)
    recipient, _token = await _email_token(context, invitation)
    assert "bob@example.com" in recipient
    # Emailed: no sweep hands it out again.
    async with runtime.sessionmaker() as session:
        stored = await session.get(Invitation, uuid.UUID(invitation["id"]))
        assert stored is not None
        assert stored.emailed_at is not None
        assert stored.email_due_at is None


async def test_concurrent_runs_send_one_email_and_a_mail_server_not_ready_frees_it(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime, tmp_path: Path
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    invitation = await _invite(client, admin.headers, "carol@example.com")
    payload = InvitationPayload(invitation_id=invitation["id"], tenant_id=invitation["tenant_id"])
    # No mail server listens here: the sender says "retry", the row is given back.
    unreachable = runtime.settings.model_copy(
        update={
            "mail_driver": MailDriver.SMTP,
            "smtp_host": "127.0.0.1",
            "smtp_port": free_port(),
            "smtp_timeout_seconds": 5.0,
        }
    )
    down = MailContext(settings=unreachable, sessionmaker=runtime.sessionmaker)
    with pytest.raises(InvitationNotSent):
        await send_invitation(down, payload)  # type: ignore[arg-type]  # a narrow test context
    async with runtime.sessionmaker() as session:
        stored = await session.get(Invitation, uuid.UUID(invitation["id"]))
        assert stored is not None
        assert stored.emailed_at is None
        # Free for the queue's stored retry; not the sweep's to hand out.
        assert stored.email_due_at is None
    assert await sweep_once(runtime, now=utcnow() + timedelta(hours=1)) == 0

    context = _mail_context(runtime, tmp_path)
    await asyncio.gather(*(send_invitation(context, payload) for _ in range(3)))  # type: ignore[arg-type]
    assert len(list(context.settings.mail_dir.glob("*.eml"))) == 1


async def test_invitations_created_from_the_cli_are_not_emailed(
    make_member: MakeMember, runtime: Runtime
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    async with runtime.sessionmaker() as session:
        invitation = await create_invitation(
            session,
            runtime.settings,
            Actor(user_id=None, tenant_id=owner.tenant_id),
            owner.tenant_id,
            email="dave@example.com",
            role=Role.MEMBER,
            notifications=None,
            send_email=False,
        )
        await commit_and_flush_effects(session)
    assert invitation.email_due_at is None
    runtime.queue = JobQueue(build_broker(None), list(TENANCY_JOBS))
    try:
        assert await sweep_once(runtime, now=utcnow() + timedelta(hours=1)) == 0
    finally:
        runtime.queue = None
