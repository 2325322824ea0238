"""Fixtures of the content domain: workspaces and social accounts stored directly as rows."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.main.runtime import Runtime
from notiflow.models import SocialAccount, Workspace
from notiflow.models.platform import AccountStatus

MakeWorkspace = Callable[..., Awaitable[Workspace]]
MakeAccount = Callable[..., Awaitable[SocialAccount]]


@pytest.fixture
def make_workspace(runtime: Runtime) -> MakeWorkspace:
    """Store (and commit) a workspace: ``await make_workspace(tenant_id, "Asia/Baku")``."""

    async def make(tenant_id: uuid.UUID, timezone: str = "UTC", *, name: str = "Main") -> Workspace:
        async with runtime.sessionmaker() as session:
            workspace = Workspace(tenant_id=tenant_id, name=name, timezone=timezone)
            session.add(workspace)
            await commit_and_flush_effects(session)
        return workspace

    return make


@pytest.fixture
def make_account(runtime: Runtime) -> MakeAccount:
    """Store (and commit) a social account of a workspace (sandbox provider unless told)."""
    counter = 0

    async def make(
        workspace: Workspace,
        *,
        provider: str = "sandbox",
        handle: str | None = None,
        status: AccountStatus = AccountStatus.ACTIVE,
        options: dict[str, Any] | None = None,
        instance_url: str | None = None,
    ) -> SocialAccount:
        nonlocal counter
        counter += 1
        async with runtime.sessionmaker() as session:
            account = SocialAccount(
                tenant_id=workspace.tenant_id,
                workspace_id=workspace.id,
                provider=provider,
                external_account_id=f"ext-{counter}-{uuid.uuid4().hex[:6]}",
                handle=handle or f"@account{counter}",
                instance_url=instance_url,
                options=options or {},
                status=status.value,
            )
            session.add(account)
            await commit_and_flush_effects(session)
        return account

    return make
