"""A tenant's notification settings (policy, defaults, push rollout): read and replace, audited."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.actor import Actor
from notiflow.kit.errors import NotFound
from notiflow.models import Tenant
from notiflow.notifications.policy import TenantNotificationSettings


async def get_settings(session: AsyncSession, tenant_id: uuid.UUID) -> TenantNotificationSettings:
    """The tenant's notification settings; what it never set reads as the defaults."""
    tenant = await _tenant(session, tenant_id)
    return TenantNotificationSettings.from_tenant_settings(tenant.settings)


async def replace_settings(
    session: AsyncSession,
    tenant_id: uuid.UUID,
    settings: TenantNotificationSettings,
    *,
    actor: Actor,
) -> TenantNotificationSettings:
    """Replace the tenant's notification settings as a whole, leaving its other settings as
    they are, and record the change (before and after) in the audit log."""
    tenant = await _tenant(session, tenant_id)
    before = TenantNotificationSettings.from_tenant_settings(tenant.settings)
    tenant.settings = {**(tenant.settings or {}), "notifications": settings.model_dump(mode="json")}
    await audit.record(
        session,
        action="tenant.notification_settings.updated",
        subject_type="tenant",
        subject_id=tenant.id,
        before=before.model_dump(mode="json"),
        after=settings.model_dump(mode="json"),
        actor_id=actor.user_id,
        tenant_id=tenant.id,
        ip_address=actor.ip_address,
    )
    return settings


async def _tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return tenant
