"""Web Push subscription routes: register, list and remove the caller's browsers and devices, and
hand the front end the VAPID public key it subscribes with.

A browser subscribes with::

    const headers = { 'Authorization': `Bearer ${token}`, 'Content-Type': 'application/json' };
    const { data } = await (await fetch('/api/v1/push-subscriptions/vapid-public-key',
                                        { headers })).json();
    const subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: data.public_key });
    await fetch('/api/v1/push-subscriptions',
                { method: 'POST', headers, body: JSON.stringify(subscription) });
"""

from __future__ import annotations

import math
import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field, field_validator

from notiflow.auth.deps import CurrentAuth
from notiflow.config import Environment
from notiflow.delivery.webpush import (
    MAX_ENDPOINT_LENGTH,
    VapidConfigError,
    delete_subscription,
    list_subscriptions,
    load_vapid_keys,
    parse_auth_secret,
    parse_p256dh,
    save_subscription,
    validate_endpoint,
)
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.kit.errors import InvalidInput, NotFound, NotiflowError
from notiflow.kit.ids import utcnow
from notiflow.models import PushSubscription
from notiflow.notifications.schemas import DataEnvelope, iso_utc

router = APIRouter(prefix="/api/v1/push-subscriptions", tags=["push"])

_MAX_USER_AGENT = 500  # push_subscriptions.user_agent


class WebPushMisconfigured(NotiflowError):
    status_code = 503
    code = "webpush_misconfigured"


# The keys' base64url (the standard alphabet and padding accepted too): 65 bytes are 87
# characters, 16 bytes 22. The schema states the form; that p256dh is a point on the P-256
# curve is checked on top, and no schema can say it.
P256DH_PATTERN = r"^[A-Za-z0-9_+/-]{87}=?$"
AUTH_SECRET_PATTERN = r"^[A-Za-z0-9_+/-]{22}(?:==)?$"  # noqa: S105 - a pattern, not a secret
# An http(s) URL of printable ASCII; validate_endpoint checks the rest (host, credentials...).
ENDPOINT_PATTERN = r"^https?://[!-~]+$"


def _matching(value: str, pattern: str, what: str) -> str:
    if re.fullmatch(pattern, value) is None:
        raise ValueError(what)
    return value


class PushSubscriptionKeys(BaseModel):
    # A browser object, not notiflow's schema: fields it may add one day are ignored.
    model_config = ConfigDict(extra="ignore")

    p256dh: Annotated[str, Field(json_schema_extra={"pattern": P256DH_PATTERN})]
    auth: Annotated[str, Field(json_schema_extra={"pattern": AUTH_SECRET_PATTERN})]

    @field_validator("p256dh")
    @classmethod
    def _p256dh(cls, value: str) -> str:
        _matching(value, P256DH_PATTERN, "must be base64url of a 65-byte P-256 point")
        return parse_p256dh(value)

    @field_validator("auth")
    @classmethod
    def _auth(cls, value: str) -> str:
        _matching(value, AUTH_SECRET_PATTERN, "must be base64url of 16 bytes")
        return parse_auth_secret(value)


class PushSubscriptionRequest(BaseModel):
    """``PushSubscription.toJSON()`` as the browser gives it."""

    model_config = ConfigDict(extra="ignore")

    endpoint: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_ENDPOINT_LENGTH,
            json_schema_extra={"pattern": ENDPOINT_PATTERN},
        ),
    ]
    keys: PushSubscriptionKeys
    # Milliseconds since the epoch, or null (most browsers).
    expiration_time: Annotated[float | None, Field(alias="expirationTime")] = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        # Structure only; whether http://localhost is acceptable depends on the environment
        # and is checked by the route.
        _matching(value, ENDPOINT_PATTERN, "must be an https:// URL")
        return validate_endpoint(value, allow_insecure_localhost=True)

    @field_validator("expiration_time")
    @classmethod
    def _not_expired(cls, value: float | None) -> float | None:
        if value is None:
            return None
        if not math.isfinite(value):
            raise ValueError("must be a number of milliseconds since the epoch, or null")
        if value <= utcnow().timestamp() * 1000:
            raise ValueError("the subscription has already expired")
        return value


