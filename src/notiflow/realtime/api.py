"""HTTP routes of the real-time side, on the API port.

- ``POST /broadcasting/auth``: channel authorization for pusher-js / Laravel Echo (bearer token);
- ``POST /broadcasting/user-auth``: user authentication (``pusher.signin()``), same token;
- ``GET /api/v1/realtime/config``: what a front end needs to connect;
- the Pusher HTTP API (``/apps/{app_id}/...``), signed exactly as the ``pusher`` SDKs sign, so any
  backend can use notiflow as its Pusher server. Its refusals keep notiflow's error shape with
  Pusher's statuses: 400 for invalid parameters (where the rest of the API says 422), 413 for
  event data over 10 KB, 429 over the app's rate limit.

Each request of the Pusher HTTP API is for one app (``notiflow.realtime.apps``): signed with its
secret, answered from its channels only. ``/broadcasting/*`` and the front-end config are
notiflow's own, on the default app.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Protocol
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from notiflow.auth.deps import CurrentAuth
from notiflow.config import Settings
from notiflow.kit.deps import app_context
from notiflow.kit.errors import (
    InvalidInput,
    NotFound,
    NotiflowError,
    PayloadTooLarge,
    Unauthorized,
)
from notiflow.realtime.apps import ApiRateLimiter, PusherApp, PusherApps
from notiflow.realtime.authorization import (
    LAST_SEQUENCE_PATTERN,
    MAX_LAST_SEQUENCE,
    ChannelUser,
    parse_last_sequence,
    require_channel,
    subscription_auth,
    user_authentication,
)
from notiflow.realtime.cache import cache_attribute
from notiflow.realtime.hub import Hub
from notiflow.realtime.notifier import user_channel
from notiflow.realtime.protocol import (
    CHANNEL_NAME_PATTERN,
    MAX_CHANNEL_NAME,
    MAX_EVENT_NAME,
    ChannelKind,
    channel_kind,
    server_to_user_id,
    valid_channel_name,
    valid_user_id,
)
from notiflow.realtime.replay import NOTIFICATION_CREATED, RESYNC_REQUIRED, UNREAD_COUNT_CHANGED
from notiflow.realtime.signing import body_md5, request_signature

# ASCII digits only (``\d`` would take any script's digits); checked with fullmatch.
SOCKET_ID_PATTERN = r"^[0-9]+\.[0-9]+$"
SOCKET_ID_RE = re.compile(SOCKET_ID_PATTERN)
MAX_SOCKET_ID = 50
TIMESTAMP_WINDOW_SECONDS = 600
MAX_EVENT_DATA_BYTES = 10_240
MAX_CHANNELS_PER_EVENT = 100
MAX_BATCH = 10


class RealtimeContext(Protocol):
    """What the realtime routes need from the process: its settings, its apps and each app's
    hub (the channels and presence of this node, or of the cluster when it is joined to one),
    and the apps' HTTP API rate limits."""

    @property
    def settings(self) -> Settings: ...
    @property
    def pusher_apps(self) -> PusherApps: ...
    @property
    def api_rate_limiter(self) -> ApiRateLimiter: ...
    def hub_for(self, app: PusherApp) -> Hub: ...


RealtimeContextDep = Annotated[RealtimeContext, Depends(app_context)]


class InvalidParameters(NotiflowError):
    """A Pusher HTTP API request that cannot be carried out as asked: 400, as Pusher answers
    it (its SDKs raise their bad-request error on it)."""

    status_code = 400
    code = "invalid_parameters"


# The pydantic error type of event data over MAX_EVENT_DATA_BYTES (answered 413).
DATA_TOO_LARGE = "data_too_large"


