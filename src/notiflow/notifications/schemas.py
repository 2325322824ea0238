"""Request and response models: notifications and preferences as the API takes and returns them."""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from notiflow.kit.pagination import PageMeta
from notiflow.kit.text import NO_NUL_PATTERN, NOT_BLANK_PATTERN, require_text
from notiflow.models import Notification, NotificationDelivery
from notiflow.notifications.events import NotificationRecord
from notiflow.notifications.policy import PolicyRule, TenantNotificationSettings, effective_policy
from notiflow.notifications.preferences import PreferenceUpdate
from notiflow.notifications.types import NotificationChannel, NotificationType, type_spec

MAX_DATA_BYTES = 16_384
# Where a notification leads: an http(s) URL or a path of this site.
ACTION_URL_PATTERN = r"^(?:https://|http://|/)[^\x00]*$"


def _storable_text(value: str) -> str:
    """Refuse text no database column can hold: NUL (PostgreSQL rejects it in text and JSON)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _check_json_value(value: Any, where: str = "data") -> None:
    """Refuse what parses as JSON in Python but cannot be stored or sent back as JSON:
    NaN/Infinity (not JSON, refused by PostgreSQL), NUL and lone surrogates in strings."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: NaN and Infinity are not JSON numbers")
    if isinstance(value, str):
        _check_json_string(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json_string(key, where)
            _check_json_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]")


def _check_json_string(value: str, where: str) -> None:
    if "\x00" in value:
        raise ValueError(f"{where}: strings must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where}: strings must be valid Unicode (no lone surrogates)") from None


