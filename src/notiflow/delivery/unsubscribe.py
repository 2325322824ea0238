"""Signed one-click unsubscribe tokens: one user, one notification type, no expiry.

A token is ``<payload>.<signature>``, both URL-safe base64 without padding. The payload is the
user id (16 bytes) followed by the notification type; the signature is HMAC-SHA256 of it under a
key derived from ``NOTIFLOW_SECRET_KEY`` for this purpose only, so no other signature notiflow
makes can pass for an unsubscribe token. Tokens do not expire (an email read a year later must
still unsubscribe) and say nothing beyond what they name::

    token = make_unsubscribe_token(settings, user.id, NotificationType.NEW_MENTION)
    target = read_unsubscribe_token(settings, token)  # None when forged or damaged
    assert target == UnsubscribeTarget(user.id, NotificationType.NEW_MENTION)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

from notiflow.config import Settings
from notiflow.notifications.types import NotificationType

_PURPOSE = b"notiflow.unsubscribe.v1"
# Far longer than any real token (~100 characters); refuses absurd input before any work.
MAX_TOKEN_LENGTH = 256


@dataclass(frozen=True, slots=True)
class UnsubscribeTarget:
    """What a valid token unsubscribes from: the emails of one type to one user."""

    user_id: uuid.UUID
    notification_type: NotificationType


def make_unsubscribe_token(
    settings: Settings, user_id: uuid.UUID, notification_type: NotificationType | str
) -> str:
    """A URL-safe token that lets its holder turn off ``notification_type`` emails for the user."""
    kind = NotificationType(notification_type)
    payload = user_id.bytes + kind.value.encode("ascii")
    return f"{_encode(payload)}.{_encode(_sign(settings, payload))}"


def read_unsubscribe_token(settings: Settings, token: str) -> UnsubscribeTarget | None:
    """The target of a token this deployment signed; ``None`` for anything else."""
    if len(token) > MAX_TOKEN_LENGTH:
        return None
    encoded_payload, separator, encoded_signature = token.partition(".")
    if not separator:
        return None
    payload = _decode(encoded_payload)
    signature = _decode(encoded_signature)
    if payload is None or signature is None or len(payload) <= 16:
        return None
    if not hmac.compare_digest(signature, _sign(settings, payload)):
        return None
    try:
        kind = NotificationType(payload[16:].decode("ascii"))
    except ValueError:  # signed by us, for a type that no longer exists
        return None
    return UnsubscribeTarget(user_id=uuid.UUID(bytes=payload[:16]), notification_type=kind)


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
        # validate=True: refuse characters outside the alphabet instead of skipping them, so one
        # token has exactly one spelling.
        raw = base64.b64decode(padded, altchars=b"-_", validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return None
    if _encode(raw) != text:  # non-canonical trailing bits
        return None
    return raw


__all__ = [
    "MAX_TOKEN_LENGTH",
    "UnsubscribeTarget",
    "make_unsubscribe_token",
    "read_unsubscribe_token",
]