def _pusher_refusal(error: RequestValidationError) -> NotiflowError:
    """The answer to a request body the Pusher HTTP API cannot take."""
    details = [
        {"loc": list(item.get("loc", ())), "msg": item.get("msg"), "type": item.get("type")}
        for item in error.errors()
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid"}
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
    message = f"{where}: {first['msg']}"
    if details and all(item["type"] == DATA_TOO_LARGE for item in details):
        return PayloadTooLarge(message, details=details)
    if any(item["type"] == "json_invalid" for item in details):
        return InvalidParameters(
            "the request body is not valid JSON", details=details, code="invalid_json"
        )
    return InvalidParameters(message, details=details)


class PusherRoute(APIRoute):
    """A route of the Pusher HTTP API: an invalid body is a 400 (413 for event data over
    10 KB), not the 422 of notiflow's own API."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def pusher_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                raise _pusher_refusal(error) from None

        return pusher_handler


auth_router = APIRouter(tags=["realtime"])
pusher_router = APIRouter(prefix="/apps", tags=["pusher http api"], route_class=PusherRoute)

# ---------------------------------------------------------------------------- /broadcasting/auth


async def _auth_form(request: Request) -> dict[str, str]:
    """pusher-js posts a form (``socket_id=...&channel_name=...``); other clients send JSON."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if "application/json" in content_type:
        try:
            parsed = json.loads(body or b"{}")
        except ValueError:
            raise InvalidInput("the request body is not valid JSON", code="invalid_json") from None
        if not isinstance(parsed, dict):
            raise InvalidInput("expected a JSON object with socket_id and channel_name")
        for key in ("socket_id", "channel_name"):
            if key in parsed and not isinstance(parsed[key], str):
                raise InvalidInput(f"{key} must be a string")
        sequence = parsed.get("last_sequence")
        if isinstance(sequence, float) and sequence.is_integer():
            # JSON has one number type: 7.0 is the integer 7, as JSON Schema says.
            parsed["last_sequence"] = sequence = int(sequence)
        if sequence is not None and (
            isinstance(sequence, bool) or not isinstance(sequence, str | int)
        ):
            raise InvalidInput("last_sequence must be a whole number (or its text)")
        # A number is kept in its text form, as a form would carry it (last_sequence); fields
        # the endpoint does not read are ignored, whatever they hold.
        return {
            key: value if isinstance(value, str) else str(value)
            for key, value in parsed.items()
            if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        }
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def _auth_body(*, channel: bool) -> dict[str, Any]:
    """The request body of ``/broadcasting/auth`` (``channel=True``) or ``/user-auth``, for
    the OpenAPI document: the form pusher-js posts, or the same fields as JSON."""
    properties: dict[str, Any] = {
        "socket_id": {
            "type": "string",
            "pattern": SOCKET_ID_PATTERN,
            "maxLength": MAX_SOCKET_ID,
            "examples": ["123.456"],
        }
    }
    required = ["socket_id"]
    if channel:
        properties["channel_name"] = {
            "type": "string",
            "pattern": CHANNEL_NAME_PATTERN,
            "maxLength": MAX_CHANNEL_NAME,
            "examples": ["private-notifications.0196a0f2-8c3a-7d1e-9b5f-2a4c6e8f0b1d"],
        }
        properties["last_sequence"] = {
            "anyOf": [
                {"type": "string", "pattern": LAST_SEQUENCE_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": MAX_LAST_SEQUENCE},
            ],
            "description": "The last NotificationCreated sequence this client saw (replay).",
        }
        required.append("channel_name")
    schema = {"type": "object", "required": required, "properties": properties}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": schema},
                "application/json": {"schema": schema},
            },
        }
    }


@auth_router.post("/broadcasting/auth", openapi_extra=_auth_body(channel=True))
async def broadcasting_auth(
    request: Request, auth: CurrentAuth, context: RealtimeContextDep
) -> dict[str, str]:
    """Authorize a private or presence subscription: ``private-notifications.{userId}`` only for
    that user, ``private-tenant.{tenantId}`` / ``presence-tenant.{tenantId}`` only with a token
    of that tenant (a user in two tenants holds one token per tenant)."""
    form = await _auth_form(request)
    socket_id = form.get("socket_id", "")
    channel = form.get("channel_name", "")
    if not SOCKET_ID_RE.fullmatch(socket_id) or len(socket_id) > MAX_SOCKET_ID:
        raise InvalidInput("socket_id must look like '123.456'")
    user = ChannelUser(user_id=auth.user.id, tenant_id=auth.tenant_id, name=auth.user.name)
    require_channel(user, channel)
    last_sequence = parse_last_sequence(form.get("last_sequence"))
    return subscription_auth(context.settings, user, socket_id, channel, last_sequence)


