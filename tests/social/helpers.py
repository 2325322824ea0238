"""Reading back what users were told and what is stored, for the social tests."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from notiflow.main.runtime import Runtime
from notiflow.models import Notification, SocialAccount


async def notified(runtime: Runtime, user_id: uuid.UUID, type_: str) -> int:
    """How many in-app notifications of this type the user has."""
    async with runtime.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Notification)
            .where(
                Notification.user_id == user_id,
                Notification.type == type_,
                Notification.channel == "in_app",
            )
        )
    return int(count or 0)


async def reload_account(runtime: Runtime, account_id: uuid.UUID) -> SocialAccount:
    async with runtime.sessionmaker() as session:
        account = await session.get(SocialAccount, account_id)
        assert account is not None
        return account
