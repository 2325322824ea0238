"""Routes about the caller: ``GET /api/v1/user`` and the global notification switches."""

from __future__ import annotations

from fastapi import APIRouter

from notiflow.auth.deps import CurrentAuth
from notiflow.notifications.deps import NotificationServiceDep
from notiflow.notifications.schemas import DataEnvelope, GlobalPreferencesRequest
from notiflow.tenancy.schemas import UserData

router = APIRouter(prefix="/api/v1", tags=["user"])


@router.get("/user", response_model=DataEnvelope[UserData])
async def current_user(auth: CurrentAuth) -> DataEnvelope[UserData]:
    return DataEnvelope(data=UserData.from_auth(auth))


@router.patch("/me/notification-preferences", response_model=DataEnvelope[UserData])
async def update_global_preferences(
    body: GlobalPreferencesRequest,
    auth: CurrentAuth,
    service: NotificationServiceDep,
) -> DataEnvelope[UserData]:
    """Turn the email and/or push channel on or off for all types (logged). Only one's own."""
    await service.update_global_settings(
        auth.user,
        email_enabled=body.email_notifications_enabled,
        push_enabled=body.push_notifications_enabled,
        actor=auth,
    )
    return DataEnvelope(data=UserData.from_auth(auth))
