"""Every ORM model, importable from one place (Alembic and the tests rely on it)."""

from notiflow.models.audit import AuditLog
from notiflow.models.auth import PersonalAccessToken
from notiflow.models.notifications import (
    IdempotencyKey,
    Notification,
    NotificationDelivery,
    NotificationPreference,
)
from notiflow.models.tenancy import Membership, Tenant, User, Workspace

__all__ = [
    "AuditLog",
    "IdempotencyKey",
    "Membership",
    "Notification",
    "NotificationDelivery",
    "NotificationPreference",
    "PersonalAccessToken",
    "Tenant",
    "User",
    "Workspace",
]
