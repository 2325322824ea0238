"""Signed, expiring download tokens for data exports: one request id, one expiry, nothing else.

A token is ``<payload>.<signature>``, URL-safe base64 without padding. The payload is the export
request id (16 bytes) and the expiry as Unix seconds (8 bytes, big-endian); the signature is
HMAC-SHA256 of it under a key derived from ``NOTIFLOW_SECRET_KEY`` for this purpose only, so no
other signature notiflow makes (unsubscribe links, Pusher auth) passes for a download token::

    token = make_download_token(settings, request.id, request.expires_at)
    read_download_token(settings, token, request.id)  # DownloadToken(...) or raises
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from notiflow.config import Settings
from notiflow.kit.errors import Forbidden, NotiflowError

_PURPOSE = b"notiflow.data-export.v1"
_PAYLOAD_LENGTH = 16 + 8
MAX_TOKEN_LENGTH = 128


class Gone(NotiflowError):
    """The thing existed but is no more (an expired link, a removed export file)."""

    status_code = 410
    code = "gone"


@dataclass(frozen=True, slots=True)
class DownloadToken:
    request_id: uuid.UUID
    expires_at: datetime


def make_download_token(settings: Settings, request_id: uuid.UUID, expires_at: datetime) -> str:
    payload = request_id.bytes + struct.pack(">q", int(expires_at.timestamp()))
    return f"{_encode(payload)}.{_encode(_sign(settings, payload))}"


def read_download_token(
    settings: Settings, token: str, request_id: uuid.UUID, *, now: datetime | None = None
) -> DownloadToken:
    """The token, when this deployment signed it for ``request_id`` and it has not expired.

    Raises :class:`Forbidden` (403) for anything forged, damaged or meant for another export,
    and :class:`Gone` (410) for a genuine link past its expiry.
    """
    if len(token) > MAX_TOKEN_LENGTH:  # refuse absurd input before any work
        raise Forbidden("this download link is not valid", code="invalid_link")
    encoded_payload, separator, encoded_signature = token.partition(".")
    payload = _decode(encoded_payload) if separator else None
    signature = _decode(encoded_signature) if separator else None
    if (
        payload is None
        or signature is None
        or len(payload) != _PAYLOAD_LENGTH
        or not hmac.compare_digest(signature, _sign(settings, payload))
    ):
        raise Forbidden("this download link is not valid", code="invalid_link")
    token_request = uuid.UUID(bytes=payload[:16])
    if token_request != request_id:
        raise Forbidden("this download link is not valid", code="invalid_link")
    (expires_unix,) = struct.unpack(">q", payload[16:])
    expires_at = datetime.fromtimestamp(expires_unix, UTC)
    if expires_at <= (now or datetime.now(UTC)):
        raise Gone("this download link has expired; request a new export", code="link_expired")
    return DownloadToken(request_id=token_request, expires_at=expires_at)


def _sign(settings: Settings, payload: bytes) -> bytes:
    key = hmac.new(settings.secret_key.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, payload, hashlib.sha256).digest()


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes | None:
    if not text:
        return None
    try:
        padded = text.encode("ascii") + b"=" * (-len(text) % 4)
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    if _encode(raw) != text:  # one spelling per token
        return None
    return raw


__all__ = ["DownloadToken", "Gone", "make_download_token", "read_download_token"]
