"""kit/tenant_scope.py: a query narrowed to a tenant sees only that tenant's rows, and another
tenant's row is answered exactly like a missing one (on SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import NotFound
from notiflow.kit.tenant_scope import find_in_tenant, get_in_tenant, in_owning_tenant, in_tenant
from notiflow.models import FailedJob, Membership, Tenant, User, Workspace


@dataclass(frozen=True)
class TwoTenants:
    acme: Tenant
    globex: Tenant
    acme_workspace: Workspace
    globex_workspace: Workspace


async def _tenant_with_workspace(session: AsyncSession, name: str) -> tuple[Tenant, Workspace]:
    tenant = Tenant(name=name, settings={})
    session.add(tenant)
    await session.flush()
    workspace = Workspace(tenant_id=tenant.id, name="Brand", timezone="UTC")
    user = User(email=f"owner@{name}.example", name=f"{name} owner")
    session.add_all([workspace, user])
    await session.flush()
    session.add(Membership(tenant_id=tenant.id, user_id=user.id, role="owner"))
    await session.flush()
    return tenant, workspace


@pytest.fixture
async def tenants(session: AsyncSession) -> TwoTenants:
    acme, acme_workspace = await _tenant_with_workspace(session, "acme")
    globex, globex_workspace = await _tenant_with_workspace(session, "globex")
    # Forget the loaded rows: every lookup below goes to the database.
    session.expunge_all()
    return TwoTenants(acme, globex, acme_workspace, globex_workspace)


async def test_a_filtered_query_sees_only_its_tenants_rows(
    session: AsyncSession, tenants: TwoTenants
) -> None:
    found = (
        await session.scalars(select(Workspace.id).where(in_tenant(Workspace, tenants.acme.id)))
    ).all()
    assert found == [tenants.acme_workspace.id]
    # Same name in both tenants: the tenant decides which one is meant.
    named = await session.scalar(
        select(Workspace.id).where(
            in_tenant(Workspace, tenants.globex.id), Workspace.name == "Brand"
        )
    )
    assert named == tenants.globex_workspace.id


async def test_an_update_touches_only_its_tenants_rows(
    session: AsyncSession, tenants: TwoTenants
) -> None:
    await session.execute(
        update(Workspace).where(in_tenant(Workspace, tenants.acme.id)).values(name="Renamed")
    )
    rows = await session.execute(select(Workspace.tenant_id, Workspace.name))
    names = {tenant_id: name for tenant_id, name in rows}
    assert names == {tenants.acme.id: "Renamed", tenants.globex.id: "Brand"}


async def test_a_join_keeps_the_joined_rows_in_the_same_tenant(
    session: AsyncSession, tenants: TwoTenants
) -> None:
    """With a column for the tenant: each workspace's owners, never another tenant's."""
    rows = (
        await session.execute(
            select(Workspace.id, User.email)
            .join(Membership, in_tenant(Membership, Workspace.tenant_id))
            .join(User, User.id == Membership.user_id)
            .order_by(User.email)
        )
    ).all()
    assert [tuple(row) for row in rows] == [
        (tenants.acme_workspace.id, "owner@acme.example"),
        (tenants.globex_workspace.id, "owner@globex.example"),
    ]


async def test_a_row_of_the_tenant_is_found(session: AsyncSession, tenants: TwoTenants) -> None:
    workspace = await get_in_tenant(
        session, Workspace, tenants.acme_workspace.id, tenants.acme.id, what="workspace"
    )
    assert (workspace.id, workspace.tenant_id) == (tenants.acme_workspace.id, tenants.acme.id)
    found = await find_in_tenant(session, Workspace, tenants.acme_workspace.id, tenants.acme.id)
    assert found is workspace


async def test_another_tenants_row_is_not_found_like_a_missing_one(
    session: AsyncSession, tenants: TwoTenants
) -> None:
    with pytest.raises(NotFound) as other_tenants:
        await get_in_tenant(
            session, Workspace, tenants.globex_workspace.id, tenants.acme.id, what="workspace"
        )
    with pytest.raises(NotFound) as missing:
        await get_in_tenant(session, Workspace, uuid.uuid4(), tenants.acme.id, what="workspace")
    # Nothing tells the caller the row exists elsewhere: same status, code and message.
    for error in (other_tenants.value, missing.value):
        assert (error.status_code, error.code, error.message, error.details) == (
            404,
            "not_found",
            "workspace not found",
            None,
        )

    assert (
        await find_in_tenant(session, Workspace, tenants.globex_workspace.id, tenants.acme.id)
        is None
    )
    assert await find_in_tenant(session, Workspace, uuid.uuid4(), tenants.acme.id) is None


async def test_a_row_already_in_the_session_is_still_checked(
    session: AsyncSession, tenants: TwoTenants
) -> None:
    """``session.get`` answers from the identity map without a query: the tenant check must
    hold for such a row too."""
    loaded = await session.get(Workspace, tenants.globex_workspace.id)
    assert loaded is not None
    assert await find_in_tenant(session, Workspace, loaded.id, tenants.acme.id) is None
    assert await find_in_tenant(session, Workspace, loaded.id, tenants.globex.id) is loaded


async def test_rows_of_no_tenant_are_nobodys(session: AsyncSession, tenants: TwoTenants) -> None:
    """in_owning_tenant: a table whose rows may belong to no tenant (failed jobs) shows each
    tenant its own rows, and the platform's rows to no tenant."""
    session.add_all(
        [
            FailedJob(job_name="inbox.sync", tenant_id=tenants.acme.id, exception="acme's"),
            FailedJob(job_name="inbox.sync", tenant_id=tenants.globex.id, exception="globex's"),
            FailedJob(job_name="notifications.cleanup", tenant_id=None, exception="nobody's"),
        ]
    )
    await session.flush()
    for tenant, expected in ((tenants.acme, ["acme's"]), (tenants.globex, ["globex's"])):
        found = await session.scalars(
            select(FailedJob.exception).where(in_owning_tenant(FailedJob, tenant.id))
        )
        assert list(found) == expected