def iso_utc(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


class NotificationData(BaseModel):
    """A notification as the API returns it (timestamps are ISO-8601 UTC strings)."""

    id: uuid.UUID
    type: str
    channel: str
    title: str
    message: str
    data: dict[str, Any] | None
    action_url: str | None
    icon: str | None
    is_read: bool
    read_at: str | None
    created_at: str

    @classmethod
    def from_model(cls, notification: Notification | NotificationRecord) -> NotificationData:
        return cls(
            id=notification.id,
            type=notification.type,
            channel=notification.channel,
            title=notification.title,
            message=notification.message,
            data=notification.data,
            action_url=notification.action_url,
            icon=notification.icon,
            is_read=notification.read_at is not None,
            read_at=iso_utc(notification.read_at),
            created_at=iso_utc(notification.created_at) or "",
        )


class NotificationPreferenceData(BaseModel):
    """One type's preference as the API returns it, with the type's category and the tenant's
    rules for it (what a preferences screen needs to group the types and lock the cells)."""

    notification_type: str
    in_app_enabled: bool
    email_enabled: bool
    push_enabled: bool
    category: str
    tenant_policy: dict[str, PolicyRule] = Field(
        description=(
            "Channels the tenant enforces (always on) or forbids (always off) for this type, "
            "whatever the user's flags say; channels without a rule are left out."
        )
    )

    @classmethod
    def from_preference(
        cls, preference: PreferenceUpdate, tenant: TenantNotificationSettings
    ) -> NotificationPreferenceData:
        rules = effective_policy(preference.notification_type, tenant)
        return cls(
            notification_type=preference.notification_type.value,
            in_app_enabled=preference.in_app_enabled,
            email_enabled=preference.email_enabled,
            push_enabled=preference.push_enabled,
            category=type_spec(preference.notification_type).category.value,
            tenant_policy={channel.value: rule for channel, rule in rules.items()},
        )


class UpdatePreferenceData(BaseModel):
    """One type's preference to store: omitted flags take the type's defaults."""

    model_config = ConfigDict(extra="forbid")

    notification_type: NotificationType
    # Strict: true or false, as the schema says (not 0, 1 or "yes").
    in_app_enabled: StrictBool = True
    email_enabled: StrictBool = True
    push_enabled: StrictBool = False


def _one_per_type(schema: dict[str, Any]) -> None:
    """``preferences`` names each type at most once: for every type, at most one item
    contains it (JSON Schema 2020-12 ``maxContains``; ``minContains: 0`` lets it be absent)."""
    schema["allOf"] = [
        {
            "contains": {
                "required": ["notification_type"],
                "properties": {"notification_type": {"const": notification_type.value}},
            },
            "minContains": 0,
            "maxContains": 1,
        }
        for notification_type in NotificationType
    ]


def _either_shape(schema: dict[str, Any]) -> None:
    """The body is ``{"preferences": [...]}`` or one UpdatePreferenceData object on its own."""
    kept = ("title", "description")
    list_shape = {key: schema.pop(key) for key in list(schema) if key not in kept}
    single = UpdatePreferenceData.model_json_schema()
    single.pop("title", None)
    single.pop("description", None)
    single["properties"]["notification_type"] = {
        "type": "string",
        "enum": [notification_type.value for notification_type in NotificationType],
    }
    schema["anyOf"] = [list_shape, single]


class UpdatePreferencesRequest(BaseModel):
    """``{"preferences": [UpdatePreferenceData, ...]}``, or one UpdatePreferenceData object on
    its own (the shape above), taken as a list of one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_either_shape)

    preferences: Annotated[
        list[UpdatePreferenceData],
        Field(min_length=1, max_length=64, json_schema_extra=_one_per_type),
    ]

    @model_validator(mode="before")
    @classmethod
    def _one_preference(cls, data: Any) -> Any:
        if isinstance(data, dict) and "preferences" not in data and "notification_type" in data:
            return {"preferences": [data]}
        return data

    @model_validator(mode="after")
    def _unique_types(self) -> Self:
        types = [preference.notification_type for preference in self.preferences]
        if len(set(types)) != len(types):
            raise ValueError("each notification_type may appear only once")
        return self


class MarkMultipleReadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=1000)]


class GlobalPreferencesRequest(BaseModel):
    """The user's master switches for email and push."""

    # At least one of the two (the schema's minProperties; the model refuses ``{}`` too).
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    # Either may be left out; neither may be null nor other than true/false (the schema shows a
    # boolean only).
    email_notifications_enabled: StrictBool | SkipJsonSchema[None] = None
    push_notifications_enabled: StrictBool | SkipJsonSchema[None] = None

    @field_validator("email_notifications_enabled", "push_notifications_enabled", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must be true or false (leave the field out to keep it)")
        return value

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.email_notifications_enabled is None and self.push_notifications_enabled is None:
            raise ValueError("give email_notifications_enabled and/or push_notifications_enabled")
        return self


class SendNotificationRequest(BaseModel):
    """Body of ``POST /api/v1/notifications/send``: ``user_ids`` or ``audience: "tenant"``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # Exactly one audience: a list of users, or the whole tenant (null is as absent).
            "oneOf": [
                {
                    "required": ["user_ids"],
                    "properties": {"user_ids": {"type": "array"}, "audience": {"type": "null"}},
                },
                {
                    "required": ["audience"],
                    "properties": {"audience": {"const": "tenant"}, "user_ids": {"type": "null"}},
                },
            ]
        },
    )

    user_ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=1000)] | None = None
    audience: Literal["tenant"] | None = None
    type: NotificationType
    title: Annotated[
        str, Field(min_length=1, max_length=200, json_schema_extra={"pattern": NOT_BLANK_PATTERN})
    ]
    message: Annotated[
        str,
        Field(min_length=1, max_length=10_000, json_schema_extra={"pattern": NOT_BLANK_PATTERN}),
    ]
    data: dict[str, Any] | None = None
    action_url: (
        Annotated[str, Field(max_length=255, json_schema_extra={"pattern": ACTION_URL_PATTERN})]
        | None
    ) = None
    icon: (
        Annotated[
            str,
            Field(min_length=1, max_length=255, json_schema_extra={"pattern": NO_NUL_PATTERN}),
        ]
        | None
    ) = None
    channels: (
        Annotated[
            list[NotificationChannel],
            Field(min_length=1, max_length=4, json_schema_extra={"uniqueItems": True}),
        ]
        | None
    ) = None
    dedupe_key: (
        Annotated[
            str,
            Field(min_length=1, max_length=200, json_schema_extra={"pattern": NO_NUL_PATTERN}),
        ]
        | None
    ) = None

    @field_validator("title", "message")
    @classmethod
    def _not_blank(cls, value: str, info: ValidationInfo) -> str:
        return require_text(value, str(info.field_name))

    @field_validator("title", "message", "action_url", "icon", "dedupe_key")
    @classmethod
    def _storable(cls, value: str | None) -> str | None:
        return _storable_text(value) if value is not None else None

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        _check_json_value(value)
        if len(json.dumps(value, separators=(",", ":"))) > MAX_DATA_BYTES:
            raise ValueError(f"data must serialize to at most {MAX_DATA_BYTES} bytes of JSON")
        return value

    @field_validator("action_url")
    @classmethod
    def _action_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://", "/")):
            raise ValueError("must be an http(s) URL or a path starting with '/'")
        return value

    @model_validator(mode="after")
    def _one_audience(self) -> Self:
        if (self.user_ids is None) == (self.audience is None):
            raise ValueError("give exactly one of user_ids or audience='tenant'")
        if self.channels is not None and len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        return self


class SentNotification(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID


class SendResponseData(BaseModel):
    event_id: uuid.UUID
    created: int
    deduplicated: int
    notifications: list[SentNotification]


class DeliveryData(BaseModel):
    channel: str
    status: str
    reason: str | None
    attempts: int
    next_attempt_at: str | None
    sent_at: str | None
    provider_message_id: str | None
    last_error: str | None
    updated_at: str

    @classmethod
    def from_model(cls, delivery: NotificationDelivery) -> DeliveryData:
        return cls(
            channel=delivery.channel,
            status=delivery.status,
            reason=delivery.reason,
            attempts=delivery.attempts,
            next_attempt_at=iso_utc(delivery.next_attempt_at),
            sent_at=iso_utc(delivery.sent_at),
            provider_message_id=delivery.provider_message_id,
            last_error=delivery.last_error,
            updated_at=iso_utc(delivery.updated_at) or "",
        )


class LedgerData(BaseModel):
    notification: NotificationData
    deliveries: list[DeliveryData]


class UnreadCountData(BaseModel):
    count: int


class UpdatedCountData(BaseModel):
    updated: int


class NotificationPage(BaseModel):
    data: list[NotificationData]
    meta: PageMeta


DataT = TypeVar("DataT")


class DataEnvelope(BaseModel, Generic[DataT]):
    data: DataT


__all__ = [
    "DataEnvelope",
    "DeliveryData",
    "GlobalPreferencesRequest",
    "LedgerData",
    "MarkMultipleReadRequest",
    "NotificationData",
    "NotificationPage",
    "NotificationPreferenceData",
    "SendNotificationRequest",
    "SendResponseData",
    "TenantNotificationSettings",
    "UnreadCountData",
    "UpdatePreferenceData",
    "UpdatePreferencesRequest",
    "UpdatedCountData",
]
