"""Web Push (RFC 8030): VAPID keys, browser subscriptions, and the push channel's sender.

Usage::

    sender = WebPushSender()  # one per process: it keeps one HTTP connection pool
    result = await sender.send(context)  # SendResult: sent / retry / failed, never raises
    await sender.close()

Each of the user's subscriptions (one per browser or device) gets its own request: the payload
(the notification as :class:`~notiflow.notifications.schemas.NotificationData` JSON plus an
absolute ``url``) is encrypted for that subscription (RFC 8291, ``aes128gcm``) and the request
carries a VAPID ``Authorization`` (RFC 8292) signed for the push service's origin, a ``TTL`` of
``NOTIFLOW_WEBPUSH_TTL_SECONDS`` and an ``Urgency``.

What each push service answer means for that device:

======================  ========================================================
201 / 202 / 200         accepted; the subscription's ``last_used_at`` is updated
404 / 410               the subscription is dead: it is deleted
408 / 429 / 5xx,        may work later (retryable)
network error
any other status        this device refused it (no retry)
======================  ========================================================

The delivery is ``sent`` when at least one device accepted it (a later retry would push the
same notification to those devices again), ``retry`` when none did and one may later, and
``failed`` otherwise. The live WebSocket event is not sent here (see ``notiflow.realtime``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
import json
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException  # type: ignore[import-untyped]  # no type hints published
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow import __version__
from notiflow.config import Settings
from notiflow.delivery.channels import DeliveryContext, SendResult
from notiflow.kit.bulk import dialect_insert
from notiflow.kit.ids import new_id, utcnow
from notiflow.models import Notification, PushSubscription
from notiflow.notifications.ledger import NO_PUSH_SUBSCRIPTION, WEB_PUSH_NOT_CONFIGURED
from notiflow.notifications.schemas import NotificationData
from notiflow.notifications.types import NotificationChannel, NotificationType

__all__ = [
    "HIGH_URGENCY_TYPES",
    "MAX_ENDPOINT_LENGTH",
    "MAX_PAYLOAD_BYTES",
    "MAX_SUBSCRIPTIONS_PER_USER",
    "NOT_CONFIGURED",
    "NO_SUBSCRIPTIONS",
    "DeviceOutcome",
    "DeviceResult",
    "GeneratedVapidKeys",
    "VapidConfigError",
    "VapidKeys",
    "WebPushSender",
    "b64url_decode",
    "b64url_encode",
    "build_payload",
    "classify_status",
    "delete_subscription",
    "generate_vapid_keys",
    "list_subscriptions",
    "load_vapid_keys",
    "parse_auth_secret",
    "parse_p256dh",
    "save_subscription",
    "summarize",
    "urgency_for",
    "validate_endpoint",
]

log = structlog.get_logger(__name__)

# Ledger reasons of a skipped Web Push (at most 50 characters).
NOT_CONFIGURED = WEB_PUSH_NOT_CONFIGURED
NO_SUBSCRIPTIONS = NO_PUSH_SUBSCRIPTION

# Push services must accept 4,096 bytes of body (RFC 8030 §7.2); aes128gcm with one record spends
# 86 on its header (salt, record size, the 65-byte sender key) and 17 on the delimiter and tag.
MAX_PAYLOAD_BYTES = 4096 - 86 - 17
MAX_ENDPOINT_LENGTH = 2048
# Every notification costs one request per subscription; a user with more devices than this
# keeps the most recently used ones.
MAX_SUBSCRIPTIONS_PER_USER = 20
# Things that stopped working and need the user now: these may wake a sleeping phone.
HIGH_URGENCY_TYPES = frozenset(
    {
        NotificationType.PAYMENT_FAILED,
        NotificationType.ACCOUNT_TOKEN_EXPIRED,
        NotificationType.ACCOUNT_DISCONNECTED,
        NotificationType.POST_FAILED,
    }
)
# RFC 8292 caps a token's life at 24 h; a token is signed for 12 h and reused for 1 h.
VAPID_TOKEN_LIFETIME_SECONDS = 12 * 3600
VAPID_TOKEN_REUSE_SECONDS = 3600
DEFAULT_TIMEOUT_SECONDS = 10.0
# Devices of one user pushed at once.
DEVICE_CONCURRENCY = 8
# notification_deliveries.provider_message_id and notifications.failure_reason are 255 long.
_MAX_REASON = 255
_RETRYABLE_STATUSES = frozenset({408, 429})
_GONE_STATUSES = frozenset({404, 410})
_ACCEPTED_STATUSES = frozenset({200, 201, 202})
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost"})


# --------------------------------------------------------------------------- base64url


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, the encoding of every Web Push key."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    """Decode base64url (padding optional; the standard alphabet is accepted too, as some
    libraries send it). Raise ``ValueError`` on anything else."""
    text = value.strip().rstrip("=").replace("+", "-").replace("/", "_")
    if len(text) % 4 == 1:
        raise ValueError("is not valid base64url")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise ValueError("is not valid base64url") from None


# --------------------------------------------------------------------------- VAPID keys


class VapidConfigError(ValueError):
    """The VAPID settings are present but unusable."""


@dataclass(frozen=True, slots=True)
class VapidKeys:
    """The server's VAPID identity. ``public_key`` is what browsers pass to
    ``pushManager.subscribe({applicationServerKey})``: base64url of the uncompressed P-256 point."""

    public_key: str
    private_key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class GeneratedVapidKeys:
    public_key: str  # base64url, 65-byte uncompressed point
    private_key: str  # base64url, 32-byte raw scalar (pywebpush and py-vapid accept it)

    @property
    def env(self) -> str:
        return (
            f"NOTIFLOW_VAPID_PUBLIC_KEY={self.public_key}\n"
            f"NOTIFLOW_VAPID_PRIVATE_KEY={self.private_key}"
        )


def generate_vapid_keys() -> GeneratedVapidKeys:
    """A fresh VAPID key pair (``notiflow webpush keys``)."""
    vapid = Vapid02()
    vapid.generate_keys()
    private_key: ec.EllipticCurvePrivateKey = vapid.private_key
    return GeneratedVapidKeys(
        public_key=b64url_encode(_public_point(private_key.public_key())),
        private_key=b64url_encode(private_key.private_numbers().private_value.to_bytes(32, "big")),
    )


def load_vapid_keys(settings: Settings) -> VapidKeys | None:
    """The configured keys; ``None`` when ``NOTIFLOW_VAPID_PRIVATE_KEY`` is not set. The public
    key is derived from the private one when not given; when given, it must match.
    Raise :class:`VapidConfigError` when a key is malformed or the two do not match."""
    return _parse_vapid_keys(settings.vapid_private_key, settings.vapid_public_key)


@functools.lru_cache(maxsize=8)
def _parse_vapid_keys(private_value: str | None, public_value: str | None) -> VapidKeys | None:
    if not private_value or not private_value.strip():
        return None
    private_key = _parse_private_key(private_value)
    derived = b64url_encode(_public_point(private_key.public_key()))
    if public_value and public_value.strip():
        try:
            configured = b64url_decode(public_value)
        except ValueError:
            configured = b""
        if configured != b64url_decode(derived):
            raise VapidConfigError(
                "NOTIFLOW_VAPID_PUBLIC_KEY is not the public half of NOTIFLOW_VAPID_PRIVATE_KEY "
                "(generate a matching pair with `notiflow webpush keys`)"
            )
    return VapidKeys(public_key=derived, private_key=private_key)


def _parse_private_key(value: str) -> ec.EllipticCurvePrivateKey:
    """Accept what pywebpush accepts: base64url of the raw 32-byte scalar or of DER, and PEM."""
    text = value.strip()
    try:
        if "-----BEGIN" in text:
            # .env files often carry PEM on one line with literal "\n".
            loaded: Any = serialization.load_pem_private_key(
                text.replace("\\n", "\n").encode(), password=None
            )
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                loaded = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                loaded = serialization.load_der_private_key(raw, password=None)
    except (ValueError, TypeError):
        loaded = None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey) or not isinstance(
        loaded.curve, ec.SECP256R1
    ):
        raise VapidConfigError(
            "NOTIFLOW_VAPID_PRIVATE_KEY is not a P-256 private key (expected base64url of the "
            "32-byte key as `notiflow webpush keys` prints it, or DER/PEM)"
        )
    return loaded


def _public_point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


# --------------------------------------------------------------------------- subscriptions


def parse_p256dh(value: str) -> str:
    """The browser's ECDH key: base64url of a 65-byte uncompressed P-256 point. Returns it
    normalized (unpadded base64url); raise ``ValueError`` otherwise."""
    raw = b64url_decode(value)
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError(
            f"must be base64url of a 65-byte uncompressed P-256 point, got {len(raw)} bytes"
        )
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ValueError("is not a point on the P-256 curve") from None
    return b64url_encode(raw)


def parse_auth_secret(value: str) -> str:
    """The browser's authentication secret: base64url of 16 bytes, returned normalized."""
    raw = b64url_decode(value)
    if len(raw) != 16:
        raise ValueError(f"must be base64url of 16 bytes, got {len(raw)} bytes")
    return b64url_encode(raw)


