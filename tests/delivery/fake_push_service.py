"""A local Web Push service (RFC 8030) that checks what a real one checks and decrypts what it gets.

It listens on 127.0.0.1 (a free port) and speaks plain HTTP/1.1 with keep-alive. Like Mozilla's
autopush or FCM it verifies the VAPID ``Authorization: vapid t=<JWT>,k=<key>`` (RFC 8292: an
ES256 signature by ``k``, ``aud`` = this service's origin, ``exp`` within 24 h, a ``sub``, and
``k`` equal to the ``applicationServerKey`` the subscription was made with), requires ``TTL``,
a valid ``Urgency`` and ``Content-Encoding: aes128gcm`` with at most 4,096 bytes, and then, like
the browser would, decrypts the body (RFC 8291) with the subscription's private key and auth
secret. What arrived is kept in :attr:`FakePushService.received`; what it refused, and why, in
:attr:`FakePushService.rejections`.

Usage::

    service = FakePushService()
    await service.start()
    device = service.subscribe(application_server_key=public_key)  # a browser's subscription
    gone = service.subscribe(status=410)  # answers 410 Gone (after checking the request)
    ... POST to device.endpoint ...
    service.received_by(device)[0].json()["title"]
    await service.close()
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_BODY_BYTES = 4096
URGENCIES = frozenset({"very-low", "low", "normal", "high"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class BrowserSubscription:
    """What a browser keeps for one push subscription, and what it hands the application."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    application_server_key: bytes | None
    status: int = 201
    retry_after: str | None = None

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def to_json(self) -> dict[str, Any]:
        """``PushSubscription.toJSON()``."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }


@dataclass
class ReceivedPush:
    endpoint: str
    headers: dict[str, str]  # lower-case names
    claims: dict[str, Any]  # the VAPID JWT's claims
    vapid_public_key: str
    payload: bytes  # decrypted
    body_size: int

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.payload)
        return value


@dataclass
class Rejection:
    endpoint: str
    status: int
    reason: str


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class FakePushService:
    host: str = "127.0.0.1"
    received: list[ReceivedPush] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    requests: int = 0
    _subscriptions: dict[str, BrowserSubscription] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    port: int = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def subscribe(
        self,
        application_server_key: str | None = None,
        *,
        status: int = 201,
        retry_after: str | None = None,
    ) -> BrowserSubscription:
        """A new browser subscription on this service (``status``: what it will answer)."""
        token = uuid.uuid4().hex
        subscription = BrowserSubscription(
            endpoint=f"{self.origin}/push/{token}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=os.urandom(16),
            application_server_key=(
                unb64url(application_server_key) if application_server_key else None
            ),
            status=status,
            retry_after=retry_after,
        )
        self._subscriptions[token] = subscription
        return subscription

    def received_by(self, subscription: BrowserSubscription) -> list[ReceivedPush]:
        return [push for push in self.received if push.endpoint == subscription.endpoint]

    # ------------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _version = request_line.split(" ", 2)
                headers: dict[str, str] = {}
                for line in header_lines:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, response_headers, response_body = self._handle(
                    method, target, headers, body
                )
                reason = HTTPStatus(status).phrase
                lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(response_body)}"]
                lines += [f"{name}: {value}" for name, value in response_headers.items()]
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + response_body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        self.requests += 1
        endpoint = f"{self.origin}{target}"
        token = target.removeprefix("/push/")
        subscription = self._subscriptions.get(token)
        if method != "POST" or subscription is None:
            return 404, {}, b'{"reason": "no such subscription"}'
        try:
            claims, vapid_key = self._check_vapid(headers.get("authorization", ""), subscription)
            self._check_headers(headers, body)
        except _Refused as refused:
            self.rejections.append(Rejection(endpoint, refused.status, refused.reason))
            return refused.status, {}, json.dumps({"reason": refused.reason}).encode()
        if subscription.status != 201:
            extra = {"Retry-After": subscription.retry_after} if subscription.retry_after else {}
            return subscription.status, extra, b'{"reason": "as configured"}'
        try:
            payload = http_ece.decrypt(
                body,
                private_key=subscription.private_key,
                auth_secret=subscription.auth_secret,
                version="aes128gcm",
            )
        except Exception as error:  # a body the browser could not decrypt
            self.rejections.append(Rejection(endpoint, 400, f"cannot decrypt: {error!r}"))
            return 400, {}, b'{"reason": "cannot decrypt"}'
        self.received.append(
            ReceivedPush(
                endpoint=endpoint,
                headers=headers,
                claims=claims,
                vapid_public_key=vapid_key,
                payload=payload,
                body_size=len(body),
            )
        )
        return 201, {"Location": f"{self.origin}/message/{uuid.uuid4().hex}"}, b""

    def _check_vapid(
        self, authorization: str, subscription: BrowserSubscription
    ) -> tuple[dict[str, Any], str]:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            raise _Refused(401, f"expected 'Authorization: vapid ...', got {authorization!r}")
        parts = dict(
            item.strip().split("=", 1) for item in params.split(",") if "=" in item.strip()
        )
        token, key = parts.get("t", ""), parts.get("k", "")
        try:
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
            header_b64, claims_b64, signature_b64 = token.split(".")
            header = json.loads(unb64url(header_b64))
            claims: dict[str, Any] = json.loads(unb64url(claims_b64))
            signature = unb64url(signature_b64)
        except (ValueError, binascii.Error) as error:
            raise _Refused(401, f"malformed VAPID token or key: {error}") from None
        if header.get("alg") != "ES256" or len(signature) != 64:
            raise _Refused(401, "the VAPID token must be ES256-signed")
        try:
            public_key.verify(
                encode_dss_signature(
                    int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
                ),
                f"{header_b64}.{claims_b64}".encode(),
                ec.ECDSA(hashes.SHA256()),
            )
        except InvalidSignature:
            raise _Refused(401, "bad VAPID signature") from None
        if claims.get("aud") != self.origin:
            raise _Refused(401, f"aud {claims.get('aud')!r} is not {self.origin!r}")
        expires = claims.get("exp")
        now = time.time()
        if not isinstance(expires, int) or not now < expires <= now + 24 * 3600:
            raise _Refused(401, f"exp {expires!r} is not within the next 24 hours")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.startswith(("mailto:", "https:")):
            raise _Refused(401, f"sub {subject!r} is not a mailto: or https: URL")
        expected = subscription.application_server_key
        if expected is not None and unb64url(key) != expected:
            raise _Refused(403, "the VAPID key is not the one this subscription was made with")
        return claims, key

    @staticmethod
    def _check_headers(headers: dict[str, str], body: bytes) -> None:
        if not headers.get("ttl", "").isdigit():
            raise _Refused(400, "a TTL header (seconds) is required")
        if "urgency" in headers and headers["urgency"] not in URGENCIES:
            raise _Refused(400, f"bad Urgency {headers['urgency']!r}")
        if headers.get("content-encoding") != "aes128gcm":
            raise _Refused(415, "Content-Encoding must be aes128gcm")
        if len(body) > MAX_BODY_BYTES:
            raise _Refused(413, f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
