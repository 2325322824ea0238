"""social.refresh_tokens: expiring tokens renewed, failures told once, one account never blocks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet

from notiflow.kit.crypto import TokenCipher
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import WorkspacePayload
from notiflow.main.runtime import Runtime
from notiflow.models.platform import AccountStatus
from notiflow.models.tenancy import Role, Workspace
from notiflow.social.jobs import JOBS, TokenRefreshIncomplete, refresh_tokens
from tests.conftest import MakeMember, Member
from tests.social.conftest import MakeAccount, make_workspace
from tests.social.fake_mastodon import FakeMastodon
from tests.social.helpers import notified, reload_account


@pytest.fixture
async def owner(make_member: MakeMember) -> Member:
    return await make_member("acme", role=Role.OWNER)


@pytest.fixture
async def workspace(runtime: Runtime, owner: Member) -> Workspace:
    return await make_workspace(runtime, owner.tenant_id)


def payload(workspace: Workspace) -> WorkspacePayload:
    return WorkspacePayload(workspace_id=workspace.id, tenant_id=workspace.tenant_id)


def sandbox(**options: Any) -> dict[str, Any]:
    return {"latency_ms": 0, **options}


async def test_an_expiring_token_is_refreshed_and_stored_encrypted(
    providers: Runtime, make_account: MakeAccount, workspace: Workspace, owner: Member
) -> None:
    runtime = providers
    expiring = await make_account(
        workspace,
        refresh_token="refresh-1",
        token_expires_at=utcnow() + timedelta(days=2),
        options=sandbox(token_lifetime_hours=24 * 60),
    )
    later = await make_account(
        workspace, refresh_token="refresh-2", token_expires_at=utcnow() + timedelta(days=30)
    )

    await refresh_tokens(runtime, payload(workspace))

    refreshed = await reload_account(runtime, expiring.id)
    cipher = runtime.token_cipher()
    assert refreshed.token_expires_at is not None
    assert refreshed.token_expires_at > utcnow() + timedelta(days=59)
    assert cipher.decrypt(refreshed.access_token_encrypted or "").startswith("sbx-at-")
    # The rotated refresh token is kept (encrypted) with the new access token.
    new_refresh = cipher.decrypt(refreshed.refresh_token_encrypted or "")
    assert new_refresh.startswith("sbx-rt-")
    assert "sbx-" not in (refreshed.refresh_token_encrypted or "")
    assert refreshed.last_refresh_at is not None
    assert refreshed.status == AccountStatus.ACTIVE.value
    untouched = await reload_account(runtime, later.id)
    assert cipher.decrypt(untouched.access_token_encrypted or "") == "access-token"
    assert await notified(runtime, owner.id, "account_token_expiring") == 0


async def test_a_temporary_failure_keeps_the_account_and_tells_the_owners_once(
    providers: Runtime, make_account: MakeAccount, workspace: Workspace, owner: Member
) -> None:
    runtime = providers
    account = await make_account(
        workspace,
        refresh_token="r",
        token_expires_at=utcnow() + timedelta(days=3),
        options=sandbox(refresh_error="retryable"),
    )

    for _ in range(2):  # the retry, or the next day's run
        with pytest.raises(TokenRefreshIncomplete):
            await refresh_tokens(runtime, payload(workspace))

    stored = await reload_account(runtime, account.id)
    assert stored.status == AccountStatus.ACTIVE.value
    assert stored.status_reason is not None
    assert "will retry" in stored.status_reason
    assert stored.expiry_notified_at is not None
    assert await notified(runtime, owner.id, "account_token_expiring") == 1
    assert await notified(runtime, owner.id, "account_token_expired") == 0


async def test_a_refused_refresh_needs_reauth_and_is_told_once(
    providers: Runtime,
    make_member: MakeMember,
    make_account: MakeAccount,
    workspace: Workspace,
    owner: Member,
) -> None:
    runtime = providers
    admin = await make_member("acme", role=Role.ADMIN)
    account = await make_account(
        workspace,
        refresh_token="r",
        token_expires_at=utcnow() + timedelta(days=1),
        options=sandbox(refresh_error="needs_reauth"),
    )

    await refresh_tokens(runtime, payload(workspace))
    await refresh_tokens(runtime, payload(workspace))

    stored = await reload_account(runtime, account.id)
    assert stored.status == AccountStatus.NEEDS_REAUTH.value
    assert stored.status_reason is not None
    assert "refresh refused" in stored.status_reason
    assert await notified(runtime, owner.id, "account_token_expired") == 1
    assert await notified(runtime, admin.id, "account_token_expired") == 1


async def test_a_token_already_expired_needs_reauth(
    providers: Runtime, make_account: MakeAccount, workspace: Workspace, owner: Member
) -> None:
    runtime = providers
    account = await make_account(
        workspace, refresh_token="r", token_expires_at=utcnow() - timedelta(hours=1)
    )

    await refresh_tokens(runtime, payload(workspace))

    stored = await reload_account(runtime, account.id)
    assert stored.status == AccountStatus.NEEDS_REAUTH.value
    assert "expired" in (stored.status_reason or "")
    assert await notified(runtime, owner.id, "account_token_expired") == 1


async def test_one_failing_account_does_not_block_the_others(
    providers: Runtime, make_account: MakeAccount, workspace: Workspace, owner: Member
) -> None:
    runtime = providers
    soon = utcnow() + timedelta(days=1)
    # Ordered by expiry, so the failing ones come first.
    refused = await make_account(
        workspace,
        refresh_token="r",
        token_expires_at=soon - timedelta(hours=2),
        options=sandbox(refresh_error="needs_reauth"),
    )
    flaky = await make_account(
        workspace,
        refresh_token="r",
        token_expires_at=soon - timedelta(hours=1),
        options=sandbox(refresh_error="retryable"),
    )
    fine = await make_account(
        workspace, refresh_token="r", token_expires_at=soon, options=sandbox()
    )

    with pytest.raises(TokenRefreshIncomplete, match="1 token"):
        await refresh_tokens(runtime, payload(workspace))

    assert (await reload_account(runtime, refused.id)).status == AccountStatus.NEEDS_REAUTH.value
    assert (await reload_account(runtime, flaky.id)).status == AccountStatus.ACTIVE.value
    refreshed = await reload_account(runtime, fine.id)
    assert refreshed.last_refresh_at is not None
    assert refreshed.token_expires_at is not None
    assert refreshed.token_expires_at > soon


async def test_accounts_of_other_workspaces_and_inactive_ones_are_left_alone(
    providers: Runtime, make_account: MakeAccount, workspace: Workspace, owner: Member
) -> None:
    runtime = providers
    other = await make_workspace(runtime, owner.tenant_id, name="Other")
    soon = utcnow() + timedelta(days=1)
    elsewhere = await make_account(other, refresh_token="r", token_expires_at=soon)
    disabled = await make_account(
        workspace, refresh_token="r", token_expires_at=soon, status=AccountStatus.DISABLED
    )

    await refresh_tokens(runtime, payload(workspace))

    assert (await reload_account(runtime, elsewhere.id)).last_refresh_at is None
    assert (await reload_account(runtime, disabled.id)).last_refresh_at is None


def test_the_job_is_registered_under_its_agreed_name() -> None:
    from notiflow.main.jobs import ALL_JOBS

    assert [job.name for job in JOBS] == ["social.refresh_tokens"]
    assert "social.refresh_tokens" in {job.name for job in ALL_JOBS}


async def test_a_mastodon_token_with_an_expiry_cannot_be_renewed_so_the_owners_are_told_once(
    providers: Runtime,
    make_account: MakeAccount,
    workspace: Workspace,
    owner: Member,
    fake_mastodon: FakeMastodon,
) -> None:
    runtime = providers
    account = await make_account(
        workspace,
        provider="mastodon",
        access_token=fake_mastodon.token,
        instance_url=fake_mastodon.url,
        token_expires_at=utcnow() + timedelta(days=2),
    )

    await refresh_tokens(runtime, payload(workspace))
    await refresh_tokens(runtime, payload(workspace))

    stored = await reload_account(runtime, account.id)
    assert stored.status == AccountStatus.ACTIVE.value
    assert await notified(runtime, owner.id, "account_token_expiring") == 1


async def test_after_a_key_rotation_tokens_move_to_the_new_key_and_unreadable_ones_need_reauth(
    providers: Runtime, make_account: MakeAccount, workspace: Workspace, owner: Member
) -> None:
    runtime = providers
    old_key, new_key, lost_key = (Fernet.generate_key() for _ in range(3))
    soon = utcnow() + timedelta(days=1)
    runtime.cipher = TokenCipher([old_key])
    readable = await make_account(workspace, refresh_token="r", token_expires_at=soon)
    runtime.cipher = TokenCipher([lost_key])
    unreadable = await make_account(workspace, refresh_token="r", token_expires_at=soon)
    # NOTIFLOW_ENCRYPTION_KEYS=new,old: the first encrypts, all decrypt; lost_key is gone.
    runtime.cipher = TokenCipher([new_key, old_key])

    await refresh_tokens(runtime, payload(workspace))

    refreshed = await reload_account(runtime, readable.id)
    only_new = TokenCipher([new_key])
    assert only_new.decrypt(refreshed.access_token_encrypted or "").startswith("sbx-at-")
    assert only_new.decrypt(refreshed.refresh_token_encrypted or "").startswith("sbx-rt-")
    broken = await reload_account(runtime, unreadable.id)
    assert broken.status == AccountStatus.NEEDS_REAUTH.value
    assert "cannot be decrypted" in (broken.status_reason or "")
    assert await notified(runtime, owner.id, "account_token_expired") == 1