def validate_endpoint(endpoint: str, *, allow_insecure_localhost: bool) -> str:
    """A push service URL: https with a host name. ``http://127.0.0.1`` and ``http://localhost``
    only when ``allow_insecure_localhost`` (development and tests). IP-literal hosts are refused
    otherwise: push services have names, and notiflow must not be told to post into its own
    network. Raise ``ValueError`` with a message a person can act on."""
    if len(endpoint) > MAX_ENDPOINT_LENGTH:
        raise ValueError(f"must be at most {MAX_ENDPOINT_LENGTH} characters")
    if not endpoint.isascii() or any(not c.isprintable() or c.isspace() for c in endpoint):
        raise ValueError("must be a URL without spaces or control characters")
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain credentials")
    if parts.fragment:
        raise ValueError("must not contain a fragment")
    loopback = host in _LOOPBACK_HOSTS
    if loopback and not allow_insecure_localhost:
        raise ValueError("must be a push service URL, not localhost")
    if parts.scheme == "http" and not (loopback and allow_insecure_localhost):
        raise ValueError(
            "must be an https:// URL (http:// is accepted only for 127.0.0.1 and localhost "
            "outside production)"
        )
    if not loopback and _is_ip_literal(host):
        raise ValueError("must name the push service's host, not an IP address")
    if port == 0:
        raise ValueError("is not a valid URL")
    return endpoint


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def save_subscription(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    endpoint: str,
    p256dh: str,
    auth: str,
    user_agent: str | None,
) -> PushSubscription:
    """Register a subscription for ``user_id`` (upsert by endpoint: an endpoint registered
    before, by this or another user, now belongs to ``user_id`` with the new keys). Inputs must
    already be validated. Beyond :data:`MAX_SUBSCRIPTIONS_PER_USER`, the least recently used of
    the user's other subscriptions are removed. Flushes, never commits."""
    values = dialect_insert(session, PushSubscription).values(
        id=new_id(),
        user_id=user_id,
        endpoint=endpoint,
        p256dh=p256dh,
        auth=auth,
        user_agent=user_agent,
        created_at=utcnow(),
    )
    upsert = values.on_conflict_do_update(
        index_elements=[PushSubscription.endpoint],
        set_={
            "user_id": values.excluded.user_id,
            "p256dh": values.excluded.p256dh,
            "auth": values.excluded.auth,
            "user_agent": values.excluded.user_agent,
        },
    ).returning(PushSubscription)
    subscription: PushSubscription = (
        await session.scalars(upsert, execution_options={"populate_existing": True})
    ).one()
    await _trim_subscriptions(session, user_id, keep=subscription.id)
    return subscription


