"""The notification service of a request, working in the request's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from notiflow.kit.deps import SessionDep, app_context
from notiflow.notifications.ports import NotifyingContext
from notiflow.notifications.service import NotificationService

NotifyingContextDep = Annotated[NotifyingContext, Depends(app_context)]


async def get_notification_service(
    context: NotifyingContextDep, session: SessionDep
) -> NotificationService:
    return context.notification_service(session)


NotificationServiceDep = Annotated[NotificationService, Depends(get_notification_service)]
