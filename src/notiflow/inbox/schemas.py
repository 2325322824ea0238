"""Request and response models of the inbox API."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from notiflow.kit.pagination import PageMeta
from notiflow.models import InboxItem


class InboxItemData(BaseModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    social_account_id: uuid.UUID
    external_id: str
    kind: str
    author_handle: str
    author_name: str | None
    text: str
    url: str | None
    # Our post target it answers (comments on our posts), when the network says so.
    post_target_id: uuid.UUID | None
    occurred_at: datetime
    fetched_at: datetime
    assigned_to: uuid.UUID | None
    assigned_at: datetime | None
    is_archived: bool
    archived_at: datetime | None

    @classmethod
    def from_model(cls, item: InboxItem) -> InboxItemData:
        return cls(
            id=item.id,
            workspace_id=item.workspace_id,
            social_account_id=item.social_account_id,
            external_id=item.external_id,
            kind=item.kind,
            author_handle=item.author_handle,
            author_name=item.author_name,
            text=item.text,
            url=item.url,
            post_target_id=item.post_target_id,
            occurred_at=item.occurred_at,
            fetched_at=item.fetched_at,
            assigned_to=item.assigned_to,
            assigned_at=item.assigned_at,
            is_archived=item.archived_at is not None,
            archived_at=item.archived_at,
        )


class InboxPage(BaseModel):
    data: list[InboxItemData]
    meta: PageMeta


class AssignRequest(BaseModel):
    user_id: uuid.UUID