async def _trim_subscriptions(session: AsyncSession, user_id: uuid.UUID, keep: uuid.UUID) -> None:
    recent_first = func.coalesce(PushSubscription.last_used_at, PushSubscription.created_at).desc()
    surplus = list(
        (
            await session.scalars(
                select(PushSubscription.id)
                .where(PushSubscription.user_id == user_id, PushSubscription.id != keep)
                .order_by(recent_first, PushSubscription.id.desc())
                .offset(MAX_SUBSCRIPTIONS_PER_USER - 1)
            )
        ).all()
    )
    if surplus:
        await session.execute(delete(PushSubscription).where(PushSubscription.id.in_(surplus)))


async def delete_subscription(session: AsyncSession, *, user_id: uuid.UUID, endpoint: str) -> bool:
    """Remove ``user_id``'s subscription with that endpoint; ``False`` if there is none."""
    result: Any = await session.execute(
        delete(PushSubscription).where(
            PushSubscription.user_id == user_id, PushSubscription.endpoint == endpoint
        )
    )
    return bool(result.rowcount)


async def list_subscriptions(session: AsyncSession, user_id: uuid.UUID) -> list[PushSubscription]:
    """The user's subscriptions, oldest first."""
    return list(
        (
            await session.scalars(
                select(PushSubscription)
                .where(PushSubscription.user_id == user_id)
                .order_by(PushSubscription.created_at, PushSubscription.id)
            )
        ).all()
    )


