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
    UserSequence,
)
from notiflow.models.platform import (
    DataDeletionRequest,
    DataExportRequest,
    InboxItem,
    JobLock,
    Post,
    PostMetricSnapshot,
    PostTarget,
    PublishAttempt,
    SocialAccount,
    WorkspaceSchedule,
)
from notiflow.models.tenancy import Invitation, Membership, Tenant, User, Workspace
from notiflow.models.webhooks import WebhookEvent

__all__ = [
    "AuditLog",
    "DataDeletionRequest",
    "DataExportRequest",
    "FailedJob",
    "IdempotencyKey",
    "InboxItem",
    "Invitation",
    "JobAttempt",
    "JobLock",
    "Membership",
    "Notification",
    "NotificationDelivery",
    "NotificationPreference",
    "PersonalAccessToken",
    "Post",
    "PostMetricSnapshot",
    "PostTarget",
    "PublishAttempt",
    "PushSubscription",
    "SocialAccount",
    "Tenant",
    "User",
    "UserSequence",
    "WebhookEvent",
    "Workspace",
    "WorkspaceSchedule",
]
