"""Notification routes (under /api/v1/notifications), the send API and the ledger."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse

from notiflow.auth.deps import CurrentAuth, TenantAdmin
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.kit.pagination import Cursor, CursorQuery, page_meta
from notiflow.notifications import idempotency
from notiflow.notifications import tenant_settings as tenant_notification_settings
from notiflow.notifications.deps import NotificationServiceDep
from notiflow.notifications.feed import NotificationFilters
from notiflow.notifications.policy import (
    TenantNotificationSettings,
    UpdateTenantNotificationSettings,
)
from notiflow.notifications.preferences import PreferenceUpdate
from notiflow.notifications.schemas import (
    DataEnvelope,
    DeliveryData,
    LedgerData,
    MarkMultipleReadRequest,
    NotificationData,
    NotificationPage,
    NotificationPreferenceData,
    SendNotificationRequest,
    SendResponseData,
    UnreadCountData,
    UpdatedCountData,
    UpdatePreferencesRequest,
)
from notiflow.notifications.types import Category, NotificationChannel, NotificationType

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
tenant_router = APIRouter(prefix="/api/v1/tenant", tags=["tenant"])


@router.get("", response_model=NotificationPage)
async def index(
    auth: CurrentAuth,
    service: NotificationServiceDep,
    type: NotificationType | None = None,
    is_read: bool | None = None,
    channel: NotificationChannel | None = None,
    category: Category | None = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 15,
    cursor: CursorQuery = None,
) -> NotificationPage:
    """The user's notifications, newest first. Filter by type, category, is_read and channel;
    page with page/per_page (totals included) or with the opaque ``cursor`` from
    ``meta.next_cursor`` (send the same filters with it)."""
    result = await service.list_for_user(
        auth.user.id,
        auth.tenant_id,
        NotificationFilters(type=type, is_read=is_read, channel=channel, category=category),
        page=page,
        per_page=per_page,
        cursor=Cursor.from_query(cursor),
    )
    return NotificationPage(
        data=[NotificationData.from_model(item) for item in result.items],
        meta=page_meta(result),
    )


@router.get("/unread-count", response_model=DataEnvelope[UnreadCountData])
async def unread_count(
    auth: CurrentAuth, service: NotificationServiceDep
) -> DataEnvelope[UnreadCountData]:
    count = await service.get_unread_count(auth.user.id, auth.tenant_id)
    return DataEnvelope(data=UnreadCountData(count=count))


@router.get("/recent", response_model=DataEnvelope[list[NotificationData]])
async def recent(
    auth: CurrentAuth,
    service: NotificationServiceDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> DataEnvelope[list[NotificationData]]:
    items = await service.get_recent(auth.user.id, auth.tenant_id, limit)
    return DataEnvelope(data=[NotificationData.from_model(item) for item in items])


@router.post("/read-all", response_model=DataEnvelope[UpdatedCountData])
async def mark_all_as_read(
    auth: CurrentAuth, service: NotificationServiceDep
) -> DataEnvelope[UpdatedCountData]:
    updated = await service.mark_all_as_read(auth.user.id, auth.tenant_id)
    return DataEnvelope(data=UpdatedCountData(updated=updated))


@router.post("/read-multiple", response_model=DataEnvelope[UpdatedCountData])
async def mark_multiple_as_read(
    body: MarkMultipleReadRequest, auth: CurrentAuth, service: NotificationServiceDep
) -> DataEnvelope[UpdatedCountData]:
    """Mark the given ids read; ids that are not the caller's are ignored (not counted)."""
    updated = await service.mark_multiple_as_read(auth.user.id, auth.tenant_id, body.ids)
    return DataEnvelope(data=UpdatedCountData(updated=updated))


@router.post("/archive-multiple", response_model=DataEnvelope[UpdatedCountData])
async def archive_multiple(
    body: MarkMultipleReadRequest, auth: CurrentAuth, service: NotificationServiceDep
) -> DataEnvelope[UpdatedCountData]:
    """Archive the given ids: out of the feed and the unread count, kept with their ledger;
    ids that are not the caller's (or already archived) are ignored (not counted)."""
    updated = await service.archive(auth.user.id, auth.tenant_id, body.ids)
    return DataEnvelope(data=UpdatedCountData(updated=updated))


@router.post("/delete-multiple", response_model=DataEnvelope[UpdatedCountData])
async def delete_multiple(
    body: MarkMultipleReadRequest, auth: CurrentAuth, service: NotificationServiceDep
) -> DataEnvelope[UpdatedCountData]:
    """Delete the given ids and their ledger rows; ids that are not the caller's are ignored
    (not counted)."""
    deleted = await service.delete(auth.user.id, auth.tenant_id, body.ids)
    return DataEnvelope(data=UpdatedCountData(updated=deleted))


@router.get("/preferences", response_model=DataEnvelope[list[NotificationPreferenceData]])
async def preferences(
    auth: CurrentAuth, service: NotificationServiceDep, session: SessionDep
) -> DataEnvelope[list[NotificationPreferenceData]]:
    """One entry per notification type: the user's choice, or the type's default; its category,
    and the channels the tenant enforces or forbids for it (``tenant_policy``), which override
    the user's choice."""
    return await _preferences_of(auth, service, session)


