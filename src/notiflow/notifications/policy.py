"""Effective preference resolution: a pure function from settings to a decision.

For (user, type, channel) the first matching rule wins:

1. tenant policy: ``forbidden`` -> off; ``enforced`` -> on (only types marked enforceable);
2. the user's global email/push switch is off -> off;
3. the user's per-type preference row -> its flag;
4. the tenant's default for (type, channel), if set;
5. the type registry's default.

Channel preconditions come first (SMS needs a verified phone number) and the push rollout stage
last (a user outside the stage gets ``rollout`` even when everything else says yes). Every answer
carries a reason so the delivery ledger can explain it.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from notiflow.config import parse_push_rollout
from notiflow.notifications.types import NotificationChannel, NotificationType, type_spec


class Reason(StrEnum):
    """Why a channel was (or, for ``TENANT_ENFORCED``, was notably) decided the way it was."""

    TENANT_ENFORCED = "tenant_enforced"
    TENANT_POLICY = "tenant_policy"
    USER_GLOBAL_OFF = "user_global_off"
    USER_TYPE_OFF = "user_type_off"
    TENANT_DEFAULT_OFF = "tenant_default_off"
    TYPE_DEFAULT_OFF = "type_default_off"
    ROLLOUT = "rollout"
    NO_VERIFIED_PHONE = "no_verified_phone"


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason | None = None


ALLOW = Decision(allowed=True)

PolicyRule = Literal["enforced", "forbidden"]
# What ``push_rollout`` may be set to through the API: all, admins, or a percentage 0-100 (the
# ``%`` sign optional). parse_push_rollout also reads NOTIFLOW_PUSH_ROLLOUT, which is laxer.
PUSH_ROLLOUT_PATTERN = r"^(?:all|admins|(?:100|[1-9]?[0-9])%?)$"
_PUSH_ROLLOUT = re.compile(PUSH_ROLLOUT_PATTERN)


def _policy_schema(schema: dict[str, Any]) -> None:
    """Only enforceable types may be ``enforced``: the schema of ``policy`` gives every other
    type's channels ``forbidden`` as their one value, as the validator below requires."""
    channels = [channel.value for channel in NotificationChannel]
    schema["properties"] = {
        notification_type.value: {
            "type": "object",
            "propertyNames": {"enum": channels},
            "additionalProperties": {"const": "forbidden"},
        }
        for notification_type in NotificationType
        if not type_spec(notification_type).enforceable
    }


class TenantNotificationSettings(BaseModel):
    """What a tenant admin controls, stored under ``tenants.settings["notifications"]``."""

    model_config = ConfigDict(extra="forbid")

    policy: dict[NotificationType, dict[NotificationChannel, PolicyRule]] = Field(
        default_factory=dict,
        description="Per type and channel: 'enforced' (always on; critical types only) or "
        "'forbidden' (always off).",
        json_schema_extra=_policy_schema,
    )
    defaults: dict[NotificationType, dict[NotificationChannel, StrictBool]] = Field(
        default_factory=dict,
        description="Per type and channel defaults for members who have not chosen themselves.",
    )
    push_rollout: str | None = Field(
        default=None,
        description="Override of NOTIFLOW_PUSH_ROLLOUT for this tenant: all, admins or 0-100.",
        json_schema_extra={"pattern": PUSH_ROLLOUT_PATTERN},
    )

    @model_validator(mode="after")
    def _check(self) -> TenantNotificationSettings:
        for notification_type, rules in self.policy.items():
            for channel, rule in rules.items():
                if rule == "enforced" and not type_spec(notification_type).enforceable:
                    raise ValueError(
                        f"{notification_type.value} cannot be enforced on {channel.value}: "
                        "only critical types may be made mandatory"
                    )
        if self.push_rollout is not None:
            parse_push_rollout(self.push_rollout)
        return self

    @classmethod
    def from_tenant_settings(cls, settings: dict[str, Any] | None) -> TenantNotificationSettings:
        return cls.model_validate((settings or {}).get("notifications") or {})


