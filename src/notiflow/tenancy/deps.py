"""The workspace named by a route's path, within the caller's tenant."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from notiflow.auth.deps import CurrentAuth
from notiflow.kit.deps import SessionDep
from notiflow.kit.tenant_scope import get_in_tenant
from notiflow.models import Workspace


async def get_workspace(
    workspace_id: uuid.UUID, auth: CurrentAuth, session: SessionDep
) -> Workspace:
    """The workspace of the path, if it belongs to the caller's tenant (else 404, as if it did
    not exist: tenant data never leaks)."""
    return await get_in_tenant(session, Workspace, workspace_id, auth.tenant_id, what="workspace")


CurrentWorkspace = Annotated[Workspace, Depends(get_workspace)]
