"""The one recipient loader: a tenant's members with their preferences, on both backends."""

from __future__ import annotations

import uuid

from notiflow.main.runtime import Runtime
from notiflow.models import NotificationPreference
from notiflow.models.tenancy import Role
from notiflow.notifications.recipients import load_recipients
from notiflow.notifications.types import NotificationType
from tests.conftest import MakeMember


async def test_recipients_are_the_tenants_members_with_their_preference(
    runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member(role=Role.ADMIN)
    member = await make_member(email_notifications_enabled=False)
    outsider = await make_member("other tenant")
    notification_type = NotificationType.SYSTEM_ANNOUNCEMENT
    async with runtime.sessionmaker() as session:
        session.add(
            NotificationPreference(
                user_id=member.id,
                notification_type=notification_type.value,
                in_app_enabled=True,
                email_enabled=False,
                push_enabled=True,
            )
        )
        await session.commit()
        everyone = await load_recipients(session, admin.tenant_id, notification_type)
        chosen = await load_recipients(
            session, admin.tenant_id, notification_type, [member.id, outsider.id, uuid.uuid4()]
        )

    assert [recipient.user_id for recipient in everyone] == sorted([admin.id, member.id])
    by_id = {recipient.user_id: recipient for recipient in everyone}
    assert by_id[admin.id].is_admin
    assert not by_id[member.id].is_admin
    assert by_id[admin.id].preferences == {}
    assert not by_id[member.id].email_enabled
    flags = by_id[member.id].preferences[notification_type]
    assert (flags.in_app, flags.email, flags.push) == (True, False, True)
    assert chosen == [by_id[member.id]]  # the outsider and the unknown id are left out
