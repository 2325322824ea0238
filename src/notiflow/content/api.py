"""Post routes under /api/v1/workspaces/{workspace_id}/posts: drafts, approval, scheduling."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from notiflow.auth.deps import CurrentAuth
from notiflow.content.schemas import (
    CreatePostRequest,
    PostData,
    PostPage,
    RejectPostRequest,
    TargetMetricsData,
    UpdatePostRequest,
)
from notiflow.content.service import NewPost, PostChanges, PostService
from notiflow.kit.deps import SessionDep
from notiflow.kit.pagination import page_meta
from notiflow.models.platform import PostStatus
from notiflow.notifications.deps import NotificationServiceDep
from notiflow.notifications.schemas import DataEnvelope
from notiflow.tenancy.deps import CurrentWorkspace

router = APIRouter(prefix="/api/v1/workspaces/{workspace_id}/posts", tags=["posts"])


async def get_post_service(
    session: SessionDep, notifications: NotificationServiceDep
) -> PostService:
    return PostService(session, notifications)


PostServiceDep = Annotated[PostService, Depends(get_post_service)]


PostEnvelope = DataEnvelope[PostData]


@router.get("", response_model=PostPage)
async def list_posts(
    workspace: CurrentWorkspace,
    service: PostServiceDep,
    status: PostStatus | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 15,
) -> PostPage:
    """The workspace's posts, newest first, optionally of one ``status``."""
    result = await service.list_posts(workspace, status=status, page=page, per_page=per_page)
    return PostPage(
        data=[PostData.from_view(view) for view in result.items], meta=page_meta(result)
    )


@router.post("", status_code=201, response_model=PostEnvelope)
async def create_post(
    body: CreatePostRequest,
    workspace: CurrentWorkspace,
    caller: CurrentAuth,
    service: PostServiceDep,
) -> PostEnvelope:
    """A draft to the given accounts of the workspace; submit it to have it published."""
    view = await service.create(
        workspace,
        caller,
        NewPost(content=body.content, account_ids=body.account_ids, scheduled_at=body.scheduled_at),
    )
    return PostEnvelope(data=PostData.from_view(view))


@router.get("/{post_id}", response_model=PostEnvelope)
async def get_post(
    post_id: uuid.UUID, workspace: CurrentWorkspace, service: PostServiceDep
) -> PostEnvelope:
    return PostEnvelope(data=PostData.from_view(await service.get_post(workspace, post_id)))


@router.patch("/{post_id}", response_model=PostEnvelope)
async def update_post(
    post_id: uuid.UUID,
    body: UpdatePostRequest,
    workspace: CurrentWorkspace,
    caller: CurrentAuth,
    service: PostServiceDep,
) -> PostEnvelope:
    """Edit a draft, submitted or scheduled post (409 once publishing has started)."""
    changes = PostChanges(
        content=body.content,
        account_ids=body.account_ids,
        scheduled_at=body.scheduled_at,
        clear_schedule=body.clears_schedule,
    )
    view = await service.update(workspace, post_id, caller, changes)
    return PostEnvelope(data=PostData.from_view(view))


@router.delete("/{post_id}", status_code=204)
async def delete_post(
    post_id: uuid.UUID, workspace: CurrentWorkspace, caller: CurrentAuth, service: PostServiceDep
) -> Response:
    await service.delete(workspace, post_id, caller)
    return Response(status_code=204)


@router.post("/{post_id}/submit", response_model=PostEnvelope)
async def submit_post(
    post_id: uuid.UUID, workspace: CurrentWorkspace, caller: CurrentAuth, service: PostServiceDep
) -> PostEnvelope:
    """Ask the owners/admins for approval (an owner/admin's own post is scheduled at once)."""
    view = await service.submit(workspace, post_id, caller)
    return PostEnvelope(data=PostData.from_view(view))


@router.post("/{post_id}/approve", response_model=PostEnvelope)
async def approve_post(
    post_id: uuid.UUID, workspace: CurrentWorkspace, caller: CurrentAuth, service: PostServiceDep
) -> PostEnvelope:
    view = await service.approve(workspace, post_id, caller)
    return PostEnvelope(data=PostData.from_view(view))


@router.post("/{post_id}/reject", response_model=PostEnvelope)
async def reject_post(
    post_id: uuid.UUID,
    body: RejectPostRequest,
    workspace: CurrentWorkspace,
    caller: CurrentAuth,
    service: PostServiceDep,
) -> PostEnvelope:
    view = await service.reject(workspace, post_id, caller, body.reason)
    return PostEnvelope(data=PostData.from_view(view))


@router.post("/{post_id}/unschedule", response_model=PostEnvelope)
async def unschedule_post(
    post_id: uuid.UUID, workspace: CurrentWorkspace, caller: CurrentAuth, service: PostServiceDep
) -> PostEnvelope:
    """Back to draft (from scheduled or pending approval)."""
    view = await service.unschedule(workspace, post_id, caller)
    return PostEnvelope(data=PostData.from_view(view))


@router.get("/{post_id}/metrics", response_model=DataEnvelope[list[TargetMetricsData]])
async def post_metrics(
    post_id: uuid.UUID,
    workspace: CurrentWorkspace,
    service: PostServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DataEnvelope[list[TargetMetricsData]]:
    """Each target's metric snapshots, newest first (``limit`` per target)."""
    items = await service.metrics(workspace, post_id, limit=limit)
    return DataEnvelope(data=[TargetMetricsData.from_metrics(item) for item in items])