@auth_router.post("/broadcasting/user-auth", openapi_extra=_auth_body(channel=False))
async def broadcasting_user_auth(
    request: Request, auth: CurrentAuth, context: RealtimeContextDep
) -> dict[str, str]:
    """Sign a connection in as the token's user (pusher-js ``userAuthentication``, Echo's
    ``signin()``): ``{"auth", "user_data"}`` with ``user_data`` =
    ``{"id": "<user id>", "user_info": {"name": ...}}``."""
    form = await _auth_form(request)
    socket_id = form.get("socket_id", "")
    if not SOCKET_ID_RE.fullmatch(socket_id) or len(socket_id) > MAX_SOCKET_ID:
        raise InvalidInput("socket_id must look like '123.456'")
    user = ChannelUser(user_id=auth.user.id, tenant_id=auth.tenant_id, name=auth.user.name)
    return user_authentication(context.settings, user, socket_id)


# ---------------------------------------------------------------------------- front-end config


class UserAuthenticationOptions(BaseModel):
    """pusher-js's ``userAuthentication`` (Echo adds the bearer token to ``headers``)."""

    endpoint: str
    transport: str = "ajax"
    headers: dict[str, str] = Field(default_factory=dict)


class EchoOptions(BaseModel):
    """Options for ``new Echo({...})`` (pass ``Pusher`` alongside in bundlers without a global)."""

    broadcaster: str = "pusher"
    key: str
    cluster: str
    wsHost: str
    wsPort: int
    wssPort: int
    forceTLS: bool
    enabledTransports: list[str]
    authEndpoint: str
    userAuthentication: UserAuthenticationOptions
    disableStats: bool = True


class RealtimeConfig(BaseModel):
    key: str
    cluster: str
    ws_host: str
    ws_port: int
    force_tls: bool
    auth_endpoint: str
    user_auth_endpoint: str
    channel: str
    events: list[str]
    echo: EchoOptions


@auth_router.get("/api/v1/realtime/config")
async def realtime_config(
    auth: CurrentAuth, context: RealtimeContextDep
) -> dict[str, RealtimeConfig]:
    """Everything a front end needs to connect Laravel Echo or pusher-js to notiflow."""
    settings = context.settings
    host = settings.ws_public_host or settings.ws_host
    port = settings.ws_public_port or settings.ws_port
    force_tls = settings.public_url.startswith("https://")
    auth_endpoint = f"{settings.public_url.rstrip('/')}/broadcasting/auth"
    user_auth_endpoint = f"{settings.public_url.rstrip('/')}/broadcasting/user-auth"
    return {
        "data": RealtimeConfig(
            key=settings.pusher_app_key,
            cluster=settings.pusher_cluster,
            ws_host=host,
            ws_port=port,
            force_tls=force_tls,
            auth_endpoint=auth_endpoint,
            user_auth_endpoint=user_auth_endpoint,
            channel=user_channel(auth.user.id),
            events=[NOTIFICATION_CREATED, UNREAD_COUNT_CHANGED, RESYNC_REQUIRED],
            echo=EchoOptions(
                key=settings.pusher_app_key,
                cluster=settings.pusher_cluster,
                wsHost=host,
                wsPort=port,
                wssPort=port,
                forceTLS=force_tls,
                # Both names, always: with forceTLS pusher-js connects through the transport
                # named "ws" (over TLS); "wss" alone leaves it none, and it fails at once.
                enabledTransports=["ws", "wss"],
                authEndpoint=auth_endpoint,
                userAuthentication=UserAuthenticationOptions(endpoint=user_auth_endpoint),
            ),
        )
    }


# ---------------------------------------------------------------------------- Pusher HTTP API


async def verify_pusher_signature(
    request: Request, app_id: str, context: RealtimeContextDep
) -> PusherApp:
    """The app of ``app_id`` once the request is signed with its key and secret as the
    ``pusher`` SDKs sign (401 otherwise) and within its rate limit (429 otherwise)."""
    app = context.pusher_apps.by_id.get(app_id)
    if app is None:
        raise NotFound(f"unknown app id {app_id[:20]}")
    await _verify_signature(request, app)
    await context.api_rate_limiter.check(app)
    return app


