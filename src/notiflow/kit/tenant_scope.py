"""Tenant scoping: the one way a query of tenant data is narrowed to a tenant.

A row of another tenant looks exactly like a missing one, so tenant data never leaks (not even
its existence)::

    select(Workspace).where(in_tenant(Workspace, tenant_id), Workspace.name == name)
    update(Notification).where(Notification.user_id == user_id, in_tenant(Notification, tenant_id))
    .join(Membership, (Membership.user_id == Post.author_id) & in_tenant(Membership, tenant_id))

    workspace = await get_in_tenant(session, Workspace, workspace_id, tenant_id, what="workspace")
    workspace = await find_in_tenant(session, Workspace, workspace_id, tenant_id)  # or None

Only models whose rows always belong to a tenant (a non-null ``tenant_id``) are accepted: the
types say so, and mypy refuses the others. Tables whose rows may belong to no tenant (failed jobs
and audit entries of the platform itself) are narrowed with :func:`in_owning_tenant`, under which
a row of no tenant is never found::

    select(FailedJob).where(in_owning_tenant(FailedJob, tenant_id))
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Protocol, TypeVar

from sqlalchemy import ColumnElement, SQLColumnExpression
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from notiflow.kit.errors import NotFound

__all__ = [
    "OptionalTenantTable",
    "TenantRow",
    "TenantTable",
    "find_in_tenant",
    "get_in_tenant",
    "in_owning_tenant",
    "in_tenant",
]


class TenantTable(Protocol):
    """A mapped class with a non-null ``tenant_id`` column (what a query filters on)."""

    tenant_id: ClassVar[InstrumentedAttribute[uuid.UUID]]


class OptionalTenantTable(Protocol):
    """A mapped class whose rows may belong to no tenant (a nullable ``tenant_id`` column)."""

    tenant_id: ClassVar[InstrumentedAttribute[uuid.UUID | None]]


class TenantRow(Protocol):
    """A loaded row that belongs to one tenant (what a lookup checks)."""

    tenant_id: uuid.UUID


RowT = TypeVar("RowT", bound=TenantRow)


def in_tenant(
    model: type[TenantTable], tenant_id: uuid.UUID | SQLColumnExpression[uuid.UUID]
) -> ColumnElement[bool]:
    """The criterion "this row of ``model`` belongs to ``tenant_id``", for ``.where()`` and for
    join conditions. ``tenant_id`` may be a column, to keep a joined row in the same tenant as
    another: ``in_tenant(Membership, PersonalAccessToken.tenant_id)``."""
    return model.tenant_id == tenant_id


def in_owning_tenant(model: type[OptionalTenantTable], tenant_id: uuid.UUID) -> ColumnElement[bool]:
    """The criterion "this row of ``model`` belongs to ``tenant_id``" for a table whose rows may
    belong to no tenant: those (the platform's own) never match, whatever the tenant."""
    return model.tenant_id.is_not(None) & (model.tenant_id == tenant_id)


async def find_in_tenant(
    session: AsyncSession, model: type[RowT], row_id: uuid.UUID, tenant_id: uuid.UUID
) -> RowT | None:
    """The row of ``model`` with this primary key when it belongs to ``tenant_id``; None when it
    does not exist or belongs to another tenant (the two are not told apart)."""
    row: RowT | None = await session.get(model, row_id)
    if row is None or row.tenant_id != tenant_id:
        return None
    return row


async def get_in_tenant(
    session: AsyncSession,
    model: type[RowT],
    row_id: uuid.UUID,
    tenant_id: uuid.UUID,
    *,
    what: str,
) -> RowT:
    """Like :func:`find_in_tenant`, but a missing row (or another tenant's) is a 404:
    ``NotFound(f"{what} not found")``."""
    row = await find_in_tenant(session, model, row_id, tenant_id)
    if row is None:
        raise NotFound(f"{what} not found")
    return row