# --------------------------------------------------------------------------- payload


def urgency_for(notification_type: str) -> str:
    """RFC 8030 ``Urgency``: ``high`` for :data:`HIGH_URGENCY_TYPES`, ``normal`` otherwise."""
    return "high" if notification_type in HIGH_URGENCY_TYPES else "normal"


def build_payload(notification: Notification, public_url: str) -> bytes:
    """The plaintext the service worker receives: NotificationData JSON plus ``url`` (the
    action URL made absolute, or null). When it would not fit one push message
    (:data:`MAX_PAYLOAD_BYTES`), ``data`` is dropped and then ``message`` shortened, and
    ``truncated`` is true: the service worker can fetch the full notification by ``id``."""
    body: dict[str, Any] = NotificationData.from_model(notification).model_dump(mode="json")
    body["url"] = _absolute_url(notification.action_url, public_url)
    encoded = _compact_json(body)
    if len(encoded) <= MAX_PAYLOAD_BYTES:
        return encoded
    body["data"] = None
    body["truncated"] = True
    encoded = _compact_json(body)
    if len(encoded) <= MAX_PAYLOAD_BYTES:
        return encoded
    message: str = body["message"]
    low, high = 0, len(message)  # find the longest prefix that fits
    while low < high:
        middle = (low + high + 1) // 2
        body["message"] = message[:middle] + "…"
        if len(_compact_json(body)) <= MAX_PAYLOAD_BYTES:
            low = middle
        else:
            high = middle - 1
    body["message"] = message[:low] + "…"
    return _compact_json(body)


def _compact_json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _absolute_url(action_url: str | None, public_url: str) -> str | None:
    if not action_url:
        return None
    if action_url.startswith(("http://", "https://")):
        return action_url
    return f"{public_url.rstrip('/')}/{action_url.lstrip('/')}"


def _encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """RFC 8291 aes128gcm body for one subscription (a fresh ephemeral key and salt each time)."""
    # Imported here: pywebpush pulls in aiohttp and requests (~150 ms), which only a process
    # that actually sends pushes should pay for.
    from pywebpush import WebPusher  # type: ignore[import-untyped]  # no type hints published

    subscription = {"endpoint": "", "keys": {"p256dh": p256dh, "auth": auth}}
    body: bytes = WebPusher(subscription).encode(payload, "aes128gcm")["body"]
    return body


def _origin(endpoint: str) -> str:
    """The VAPID ``aud``: the endpoint's origin (RFC 6454: default port omitted)."""
    parts = urlsplit(endpoint)
    scheme, host, port = parts.scheme.lower(), parts.hostname or "", parts.port
    default_port = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" if port in (None, default_port) else f"{scheme}://{host}:{port}"


# --------------------------------------------------------------------------- outcomes


class DeviceOutcome(StrEnum):
    ACCEPTED = "accepted"
    GONE = "gone"  # 404/410: the subscription was deleted
    RETRYABLE = "retryable"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class DeviceResult:
    subscription_id: uuid.UUID
    outcome: DeviceOutcome
    detail: str  # "201 Created", "410 Gone", "ConnectError: ...", for people and logs
    status_code: int | None = None
    location: str | None = None  # the push message resource, when the service accepted it