class RemovePushSubscriptionRequest(BaseModel):
    # The whole PushSubscription JSON may be sent back; only the endpoint matters.
    model_config = ConfigDict(extra="ignore")

    endpoint: Annotated[str, Field(min_length=1, max_length=MAX_ENDPOINT_LENGTH)]


class PushSubscriptionData(BaseModel):
    id: uuid.UUID
    endpoint: str
    user_agent: str | None
    created_at: str
    last_used_at: str | None

    @classmethod
    def from_model(cls, subscription: PushSubscription) -> PushSubscriptionData:
        return cls(
            id=subscription.id,
            endpoint=subscription.endpoint,
            user_agent=subscription.user_agent,
            created_at=iso_utc(subscription.created_at) or "",
            last_used_at=iso_utc(subscription.last_used_at),
        )


class VapidPublicKeyData(BaseModel):
    public_key: str  # base64url uncompressed P-256 point: pushManager's applicationServerKey


@router.post("", status_code=201, response_model=DataEnvelope[PushSubscriptionData])
async def register(
    body: PushSubscriptionRequest,
    auth: CurrentAuth,
    session: SessionDep,
    context: AppContextDep,
    user_agent: Annotated[str | None, Header()] = None,
) -> DataEnvelope[PushSubscriptionData]:
    """Register the browser's push subscription for the caller. Registering an endpoint again
    updates its keys; an endpoint another user registered before moves to the caller (the
    browser now belongs to whoever signed in last)."""
    if context.settings.env is Environment.PRODUCTION:
        try:
            validate_endpoint(body.endpoint, allow_insecure_localhost=False)
        except ValueError as error:
            raise InvalidInput(
                f"endpoint: {error}",
                details=[{"loc": ["body", "endpoint"], "msg": str(error), "type": "value_error"}],
            ) from None
    agent = " ".join(user_agent.split())[:_MAX_USER_AGENT] if user_agent else None
    subscription = await save_subscription(
        session,
        user_id=auth.user.id,
        endpoint=body.endpoint,
        p256dh=body.keys.p256dh,
        auth=body.keys.auth,
        user_agent=agent or None,
    )
    return DataEnvelope(data=PushSubscriptionData.from_model(subscription))


@router.delete("", status_code=204)
async def unregister(
    body: RemovePushSubscriptionRequest, auth: CurrentAuth, session: SessionDep
) -> None:
    """Remove the caller's subscription with this endpoint (after
    ``PushSubscription.unsubscribe()`` in the browser). 404 if the caller has none."""
    if not await delete_subscription(session, user_id=auth.user.id, endpoint=body.endpoint):
        raise NotFound("no push subscription with this endpoint")


@router.get("", response_model=DataEnvelope[list[PushSubscriptionData]])
async def index(auth: CurrentAuth, session: SessionDep) -> DataEnvelope[list[PushSubscriptionData]]:
    """The caller's push subscriptions, oldest first (at most 20, so not paginated)."""
    subscriptions = await list_subscriptions(session, auth.user.id)
    return DataEnvelope(data=[PushSubscriptionData.from_model(item) for item in subscriptions])


@router.get("/vapid-public-key", response_model=DataEnvelope[VapidPublicKeyData])
async def vapid_public_key(
    _auth: CurrentAuth, context: AppContextDep
) -> DataEnvelope[VapidPublicKeyData]:
    """The server's VAPID public key, for ``pushManager.subscribe({applicationServerKey})``.
    The key is not secret, but like every /api/v1 route this one takes a token (a page asks for
    it once signed in, right before subscribing). 404 when Web Push is not configured."""
    try:
        keys = load_vapid_keys(context.settings)
    except VapidConfigError as error:
        raise WebPushMisconfigured(str(error)) from None
    if keys is None:
        raise NotFound(
            "Web Push is not configured on this server: set NOTIFLOW_VAPID_PRIVATE_KEY and "
            "NOTIFLOW_VAPID_PUBLIC_KEY (`notiflow webpush keys` generates a pair)",
            code="webpush_not_configured",
        )
    return DataEnvelope(data=VapidPublicKeyData(public_key=keys.public_key))