async def _preferences_of(
    auth: CurrentAuth, service: NotificationServiceDep, session: SessionDep
) -> DataEnvelope[list[NotificationPreferenceData]]:
    items = await service.get_preferences(auth.user.id)
    tenant = await tenant_notification_settings.get_settings(session, auth.tenant_id)
    return DataEnvelope(
        data=[NotificationPreferenceData.from_preference(item, tenant) for item in items]
    )


@router.put("/preferences", response_model=DataEnvelope[list[NotificationPreferenceData]])
async def update_preferences(
    body: UpdatePreferencesRequest,
    auth: CurrentAuth,
    service: NotificationServiceDep,
    session: SessionDep,
) -> DataEnvelope[list[NotificationPreferenceData]]:
    """Set per-type preferences; returns the full list afterwards. Changes are logged."""
    await service.update_preferences(
        auth.user.id,
        [
            PreferenceUpdate(
                notification_type=item.notification_type,
                in_app_enabled=item.in_app_enabled,
                email_enabled=item.email_enabled,
                push_enabled=item.push_enabled,
            )
            for item in body.preferences
        ],
        actor=auth,
    )
    return await _preferences_of(auth, service, session)


@router.post(
    "/send",
    status_code=idempotency.SEND_STATUS_CODE,
    response_model=DataEnvelope[SendResponseData],
)
async def send(
    body: SendNotificationRequest,
    auth: TenantAdmin,
    context: AppContextDep,
    session: SessionDep,
    service: NotificationServiceDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Send a notification to some members (``user_ids``) or all (``audience: "tenant"``) of the
    caller's tenant. Owners and admins only. The same ``Idempotency-Key`` within 24 h replays
    the first response and creates nothing."""
    outcome = await idempotency.send_once(
        session,
        service,
        body,
        tenant_id=auth.tenant_id,
        user_id=auth.user.id,
        key=idempotency_key,
        ttl=timedelta(hours=context.settings.idempotency_ttl_hours),
    )
    if isinstance(outcome, idempotency.Replay):
        return JSONResponse(
            outcome.response,
            status_code=outcome.status_code,
            headers={"Idempotent-Replayed": "true"},
        )
    return outcome


@router.post("/{notification_id}/read", response_model=DataEnvelope[NotificationData])
async def mark_as_read(
    notification_id: uuid.UUID, auth: CurrentAuth, service: NotificationServiceDep
) -> DataEnvelope[NotificationData]:
    notification = await service.get_for_user(auth.user.id, auth.tenant_id, notification_id)
    notification = await service.mark_as_read(notification)
    return DataEnvelope(data=NotificationData.from_model(notification))


@router.post("/{notification_id}/archive", response_model=DataEnvelope[UpdatedCountData])
async def archive(
    notification_id: uuid.UUID, auth: CurrentAuth, service: NotificationServiceDep
) -> DataEnvelope[UpdatedCountData]:
    """Archive one of the caller's notifications (404 if it is not theirs)."""
    notification = await service.get_for_user(auth.user.id, auth.tenant_id, notification_id)
    updated = await service.archive(auth.user.id, auth.tenant_id, [notification.id])
    return DataEnvelope(data=UpdatedCountData(updated=updated))


@router.delete("/{notification_id:uuid}", status_code=204)
async def delete(
    notification_id: uuid.UUID, auth: CurrentAuth, service: NotificationServiceDep
) -> None:
    """Delete one of the caller's notifications and its ledger (404 if it is not theirs)."""
    notification = await service.get_for_user(auth.user.id, auth.tenant_id, notification_id)
    await service.delete(auth.user.id, auth.tenant_id, [notification.id])


@router.get("/{notification_id}/deliveries", response_model=DataEnvelope[LedgerData])
async def deliveries(
    notification_id: uuid.UUID, auth: CurrentAuth, service: NotificationServiceDep
) -> DataEnvelope[LedgerData]:
    """Why did (or didn't) I get this? Each channel with its status and reason."""
    notification, rows = await service.list_deliveries(
        auth.user.id, auth.tenant_id, notification_id
    )
    return DataEnvelope(
        data=LedgerData(
            notification=NotificationData.from_model(notification),
            deliveries=[DeliveryData.from_model(row) for row in rows],
        )
    )


@tenant_router.get(
    "/notification-settings", response_model=DataEnvelope[TenantNotificationSettings]
)
async def tenant_settings(
    auth: TenantAdmin, session: SessionDep
) -> DataEnvelope[TenantNotificationSettings]:
    """The tenant's notification policy (enforced / forbidden), defaults and push rollout."""
    settings = await tenant_notification_settings.get_settings(session, auth.tenant_id)
    return DataEnvelope(data=settings)


@tenant_router.put(
    "/notification-settings", response_model=DataEnvelope[TenantNotificationSettings]
)
async def update_tenant_settings(
    body: UpdateTenantNotificationSettings, auth: TenantAdmin, session: SessionDep
) -> DataEnvelope[TenantNotificationSettings]:
    """Replace the tenant's notification policy and defaults (logged)."""
    settings = await tenant_notification_settings.replace_settings(
        session, auth.tenant_id, body, actor=auth
    )
    return DataEnvelope(data=settings)
