"""Notification types and channels and the type registry.

The registry says, for each type, which category it belongs to, which channels are on when neither
the user nor the tenant said otherwise, and whether a tenant admin may *enforce* it on a channel
(the first step of the policy in notifications/policy.py). Adding a type means adding one line
to ``TYPE_REGISTRY``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class NotificationChannel(StrEnum):
    IN_APP = "in_app"
    EMAIL = "email"
    PUSH = "push"
    SMS = "sms"


EXTERNAL_CHANNELS = (NotificationChannel.EMAIL, NotificationChannel.PUSH, NotificationChannel.SMS)


class NotificationType(StrEnum):
    # Content & Approval
    POST_SUBMITTED = "post_submitted"
    POST_APPROVED = "post_approved"
    POST_REJECTED = "post_rejected"
    POST_PUBLISHED = "post_published"
    POST_FAILED = "post_failed"
    POST_SCHEDULED = "post_scheduled"
    # Engagement
    NEW_COMMENT = "new_comment"
    NEW_MENTION = "new_mention"
    INBOX_ASSIGNED = "inbox_assigned"
    # Team
    INVITATION_RECEIVED = "invitation_received"
    INVITATION_ACCEPTED = "invitation_accepted"
    MEMBER_ADDED = "member_added"
    MEMBER_REMOVED = "member_removed"
    ROLE_CHANGED = "role_changed"
    # Billing
    SUBSCRIPTION_CREATED = "subscription_created"
    SUBSCRIPTION_RENEWED = "subscription_renewed"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"
    PAYMENT_FAILED = "payment_failed"
    TRIAL_ENDING = "trial_ending"
    TRIAL_ENDED = "trial_ended"
    # Social Accounts
    ACCOUNT_CONNECTED = "account_connected"
    ACCOUNT_DISCONNECTED = "account_disconnected"
    ACCOUNT_TOKEN_EXPIRING = "account_token_expiring"  # noqa: S105 - a type name, not a secret
    ACCOUNT_TOKEN_EXPIRED = "account_token_expired"  # noqa: S105 - a type name, not a secret
    # Support
    TICKET_CREATED = "ticket_created"
    TICKET_REPLIED = "ticket_replied"
    TICKET_RESOLVED = "ticket_resolved"
    # Data Privacy
    DATA_EXPORT_READY = "data_export_ready"
    DATA_DELETION_SCHEDULED = "data_deletion_scheduled"
    DATA_DELETION_COMPLETED = "data_deletion_completed"
    # System
    SYSTEM_ANNOUNCEMENT = "system_announcement"
    MAINTENANCE_SCHEDULED = "maintenance_scheduled"


class Category(StrEnum):
    CONTENT = "content"
    ENGAGEMENT = "engagement"
    TEAM = "team"
    BILLING = "billing"
    SOCIAL_ACCOUNTS = "social_accounts"
    SUPPORT = "support"
    PRIVACY = "privacy"
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class TypeSpec:
    category: Category
    email: bool
    push: bool = True
    sms: bool = False
    in_app: bool = True
    # May a tenant admin make this type mandatory on a channel ("enforced" policy)?
    enforceable: bool = False

    def default_for(self, channel: NotificationChannel) -> bool:
        enabled: bool = getattr(self, channel.value)
        return enabled

    @property
    def icon(self) -> str:
        return self.category.value


_T = NotificationType
_C = Category

TYPE_REGISTRY: dict[NotificationType, TypeSpec] = {
    _T.POST_SUBMITTED: TypeSpec(_C.CONTENT, email=True),
    _T.POST_APPROVED: TypeSpec(_C.CONTENT, email=True),
    _T.POST_REJECTED: TypeSpec(_C.CONTENT, email=True),
    _T.POST_PUBLISHED: TypeSpec(_C.CONTENT, email=False),
    _T.POST_FAILED: TypeSpec(_C.CONTENT, email=True, enforceable=True),
    _T.POST_SCHEDULED: TypeSpec(_C.CONTENT, email=False),
    _T.NEW_COMMENT: TypeSpec(_C.ENGAGEMENT, email=False),
    _T.NEW_MENTION: TypeSpec(_C.ENGAGEMENT, email=True),
    _T.INBOX_ASSIGNED: TypeSpec(_C.ENGAGEMENT, email=True),
    _T.INVITATION_RECEIVED: TypeSpec(_C.TEAM, email=True),
    _T.INVITATION_ACCEPTED: TypeSpec(_C.TEAM, email=True),
    _T.MEMBER_ADDED: TypeSpec(_C.TEAM, email=False),
    _T.MEMBER_REMOVED: TypeSpec(_C.TEAM, email=True, enforceable=True),
    _T.ROLE_CHANGED: TypeSpec(_C.TEAM, email=True, enforceable=True),
    _T.SUBSCRIPTION_CREATED: TypeSpec(_C.BILLING, email=True),
    _T.SUBSCRIPTION_RENEWED: TypeSpec(_C.BILLING, email=True, push=False),
    _T.SUBSCRIPTION_CANCELLED: TypeSpec(_C.BILLING, email=True, enforceable=True),
    _T.PAYMENT_FAILED: TypeSpec(_C.BILLING, email=True, sms=True, enforceable=True),
    _T.TRIAL_ENDING: TypeSpec(_C.BILLING, email=True, enforceable=True),
    _T.TRIAL_ENDED: TypeSpec(_C.BILLING, email=True, enforceable=True),
    _T.ACCOUNT_CONNECTED: TypeSpec(_C.SOCIAL_ACCOUNTS, email=False),
    _T.ACCOUNT_DISCONNECTED: TypeSpec(_C.SOCIAL_ACCOUNTS, email=True),
    _T.ACCOUNT_TOKEN_EXPIRING: TypeSpec(_C.SOCIAL_ACCOUNTS, email=True, enforceable=True),
    _T.ACCOUNT_TOKEN_EXPIRED: TypeSpec(_C.SOCIAL_ACCOUNTS, email=True, sms=True, enforceable=True),
    _T.TICKET_CREATED: TypeSpec(_C.SUPPORT, email=True),
    _T.TICKET_REPLIED: TypeSpec(_C.SUPPORT, email=True),
    _T.TICKET_RESOLVED: TypeSpec(_C.SUPPORT, email=True),
    _T.DATA_EXPORT_READY: TypeSpec(_C.PRIVACY, email=True, enforceable=True),
    _T.DATA_DELETION_SCHEDULED: TypeSpec(_C.PRIVACY, email=True, enforceable=True),
    _T.DATA_DELETION_COMPLETED: TypeSpec(_C.PRIVACY, email=True, enforceable=True),
    _T.SYSTEM_ANNOUNCEMENT: TypeSpec(_C.SYSTEM, email=True, enforceable=True),
    _T.MAINTENANCE_SCHEDULED: TypeSpec(_C.SYSTEM, email=True, enforceable=True),
}


def type_spec(notification_type: NotificationType) -> TypeSpec:
    return TYPE_REGISTRY[notification_type]