def classify_status(status_code: int) -> DeviceOutcome:
    """What a push service's HTTP status says about one subscription (see the module docs)."""
    if status_code in _ACCEPTED_STATUSES:
        return DeviceOutcome.ACCEPTED
    if status_code in _GONE_STATUSES:
        return DeviceOutcome.GONE
    if status_code in _RETRYABLE_STATUSES or status_code >= 500:
        return DeviceOutcome.RETRYABLE
    return DeviceOutcome.REJECTED


def summarize(results: Sequence[DeviceResult]) -> SendResult:
    """One delivery's result from its devices' results (see the module docs)."""
    if not results:
        # Not a failure: the user simply has no browser or device subscribed (the live
        # WebSocket event went out when the notification was created).
        return SendResult.skipped(NO_SUBSCRIPTIONS)
    accepted = [result for result in results if result.outcome is DeviceOutcome.ACCEPTED]
    if accepted:
        if len(accepted) == 1 and accepted[0].location:
            return SendResult.sent(accepted[0].location[:_MAX_REASON])
        return SendResult.sent(f"accepted by {len(accepted)} of {len(results)} devices")
    if any(result.outcome is DeviceOutcome.RETRYABLE for result in results):
        return SendResult.retry(_cap(f"no device accepted the push yet: {_details(results)}"))
    if all(result.outcome is DeviceOutcome.GONE for result in results):
        codes = "/".join(sorted({str(result.status_code) for result in results}))
        return SendResult.skipped(f"push_subscriptions_gone ({codes})")
    return SendResult.failed(_cap(f"no device accepted the push: {_details(results)}"))


def _details(results: Sequence[DeviceResult]) -> str:
    counts = Counter(result.detail for result in results)
    return "; ".join(
        detail if count == 1 else f"{count} devices: {detail}" for detail, count in counts.items()
    )


def _cap(text: str) -> str:
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


# --------------------------------------------------------------------------- the sender


@dataclass(frozen=True, slots=True)
class _Target:
    subscription_id: uuid.UUID
    endpoint: str
    p256dh: str
    auth: str


