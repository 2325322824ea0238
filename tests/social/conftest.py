"""Fixtures of the social domain: a workspace with accounts, and the fake Mastodon server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.main.runtime import Runtime
from notiflow.models import SocialAccount, Workspace
from notiflow.models.platform import AccountStatus
from notiflow.social.providers.mastodon import MastodonProvider
from notiflow.social.providers.sandbox import SandboxProvider
from tests.social.fake_mastodon import FakeMastodon, running_fake_mastodon

MakeAccount = Callable[..., Awaitable[SocialAccount]]


async def make_workspace(runtime: Runtime, tenant_id: uuid.UUID, name: str = "Main") -> Workspace:
    async with runtime.sessionmaker() as session:
        workspace = Workspace(tenant_id=tenant_id, name=name, timezone="UTC")
        session.add(workspace)
        await commit_and_flush_effects(session)
    return workspace


@pytest.fixture
def make_account(runtime: Runtime) -> MakeAccount:
    """Store (and commit) a social account of a workspace, its tokens encrypted."""
    counter = 0

    async def make(
        workspace: Workspace,
        *,
        provider: str = "sandbox",
        access_token: str | None = "access-token",  # noqa: S107 - a test token
        refresh_token: str | None = None,
        token_expires_at: datetime | None = None,
        status: AccountStatus = AccountStatus.ACTIVE,
        instance_url: str | None = None,
        options: dict[str, Any] | None = None,
        handle: str | None = None,
    ) -> SocialAccount:
        nonlocal counter
        counter += 1
        cipher = runtime.token_cipher()
        async with runtime.sessionmaker() as session:
            account = SocialAccount(
                tenant_id=workspace.tenant_id,
                workspace_id=workspace.id,
                provider=provider,
                external_account_id=f"ext-{counter}-{uuid.uuid4().hex[:6]}",
                handle=handle or f"@account{counter}",
                instance_url=instance_url,
                access_token_encrypted=cipher.encrypt_optional(access_token),
                refresh_token_encrypted=cipher.encrypt_optional(refresh_token),
                token_expires_at=token_expires_at,
                options=options or {},
                status=status.value,
            )
            session.add(account)
            await commit_and_flush_effects(session)
        return account

    return make


@pytest.fixture
def fake_mastodon() -> Iterator[FakeMastodon]:
    """A real Mastodon-like HTTP server on 127.0.0.1 (random port), run in a background thread."""
    with running_fake_mastodon() as server:
        yield server


@pytest.fixture
async def providers(runtime: Runtime) -> AsyncIterator[Runtime]:
    """The runtime with the real adapters (sandbox, and mastodon with a short timeout)."""
    mastodon = MastodonProvider(timeout_seconds=2.0)
    runtime.providers = {"sandbox": SandboxProvider(), "mastodon": mastodon}
    yield runtime
    await mastodon.close()
