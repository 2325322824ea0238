"""``inbox.archive_old``: items older than 90 days leave the inbox."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from notiflow.inbox import jobs
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.kit.queue import WorkspacePayload
from notiflow.main.runtime import Runtime
from notiflow.models import InboxItem
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember
from tests.inbox.factories import make_account, make_workspace


async def test_only_old_items_of_the_workspace_are_archived_and_again_changes_nothing(
    runtime: Runtime, make_member: MakeMember, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    workspace = await make_workspace(runtime, owner.tenant_id)
    other_workspace = await make_workspace(runtime, owner.tenant_id, "Other")
    account = await make_account(runtime, workspace)
    other_account = await make_account(runtime, other_workspace)
    now = utcnow()
    earlier = now - timedelta(days=200)
    ages = {"fresh": 1, "89d": 89, "91d": 91, "1y": 365, "already": 120}
    async with runtime.sessionmaker() as session:
        for name, days in ages.items():
            session.add(
                InboxItem(
                    tenant_id=owner.tenant_id,
                    workspace_id=workspace.id,
                    social_account_id=account.id,
                    external_id=name,
                    kind="mention",
                    author_handle="@fan",
                    text=name,
                    occurred_at=now - timedelta(days=days),
                    archived_at=earlier if name == "already" else None,
                )
            )
        session.add(
            InboxItem(
                tenant_id=owner.tenant_id,
                workspace_id=other_workspace.id,
                social_account_id=other_account.id,
                external_id="elsewhere",
                kind="mention",
                author_handle="@fan",
                text="old, but another workspace",
                occurred_at=now - timedelta(days=365),
            )
        )
        await commit_and_flush_effects(session)
    payload = WorkspacePayload(workspace_id=workspace.id, tenant_id=owner.tenant_id)
    # Small batches, so the job's loop over several transactions is exercised.
    monkeypatch.setattr(jobs, "ARCHIVE_BATCH", 1)

    await jobs.archive_old(runtime, payload)
    async with runtime.sessionmaker() as session:
        first = {i.external_id: i.archived_at for i in await session.scalars(select(InboxItem))}
    await jobs.archive_old(runtime, payload)
    async with runtime.sessionmaker() as session:
        second = {i.external_id: i.archived_at for i in await session.scalars(select(InboxItem))}

    assert {name for name, at in first.items() if at is not None} == {"91d", "1y", "already"}
    assert first["already"] == earlier
    assert first["elsewhere"] is None
    assert second == first