class WebPushSender:
    """The Web Push :class:`~notiflow.delivery.channels.ChannelSender` (channel ``push``).

    Keys come from ``context.settings`` on each send, so one sender serves any configuration.
    Pass ``client`` to share an ``httpx.AsyncClient`` (the sender then does not close it)."""

    channel = NotificationChannel.PUSH

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            headers={"User-Agent": f"notiflow/{__version__}"},
        )
        # (origin, public key, subject) -> (Authorization header, reuse until epoch seconds)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def send(self, context: DeliveryContext) -> SendResult:
        try:
            keys = load_vapid_keys(context.settings)
        except VapidConfigError as error:
            return SendResult.failed(str(error))
        if keys is None:
            return SendResult.skipped(NOT_CONFIGURED)
        try:
            targets = await self._load_targets(context)
        except SQLAlchemyError as error:
            log.warning("webpush_load_failed", delivery_id=str(context.delivery_id), exc_info=True)
            return SendResult.retry(_cap(f"could not load push subscriptions: {error}"))
        if not targets:
            return SendResult.skipped(NO_SUBSCRIPTIONS)
        try:
            authorizations = {
                origin: self._authorization(keys, origin, context.settings.vapid_subject)
                for origin in {_origin(target.endpoint) for target in targets}
            }
        except VapidConfigError as error:
            return SendResult.failed(str(error))
        headers = {
            "TTL": str(context.settings.webpush_ttl_seconds),
            "Urgency": urgency_for(context.notification.type),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
        }
        payload = build_payload(context.notification, context.settings.public_url)
        limit = asyncio.Semaphore(DEVICE_CONCURRENCY)

        async def push(target: _Target) -> DeviceResult:
            async with limit:
                request_headers = {
                    **headers,
                    "Authorization": authorizations[_origin(target.endpoint)],
                }
                return await self._push(target, payload, request_headers)

        results = await asyncio.gather(*(push(target) for target in targets))
        for result in results:
            log.info(
                "webpush_device",
                delivery_id=str(context.delivery_id),
                subscription_id=str(result.subscription_id),
                outcome=result.outcome.value,
                status=result.status_code,
                detail=result.detail,
            )
        await self._record(context, results)
        return summarize(results)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _load_targets(self, context: DeliveryContext) -> list[_Target]:
        async with context.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(
                        PushSubscription.id,
                        PushSubscription.endpoint,
                        PushSubscription.p256dh,
                        PushSubscription.auth,
                    )
                    .where(PushSubscription.user_id == context.user.id)
                    .order_by(PushSubscription.created_at, PushSubscription.id)
                )
            ).all()
        return [_Target(row.id, row.endpoint, row.p256dh, row.auth) for row in rows]

    def _authorization(self, keys: VapidKeys, origin: str, subject: str) -> str:
        cache_key = (origin, keys.public_key, subject)
        now = time.time()
        cached = self._tokens.get(cache_key)
        if cached is not None and cached[1] > now:
            return cached[0]
        claims = {"aud": origin, "exp": int(now) + VAPID_TOKEN_LIFETIME_SECONDS, "sub": subject}
        try:
            signed: dict[str, str] = Vapid02(keys.private_key).sign(claims)
        except VapidException:
            raise VapidConfigError(
                f"NOTIFLOW_VAPID_SUBJECT must be a mailto: address or an https: URL, "
                f"got {subject!r}"
            ) from None
        header = signed["Authorization"]
        self._tokens[cache_key] = (header, now + VAPID_TOKEN_REUSE_SECONDS)
        return header

    async def _push(self, target: _Target, payload: bytes, headers: dict[str, str]) -> DeviceResult:
        """One device; never raises (an unexpected error is retryable, like the contract's)."""
        subscription_id = target.subscription_id
        try:
            body = _encrypt(payload, target.p256dh, target.auth)
        except Exception as error:  # stored keys that cannot be used: this device never will
            return DeviceResult(
                subscription_id,
                DeviceOutcome.REJECTED,
                f"invalid subscription keys ({type(error).__name__})",
            )
        try:
            response = await self._client.post(target.endpoint, content=body, headers=headers)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
            return DeviceResult(subscription_id, DeviceOutcome.REJECTED, f"bad endpoint: {error}")
        except httpx.TimeoutException as error:
            return DeviceResult(
                subscription_id, DeviceOutcome.RETRYABLE, f"timeout ({type(error).__name__})"
            )
        except httpx.HTTPError as error:
            return DeviceResult(
                subscription_id, DeviceOutcome.RETRYABLE, f"{type(error).__name__}: {error}"
            )
        except Exception as error:  # a bug must not cost the other devices their results
            log.exception("webpush_push_crashed", subscription_id=str(subscription_id))
            return DeviceResult(
                subscription_id,
                DeviceOutcome.RETRYABLE,
                f"unexpected error: {type(error).__name__}",
            )
        status = response.status_code
        detail = f"{status} {response.reason_phrase}".strip()
        retry_after = response.headers.get("retry-after")
        if retry_after and status not in _ACCEPTED_STATUSES:
            detail += f" (Retry-After: {retry_after[:40]})"
        outcome = classify_status(status)
        if outcome is DeviceOutcome.REJECTED:
            reason = " ".join(response.text.split())[:120]
            if reason:
                detail += f": {reason}"
        return DeviceResult(
            subscription_id,
            outcome,
            detail,
            status_code=status,
            location=response.headers.get("location")
            if outcome is DeviceOutcome.ACCEPTED
            else None,
        )

    async def _record(self, context: DeliveryContext, results: Sequence[DeviceResult]) -> None:
        """Touch the devices that took the push and delete the dead ones. A failure here is
        logged, not returned: the pushes already went out and must not be sent again."""
        used = [r.subscription_id for r in results if r.outcome is DeviceOutcome.ACCEPTED]
        gone = [r.subscription_id for r in results if r.outcome is DeviceOutcome.GONE]
        if not used and not gone:
            return
        try:
            async with context.sessionmaker() as session, session.begin():
                if used:
                    await session.execute(
                        update(PushSubscription)
                        .where(PushSubscription.id.in_(used))
                        .values(last_used_at=utcnow())
                    )
                if gone:
                    await session.execute(
                        delete(PushSubscription).where(PushSubscription.id.in_(gone))
                    )
        except SQLAlchemyError:
            log.warning(
                "webpush_bookkeeping_failed",
                delivery_id=str(context.delivery_id),
                used=len(used),
                gone=len(gone),
                exc_info=True,
            )
