"""The send API's idempotency and the tenant's notification settings, called as services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from notiflow.auth.actor import Actor
from notiflow.kit.errors import Conflict, NotFound
from notiflow.kit.ids import new_id, utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, IdempotencyKey, Notification, Tenant
from notiflow.models.tenancy import Role
from notiflow.notifications import tenant_settings
from notiflow.notifications.idempotency import Replay, send_once
from notiflow.notifications.policy import TenantNotificationSettings
from notiflow.notifications.schemas import (
    DataEnvelope,
    SendNotificationRequest,
    SendResponseData,
)
from tests.conftest import MakeMember, Member, commit

TTL = timedelta(hours=24)


def _request(alice: Member, title: str = "Hi") -> SendNotificationRequest:
    return SendNotificationRequest.model_validate(
        {"user_ids": [str(alice.id)], "type": "new_mention", "title": title, "message": "there"}
    )


async def _send(
    runtime: Runtime, admin: Member, request: SendNotificationRequest, key: str | None
) -> DataEnvelope[SendResponseData] | Replay:
    async with runtime.sessionmaker() as session:
        outcome = await send_once(
            session,
            runtime.notification_service(session),
            request,
            tenant_id=admin.tenant_id,
            user_id=admin.id,
            key=key,
            ttl=TTL,
        )
        await commit(session)
    return outcome


async def _notifications(runtime: Runtime) -> int:
    async with runtime.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Notification)) or 0)


async def test_send_once_replays_the_first_response_for_the_same_key(
    runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()

    first = await _send(runtime, admin, _request(alice), "k-1")
    again = await _send(runtime, admin, _request(alice), "k-1")

    assert not isinstance(first, Replay)
    assert again == Replay(status_code=202, response=first.model_dump(mode="json"))
    assert await _notifications(runtime) == 1
    with pytest.raises(Conflict) as reused:
        await _send(runtime, admin, _request(alice, title="Other"), "k-1")
    assert reused.value.code == "idempotency_key_reused"
    # Without a key every call sends.
    await _send(runtime, admin, _request(alice), None)
    await _send(runtime, admin, _request(alice), None)
    assert await _notifications(runtime) == 3


async def test_a_key_older_than_the_ttl_sends_again(
    runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    alice = await make_member()
    await _send(runtime, admin, _request(alice), "k-old")
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(IdempotencyKey).values(created_at=utcnow() - TTL - timedelta(minutes=1))
        )
        await commit(session)

    outcome = await _send(runtime, admin, _request(alice, title="Other"), "k-old")

    assert not isinstance(outcome, Replay)
    assert await _notifications(runtime) == 2
    async with runtime.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(IdempotencyKey)) == 1


async def test_replacing_tenant_settings_keeps_the_tenants_other_settings(
    runtime: Runtime, make_member: MakeMember
) -> None:
    owner = await make_member(role=Role.OWNER)
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(Tenant).where(Tenant.id == owner.tenant_id).values(settings={"branding": "x"})
        )
        await commit(session)
    wanted = TenantNotificationSettings.model_validate(
        {"policy": {"new_mention": {"email": "forbidden"}}}
    )

    async with runtime.sessionmaker() as session:
        saved = await tenant_settings.replace_settings(
            session,
            owner.tenant_id,
            wanted,
            actor=Actor(user_id=owner.id, tenant_id=owner.tenant_id, ip_address="192.0.2.9"),
        )
        await commit(session)

    assert saved == wanted
    async with runtime.sessionmaker() as session:
        tenant = await session.get(Tenant, owner.tenant_id)
        assert tenant is not None
        assert tenant.settings["branding"] == "x"
        assert await tenant_settings.get_settings(session, owner.tenant_id) == wanted
        [entry] = (await session.scalars(select(AuditLog))).all()
    assert (entry.action, entry.actor_id, entry.tenant_id, entry.ip_address) == (
        "tenant.notification_settings.updated",
        owner.id,
        owner.tenant_id,
        "192.0.2.9",
    )
    assert entry.before == TenantNotificationSettings().model_dump(mode="json")
    assert entry.after == wanted.model_dump(mode="json")


async def test_settings_of_an_unknown_tenant_are_not_found(runtime: Runtime) -> None:
    async with runtime.sessionmaker() as session:
        with pytest.raises(NotFound, match="tenant not found"):
            await tenant_settings.get_settings(session, new_id())