class UpdateTenantNotificationSettings(TenantNotificationSettings):
    """The body of ``PUT /api/v1/tenant/notification-settings``: as stored, with
    ``push_rollout`` in exactly the form its pattern shows (settings stored before are read
    as they are)."""

    @model_validator(mode="after")
    def _push_rollout_form(self) -> UpdateTenantNotificationSettings:
        if self.push_rollout is not None and not _PUSH_ROLLOUT.fullmatch(self.push_rollout):
            raise ValueError("push_rollout must be all, admins or a percentage 0-100")
        return self


@dataclass(frozen=True, slots=True)
class PreferenceFlags:
    in_app: bool
    email: bool
    push: bool

    def flag_for(self, channel: NotificationChannel) -> bool | None:
        if channel is NotificationChannel.SMS:
            return None  # preference rows have no SMS column
        enabled: bool = getattr(self, channel.value)
        return enabled


@dataclass(frozen=True, slots=True)
class Recipient:
    """What resolution needs to know about one user in one tenant."""

    user_id: uuid.UUID
    email_enabled: bool = True
    push_enabled: bool = True
    has_verified_phone: bool = False
    is_admin: bool = False
    preferences: dict[NotificationType, PreferenceFlags] = field(default_factory=dict)


def effective_policy(
    notification_type: NotificationType, tenant: TenantNotificationSettings
) -> dict[NotificationChannel, PolicyRule]:
    """The tenant's rules that decide this type's channels before the user's choice (rule 1 of
    :func:`resolve`): ``forbidden`` always, ``enforced`` only on a type that may be enforced."""
    rules: dict[NotificationChannel, PolicyRule] = {}
    for channel, rule in tenant.policy.get(notification_type, {}).items():
        if rule == "forbidden" or type_spec(notification_type).enforceable:
            rules[channel] = rule
    return rules


def in_push_rollout(user_id: uuid.UUID, is_admin: bool, stage: str | int) -> bool:
    """Whether a user is inside the push rollout stage. A percentage picks users by a stable hash
    of their id, so the users who are in at 10% are still in at 50%."""
    if stage == "all":
        return True
    if stage == "admins":
        return is_admin
    bucket = int.from_bytes(hashlib.sha256(user_id.bytes).digest()[:4], "big") % 100
    return bucket < int(stage)


def resolve(
    notification_type: NotificationType,
    channel: NotificationChannel,
    recipient: Recipient,
    tenant: TenantNotificationSettings,
    rollout: str | int = "all",
) -> Decision:
    decision = _resolve_preference(notification_type, channel, recipient, tenant)
    if decision.allowed and channel is NotificationChannel.PUSH:
        stage = parse_push_rollout(tenant.push_rollout) if tenant.push_rollout else rollout
        if not in_push_rollout(recipient.user_id, recipient.is_admin, stage):
            return Decision(allowed=False, reason=Reason.ROLLOUT)
    return decision


def _resolve_preference(
    notification_type: NotificationType,
    channel: NotificationChannel,
    recipient: Recipient,
    tenant: TenantNotificationSettings,
) -> Decision:
    if channel is NotificationChannel.SMS and not recipient.has_verified_phone:
        return Decision(allowed=False, reason=Reason.NO_VERIFIED_PHONE)

    rule = tenant.policy.get(notification_type, {}).get(channel)
    if rule == "forbidden":
        return Decision(allowed=False, reason=Reason.TENANT_POLICY)
    if rule == "enforced" and type_spec(notification_type).enforceable:
        return Decision(allowed=True, reason=Reason.TENANT_ENFORCED)

    if channel is NotificationChannel.EMAIL and not recipient.email_enabled:
        return Decision(allowed=False, reason=Reason.USER_GLOBAL_OFF)
    if channel is NotificationChannel.PUSH and not recipient.push_enabled:
        return Decision(allowed=False, reason=Reason.USER_GLOBAL_OFF)

    flags = recipient.preferences.get(notification_type)
    if flags is not None:
        chosen = flags.flag_for(channel)
        if chosen is not None:
            return ALLOW if chosen else Decision(allowed=False, reason=Reason.USER_TYPE_OFF)

    tenant_default = tenant.defaults.get(notification_type, {}).get(channel)
    if tenant_default is not None:
        return (
            ALLOW if tenant_default else Decision(allowed=False, reason=Reason.TENANT_DEFAULT_OFF)
        )

    if type_spec(notification_type).default_for(channel):
        return ALLOW
    return Decision(allowed=False, reason=Reason.TYPE_DEFAULT_OFF)