async def _verify_signature(request: Request, app: PusherApp) -> None:
    params = dict(request.query_params)
    if params.get("auth_key") != app.key:
        raise Unauthorized("unknown auth_key")
    if params.get("auth_version", "1.0") != "1.0":
        raise Unauthorized("auth_version must be 1.0")
    try:
        timestamp = int(params.get("auth_timestamp", ""))
    except ValueError:
        raise Unauthorized("auth_timestamp is missing or not an integer") from None
    if abs(time.time() - timestamp) > TIMESTAMP_WINDOW_SECONDS:
        raise Unauthorized(
            f"auth_timestamp is more than {TIMESTAMP_WINDOW_SECONDS} s away from the server time"
        )
    body = await request.body()
    given_md5 = params.get("body_md5")
    if body and given_md5 is None:
        raise Unauthorized("body_md5 is required with a body")
    if given_md5 is not None and not hmac.compare_digest(given_md5, body_md5(body)):
        raise Unauthorized("body_md5 does not match the body")
    signature = params.get("auth_signature", "")
    expected = request_signature(app.secret, request.method, request.url.path, params)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise Unauthorized("invalid auth_signature")


# The app a request of the Pusher HTTP API is for, once signed and counted.
PusherSigned = Annotated[PusherApp, Depends(verify_pusher_signature)]


class TriggerEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, Field(min_length=1, max_length=MAX_EVENT_NAME)]
    data: str
    channels: (
        Annotated[list[str], Field(min_length=1, max_length=MAX_CHANNELS_PER_EVENT)] | None
    ) = None
    channel: str | None = None
    socket_id: str | None = None
    info: str | None = None

    @field_validator("data")
    @classmethod
    def _data_size(cls, value: str) -> str:
        if len(value.encode()) > MAX_EVENT_DATA_BYTES:
            raise PydanticCustomError(
                DATA_TOO_LARGE,
                "data must be at most {limit} bytes",
                {"limit": MAX_EVENT_DATA_BYTES},
            )
        return value

    @model_validator(mode="after")
    def _targets(self) -> TriggerEvent:
        targets = self.targets()
        if not targets:
            raise ValueError("give channels (a list) or channel")
        invalid = [
            name
            for name in targets
            if not valid_channel_name(name) and server_to_user_id(name) is None
        ]
        if invalid:
            raise ValueError(f"invalid channel name(s): {', '.join(invalid[:5])}")
        if self.socket_id is not None and not SOCKET_ID_RE.fullmatch(self.socket_id):
            raise ValueError("socket_id must look like '123.456'")
        return self

    def targets(self) -> list[str]:
        if self.channels is not None:
            return self.channels
        return [self.channel] if self.channel is not None else []


class BatchEvents(BaseModel):
    batch: Annotated[list[TriggerEvent], Field(min_length=1, max_length=MAX_BATCH)]


async def _channel_attributes(hub: Hub, channel: str, info: str | None) -> dict[str, Any]:
    wanted = {item.strip() for item in (info or "").split(",") if item.strip()}
    if not wanted:
        return {}
    details = await hub.channel_info(channel)
    attributes: dict[str, Any] = {}
    if "subscription_count" in wanted:
        attributes["subscription_count"] = details.subscription_count
    if "user_count" in wanted and details.user_count is not None:
        attributes["user_count"] = details.user_count
    if "cache" in wanted and (cached := await cache_attribute(hub, channel)) is not None:
        attributes["cache"] = cached
    return attributes


async def _publish(hub: Hub, event: TriggerEvent) -> None:
    for channel in event.targets():
        await hub.publish(channel, event.name, event.data, event.socket_id)


@pusher_router.post("/{app_id}/events")
async def trigger_event(
    app_id: str, body: TriggerEvent, app: PusherSigned, context: RealtimeContextDep
) -> dict[str, Any]:
    """Publish one event to up to 100 channels (optionally excluding ``socket_id``); with
    ``info``, the attributes of each channel: ``{"channels": {name: {...}}}``."""
    hub = context.hub_for(app)
    await _publish(hub, body)
    if not body.info:
        return {}
    return {
        "channels": {
            channel: await _channel_attributes(hub, channel, body.info)
            for channel in body.targets()
        }
    }


