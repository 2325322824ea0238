"""mark_needs_reauth: one incident, one notification to the owners and admins."""

from __future__ import annotations

import asyncio

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.main.runtime import Runtime
from notiflow.models import SocialAccount
from notiflow.models.platform import AccountStatus
from notiflow.models.tenancy import Role
from notiflow.social.service import mark_needs_reauth
from tests.conftest import MakeMember
from tests.social.conftest import MakeAccount, make_workspace
from tests.social.helpers import notified, reload_account


async def hit_401(runtime: Runtime, account_id: object, reason: str = "token revoked") -> None:
    """What a job does when the network answers 401: its own session, then commit."""
    async with runtime.sessionmaker() as session:
        account = await session.get(SocialAccount, account_id)
        assert account is not None
        await mark_needs_reauth(runtime, session, account, reason)
        await commit_and_flush_effects(session)


async def test_several_jobs_hitting_the_401_notify_once(
    runtime: Runtime, make_member: MakeMember, make_account: MakeAccount
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    admin = await make_member("acme", role=Role.ADMIN)
    member = await make_member("acme", role=Role.MEMBER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(workspace)

    await hit_401(runtime, account.id, "The access token is invalid")
    await hit_401(runtime, account.id, "The access token is invalid")

    stored = await reload_account(runtime, account.id)
    assert stored.status == AccountStatus.NEEDS_REAUTH.value
    assert stored.status_reason == "The access token is invalid"
    assert await notified(runtime, owner.id, "account_token_expired") == 1
    assert await notified(runtime, admin.id, "account_token_expired") == 1
    assert await notified(runtime, member.id, "account_token_expired") == 0


async def test_concurrent_jobs_notify_once(
    runtime: Runtime, make_member: MakeMember, make_account: MakeAccount, backend: str
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(workspace)

    if backend == "postgresql":
        await asyncio.gather(*(hit_401(runtime, account.id) for _ in range(4)))
    else:  # SQLite has one writer at a time: the jobs run one after another
        for _ in range(4):
            await hit_401(runtime, account.id)

    assert await notified(runtime, owner.id, "account_token_expired") == 1


async def test_a_reconnected_account_that_fails_again_is_a_new_incident(
    runtime: Runtime, make_member: MakeMember, make_account: MakeAccount
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(workspace)

    await hit_401(runtime, account.id)
    async with runtime.sessionmaker() as session:
        stored = await session.get(SocialAccount, account.id)
        assert stored is not None
        stored.status = AccountStatus.ACTIVE.value  # what a reconnect does
        await commit_and_flush_effects(session)
    await hit_401(runtime, account.id)

    assert await notified(runtime, owner.id, "account_token_expired") == 2


async def test_a_disconnected_account_is_left_alone(
    runtime: Runtime, make_member: MakeMember, make_account: MakeAccount
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    account = await make_account(workspace, status=AccountStatus.DISABLED)

    await hit_401(runtime, account.id)

    assert (await reload_account(runtime, account.id)).status == AccountStatus.DISABLED.value
    assert await notified(runtime, owner.id, "account_token_expired") == 0
