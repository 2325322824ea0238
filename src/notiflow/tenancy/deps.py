"""The workspace named by a route's path, within the caller's tenant."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from notiflow.auth.deps import CurrentAuth
from notiflow.kit.deps import SessionDep
from notiflow.kit.errors import NotFound
from notiflow.models import Workspace


async def get_workspace(
    workspace_id: uuid.UUID, auth: CurrentAuth, session: SessionDep
) -> Workspace:
    """The workspace of the path, if it belongs to the caller's tenant (else 404, as if it did
    not exist: tenant data never leaks)."""
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None or workspace.tenant_id != auth.tenant_id:
        raise NotFound("workspace not found")
    return workspace


CurrentWorkspace = Annotated[Workspace, Depends(get_workspace)]
