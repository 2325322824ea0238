"""Every ORM model, importable from one place (Alembic and the tests rely on it)."""

from notiflow.models.audit import AuditLog
from notiflow.models.auth import PersonalAccessToken
from notiflow.models.jobs import FailedJob, JobAttempt
from notiflow.models.notifications import (
    IdempotencyKey,
    Notification,
    NotificationDelivery,
    NotificationPreference,
    PushSubscription,
)
from notiflow.models.tenancy import Membership, Tenant, User, Workspace

__all__ = [
    "AuditLog",
    "FailedJob",
    "IdempotencyKey",
    "JobAttempt",
    "Membership",
    "Notification",
    "NotificationDelivery",
    "NotificationPreference",
    "PersonalAccessToken",
    "PushSubscription",
    "Tenant",
    "User",
    "Workspace",
]
