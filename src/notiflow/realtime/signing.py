"""Pusher signatures: channel authorization, user sign-in and the HTTP API's request signing.

Both are hex HMAC-SHA256 with the app secret, exactly as the official ``pusher`` SDKs compute
them (see the test vectors in ``tests/realtime/test_signing.py``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping


def sign(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def channel_auth_message(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def channel_auth(
    key: str, secret: str, socket_id: str, channel: str, channel_data: str | None = None
) -> str:
    """The ``auth`` value a client sends in ``pusher:subscribe``: ``"<key>:<signature>"``."""
    return f"{key}:{sign(secret, channel_auth_message(socket_id, channel, channel_data))}"


def verify_channel_auth(
    key: str,
    secret: str,
    socket_id: str,
    channel: str,
    auth: str,
    channel_data: str | None = None,
) -> bool:
    expected = channel_auth(key, secret, socket_id, channel, channel_data)
    return hmac.compare_digest(expected.encode(), auth.encode())


def user_auth(key: str, secret: str, socket_id: str, user_data: str) -> str:
    """The ``auth`` of a ``pusher:signin``: ``"<key>:<signature>"`` of
    ``"<socket_id>::user::<user_data>"``, ``user_data`` being the exact JSON text signed."""
    return f"{key}:{sign(secret, f'{socket_id}::user::{user_data}')}"


def verify_user_auth(key: str, secret: str, socket_id: str, user_data: str, auth: str) -> bool:
    expected = user_auth(key, secret, socket_id, user_data)
    return hmac.compare_digest(expected.encode(), auth.encode())


def shared_secret(master_key: bytes, channel: str) -> bytes:
    """The per-channel key of a private-encrypted channel (as the SDKs derive it)."""
    return hashlib.sha256(channel.encode() + master_key).digest()


def request_signature(secret: str, method: str, path: str, params: Mapping[str, str]) -> str:
    """The ``auth_signature`` of an HTTP API request: ``METHOD\\nPATH\\nsorted k=v&...``,
    with lower-cased keys, unescaped values and ``auth_signature`` itself left out."""
    lowered = {name.lower(): value for name, value in params.items()}
    lowered.pop("auth_signature", None)
    query = "&".join(f"{name}={lowered[name]}" for name in sorted(lowered))
    return sign(secret, f"{method.upper()}\n{path}\n{query}")


def body_md5(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()
