"""Inbox routes under ``/api/v1/workspaces/{workspace_id}/inbox``: list, assign, archive."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from notiflow.auth.deps import CurrentAuth
from notiflow.inbox import service
from notiflow.inbox.schemas import AssignRequest, InboxItemData, InboxPage
from notiflow.inbox.service import InboxFilters, InboxKind
from notiflow.kit.deps import SessionDep
from notiflow.kit.errors import InvalidInput
from notiflow.kit.ids import utcnow
from notiflow.kit.pagination import Cursor, CursorQuery, page_meta
from notiflow.notifications.deps import NotifyingContextDep
from notiflow.notifications.schemas import DataEnvelope
from notiflow.tenancy.deps import CurrentWorkspace

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/inbox", tags=["inbox"])


# ``me``, ``none`` or a user id in its hyphenated form (either case).
ASSIGNEE_PATTERN = (
    r"^(?:me|none|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)
_ASSIGNEE = re.compile(ASSIGNEE_PATTERN)


def _assignee_filter(value: str | None, me: uuid.UUID) -> tuple[uuid.UUID | None, bool]:
    """``me``, ``none`` (unassigned) or a user id -> (user id, unassigned)."""
    if value is None:
        return None, False
    if _ASSIGNEE.fullmatch(value) is None:
        raise InvalidInput(
            "assigned_to: use 'me', 'none' or a user id",
            details=[{"loc": ["query", "assigned_to"], "msg": "not 'me', 'none' or a user id"}],
        )
    if value == "me":
        return me, False
    if value == "none":
        return None, True
    return uuid.UUID(value), False


@router.get("", response_model=InboxPage)
async def index(
    workspace: CurrentWorkspace,
    auth: CurrentAuth,
    session: SessionDep,
    archived: bool = False,
    assigned_to: Annotated[
        str | None, Query(max_length=64, json_schema_extra={"pattern": ASSIGNEE_PATTERN})
    ] = None,
    kind: InboxKind | None = None,
    social_account_id: uuid.UUID | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: CursorQuery = None,
) -> InboxPage:
    """The workspace's comments and mentions, newest first. ``archived=true`` shows the archive;
    ``assigned_to`` is ``me``, ``none`` or a user id; ``kind`` is ``comment`` or ``mention``.
    Page with page/per_page (totals included) or with the ``cursor`` of ``meta.next_cursor``."""
    assignee, unassigned = _assignee_filter(assigned_to, auth.user.id)
    result = await service.list_items(
        session,
        workspace.id,
        InboxFilters(
            archived=archived,
            assigned_to=assignee,
            unassigned=unassigned,
            kind=kind,
            social_account_id=social_account_id,
        ),
        page=page,
        per_page=per_page,
        cursor=Cursor.from_query(cursor),
    )
    return InboxPage(
        data=[InboxItemData.from_model(item) for item in result.items], meta=page_meta(result)
    )


@router.get("/{item_id}", response_model=DataEnvelope[InboxItemData])
async def show(
    workspace: CurrentWorkspace, item_id: uuid.UUID, session: SessionDep
) -> DataEnvelope[InboxItemData]:
    item = await service.get_item(session, workspace.id, item_id)
    return DataEnvelope(data=InboxItemData.from_model(item))


@router.post("/{item_id}/assign", response_model=DataEnvelope[InboxItemData])
async def assign(
    workspace: CurrentWorkspace,
    item_id: uuid.UUID,
    body: AssignRequest,
    auth: CurrentAuth,
    session: SessionDep,
    context: NotifyingContextDep,
) -> DataEnvelope[InboxItemData]:
    """Assign the item to a member of the tenant (any member may; 422 if the assignee is not
    one). The assignee is notified (``inbox_assigned``) unless they assigned themselves."""
    item = await service.get_item(session, workspace.id, item_id, for_update=True)
    await service.assign(context, session, item, body.user_id, actor=auth, now=utcnow())
    return DataEnvelope(data=InboxItemData.from_model(item))


@router.post("/{item_id}/unassign", response_model=DataEnvelope[InboxItemData])
async def unassign(
    workspace: CurrentWorkspace,
    item_id: uuid.UUID,
    auth: CurrentAuth,
    session: SessionDep,
) -> DataEnvelope[InboxItemData]:
    item = await service.get_item(session, workspace.id, item_id, for_update=True)
    await service.unassign(session, item, actor=auth)
    return DataEnvelope(data=InboxItemData.from_model(item))


@router.post("/{item_id}/archive", response_model=DataEnvelope[InboxItemData])
async def archive(
    workspace: CurrentWorkspace, item_id: uuid.UUID, session: SessionDep
) -> DataEnvelope[InboxItemData]:
    item = await service.get_item(session, workspace.id, item_id)
    await service.set_archived(session, item, True, now=utcnow())
    return DataEnvelope(data=InboxItemData.from_model(item))


@router.post("/{item_id}/unarchive", response_model=DataEnvelope[InboxItemData])
async def unarchive(
    workspace: CurrentWorkspace, item_id: uuid.UUID, session: SessionDep
) -> DataEnvelope[InboxItemData]:
    item = await service.get_item(session, workspace.id, item_id)
    await service.set_archived(session, item, False, now=utcnow())
    return DataEnvelope(data=InboxItemData.from_model(item))
