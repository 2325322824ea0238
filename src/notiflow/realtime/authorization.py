"""Who may subscribe to which private or presence channel, and the signed reply that lets them.

``authorize_channel`` is a pure function of the caller and the channel name::

    decision = authorize_channel(ChannelUser(user_id=..., tenant_id=..., name="Ada"), channel)
    if not decision.allowed:
        ...  # decision.refusal says why

The rules: ``private-notifications.{userId}`` (also ``private-encrypted-``) only for that user,
never as a presence channel; ``private-tenant.{tenantId}`` / ``presence-tenant.{tenantId}`` (also
``private-encrypted-``) only with a token of that tenant: a user in two tenants holds one token per
tenant, and everything a token sees, channels too, is scoped to its tenant. The cache variant of
each (``private-cache-``, ``presence-cache-``, ``private-encrypted-cache-``) follows the same rule.
Public channels need no authorization; every other name is refused.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum

from notiflow.config import Settings
from notiflow.kit.errors import Forbidden, InvalidInput
from notiflow.realtime.protocol import ChannelKind, channel_kind, valid_channel_name
from notiflow.realtime.replay import REPLAYED_CHANNEL
from notiflow.realtime.signing import channel_auth, shared_secret, user_auth

_NOTIFICATIONS = re.compile(r"^notifications\.(?P<user>[0-9a-fA-F-]{36})$")
_TENANT = re.compile(r"^tenant\.(?P<tenant>[0-9a-fA-F-]{36})$")
# 18 digits at most: every such number is within replay.MAX_SEQUENCE (2**63 - 1), so the
# pattern is the whole rule.
LAST_SEQUENCE_PATTERN = r"^(?:[0-9]{1,18})?$"
MAX_LAST_SEQUENCE = 10**18 - 1
_SEQUENCE = re.compile(LAST_SEQUENCE_PATTERN)


@dataclass(frozen=True, slots=True)
class ChannelUser:
    """The caller asking to subscribe: a user acting with a token of one tenant."""

    user_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str


class Refusal(StrEnum):
    INVALID_NAME = "invalid_name"
    PUBLIC = "public"
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True, slots=True)
class ChannelDecision:
    channel: str
    kind: ChannelKind | None
    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def authorize_channel(user: ChannelUser, channel: str) -> ChannelDecision:
    """May ``user`` subscribe to ``channel``? No I/O: the answer depends on the two alone."""
    if not valid_channel_name(channel):
        return ChannelDecision(channel, None, Refusal.INVALID_NAME)
    kind = channel_kind(channel)
    if kind is ChannelKind.PUBLIC:
        return ChannelDecision(channel, kind, Refusal.PUBLIC)
    bare = channel.removeprefix("private-encrypted-").removeprefix("private-")
    bare = bare.removeprefix("presence-").removeprefix("cache-")
    notifications = _NOTIFICATIONS.match(bare)
    tenant = _TENANT.match(bare)
    allowed = False
    if notifications is not None and kind is not ChannelKind.PRESENCE:
        allowed = notifications["user"].lower() == str(user.user_id)
    elif tenant is not None:
        # The token's tenant, not any tenant the user is in. Its membership was checked with
        # the token.
        allowed = _uuid(tenant["tenant"]) == user.tenant_id
    return ChannelDecision(channel, kind, None if allowed else Refusal.NOT_ALLOWED)


def belongs_to_tenant(channel: str, tenant_id: uuid.UUID, member_ids: frozenset[uuid.UUID]) -> bool:
    """Is ``channel`` one of the tenant's own, as the rules above give them out: a member's
    ``private-notifications.{userId}`` or the tenant's ``private-tenant.{tenantId}`` /
    ``presence-tenant.{tenantId}`` (with their encrypted and cache variants)? Public channels
    and every other name belong to no tenant."""
    if not valid_channel_name(channel) or channel_kind(channel) is ChannelKind.PUBLIC:
        return False
    bare = channel.removeprefix("private-encrypted-").removeprefix("private-")
    bare = bare.removeprefix("presence-").removeprefix("cache-")
    notifications = _NOTIFICATIONS.match(bare)
    if notifications is not None:
        user = _uuid(notifications["user"])
        return channel_kind(channel) is not ChannelKind.PRESENCE and user in member_ids
    tenant = _TENANT.match(bare)
    return tenant is not None and _uuid(tenant["tenant"]) == tenant_id


def require_channel(user: ChannelUser, channel: str) -> ChannelKind:
    """The channel's kind when ``user`` may subscribe; otherwise the error to answer with
    (422 for a name that is not a channel name, 403 for a channel that is not theirs)."""
    decision = authorize_channel(user, channel)
    if decision.refusal is Refusal.INVALID_NAME:
        raise InvalidInput("channel_name is not a valid channel name")
    if decision.refusal is Refusal.PUBLIC:
        raise Forbidden("public channels need no authorization")
    if decision.refusal is not None or decision.kind is None:
        raise Forbidden(f"you may not subscribe to {channel}")
    return decision.kind


def subscription_auth(
    settings: Settings,
    user: ChannelUser,
    socket_id: str,
    channel: str,
    last_sequence: int | None = None,
) -> dict[str, str]:
    """The reply of ``/broadcasting/auth`` for an authorized subscription: the signed ``auth``,
    plus ``channel_data`` (presence, or the ``last_sequence`` the client has seen on its
    ``private-notifications.{userId}``, signed in so the server replays what it missed) or
    ``shared_secret`` (private-encrypted). ``last_sequence`` is ignored on other channels."""
    kind = channel_kind(channel)
    key, secret = settings.pusher_app_key, settings.pusher_app_secret
    if kind is ChannelKind.PRESENCE:
        channel_data = json.dumps(
            {"user_id": str(user.user_id), "user_info": {"name": user.name}},
            separators=(",", ":"),
        )
        return {
            "auth": channel_auth(key, secret, socket_id, channel, channel_data),
            "channel_data": channel_data,
        }
    if last_sequence is not None and REPLAYED_CHANNEL.match(channel):
        channel_data = json.dumps({"last_sequence": last_sequence}, separators=(",", ":"))
        return {
            "auth": channel_auth(key, secret, socket_id, channel, channel_data),
            "channel_data": channel_data,
        }
    reply = {"auth": channel_auth(key, secret, socket_id, channel)}
    if kind is ChannelKind.ENCRYPTED:
        master_key = encryption_master_key(settings)
        reply["shared_secret"] = base64.b64encode(shared_secret(master_key, channel)).decode()
    return reply


def parse_last_sequence(value: str | None) -> int | None:
    """The ``last_sequence`` field of an authorization request: a sequence the client saw, or
    nothing (absent or empty)."""
    if value is None or value == "":
        return None
    if not _SEQUENCE.fullmatch(value):
        raise InvalidInput(
            "last_sequence must be the sequence of a NotificationCreated event (a whole "
            "number, 0 or more)"
        )
    return int(value)


def user_authentication(settings: Settings, user: ChannelUser, socket_id: str) -> dict[str, str]:
    """The reply of ``/broadcasting/user-auth`` (Laravel's ``userAuthenticationUsing`` shape):
    ``user_data`` names the user by id, with the same ``user_info`` as presence channels, and
    ``auth`` signs it for this socket, so the connection can ``pusher:signin`` as that user."""
    user_data = json.dumps(
        {"id": str(user.user_id), "user_info": {"name": user.name}}, separators=(",", ":")
    )
    key, secret = settings.pusher_app_key, settings.pusher_app_secret
    return {"auth": user_auth(key, secret, socket_id, user_data), "user_data": user_data}


def encryption_master_key(settings: Settings) -> bytes:
    """The encryption master key of private-encrypted channels (as the Pusher SDKs take it)."""
    configured = settings.pusher_encryption_master_key
    if configured:
        return base64.b64decode(configured)
    return hmac.new(settings.secret_key.encode(), b"notiflow-pusher-encryption", "sha256").digest()


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