@pusher_router.post("/{app_id}/batch_events")
async def trigger_batch(
    app_id: str, body: BatchEvents, app: PusherSigned, context: RealtimeContextDep
) -> dict[str, Any]:
    """Publish up to 10 events in one request; the answer has an entry per event, the
    attributes its ``info`` asked for of its channel (``{}`` without ``info``). An event given
    several ``channels`` (Pusher's batch has one ``channel``) answers for the first."""
    hub = context.hub_for(app)
    for event in body.batch:
        await _publish(hub, event)
    return {
        "batch": [
            await _channel_attributes(hub, event.targets()[0], event.info) for event in body.batch
        ]
    }


@pusher_router.get("/{app_id}/channels")
async def list_channels(
    app_id: str,
    app: PusherSigned,
    context: RealtimeContextDep,
    filter_by_prefix: str | None = None,
    info: str | None = None,
) -> dict[str, Any]:
    """Occupied channels, optionally filtered by prefix; ``info=user_count`` needs presence-."""
    wanted = {item.strip() for item in (info or "").split(",") if item.strip()}
    if "user_count" in wanted and not (filter_by_prefix or "").startswith("presence-"):
        raise InvalidParameters("info=user_count requires filter_by_prefix=presence-")
    hub = context.hub_for(app)
    counts = await hub.channel_counts(filter_by_prefix)
    channels: dict[str, Any] = {}
    for name in sorted(counts):
        channels[name] = await _channel_attributes(hub, name, info) if wanted else {}
    return {"channels": channels}


@pusher_router.get("/{app_id}/channels/{channel_name}")
async def channel_details(
    app_id: str,
    channel_name: str,
    app: PusherSigned,
    context: RealtimeContextDep,
    info: str | None = None,
) -> dict[str, Any]:
    """``occupied``, and the ``info`` attributes (``user_count`` is answered for presence
    channels only and ignored for others, as Pusher does)."""
    if not valid_channel_name(channel_name):
        raise InvalidParameters("invalid channel name")
    hub = context.hub_for(app)
    details = await hub.channel_info(channel_name)
    return {"occupied": details.occupied, **await _channel_attributes(hub, channel_name, info)}


@pusher_router.get("/{app_id}/channels/{channel_name}/users")
async def channel_users(
    app_id: str, channel_name: str, app: PusherSigned, context: RealtimeContextDep
) -> dict[str, Any]:
    """The members of a presence channel, each ``id`` as its authorizer gave it (``42`` stays
    a number)."""
    if channel_kind(channel_name) is not ChannelKind.PRESENCE or not valid_channel_name(
        channel_name
    ):
        raise InvalidParameters("users are only listed for presence channels")
    users = await context.hub_for(app).users(channel_name)
    return {"users": [{"id": user_id} for user_id in users]}


@pusher_router.post("/{app_id}/users/{user_id}/terminate_connections")
async def terminate_user_connections(
    app_id: str, user_id: str, app: PusherSigned, context: RealtimeContextDep
) -> dict[str, Any]:
    """Close every connection of the app signed in as ``user_id``, on every node (pusher:error
    4009, close 4009: pusher-js does not reconnect by itself). ``{}`` whether or not any was
    open."""
    if not valid_user_id(user_id):
        raise InvalidParameters("user ids are 1-200 printable characters")
    await context.hub_for(app).terminate_user_connections(user_id)
    return {}


# The PyPI SDK (3.3) posts terminate_user_connections to /users/{id}/terminate_connections,
# without /apps/{id}: the same request, signed for that path, for the app of its auth_key.
pusher_users_router = APIRouter(tags=["pusher http api"], route_class=PusherRoute)


async def _verify_pusher_signature_without_app_id(
    request: Request, context: RealtimeContextDep
) -> PusherApp:
    app = context.pusher_apps.by_key.get(request.query_params.get("auth_key", ""))
    if app is None:
        raise Unauthorized("unknown auth_key")
    return await verify_pusher_signature(request, app.app_id, context)


@pusher_users_router.post("/users/{user_id}/terminate_connections")
async def terminate_user_connections_without_app_id(
    user_id: str,
    app: Annotated[PusherApp, Depends(_verify_pusher_signature_without_app_id)],
    context: RealtimeContextDep,
) -> dict[str, Any]:
    """``POST /apps/{app_id}/users/{user_id}/terminate_connections`` as the PyPI SDK sends it,
    for the app of its ``auth_key``."""
    return await terminate_user_connections(app.app_id, user_id, app, context)
