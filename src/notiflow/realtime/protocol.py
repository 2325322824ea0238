"""The Pusher Channels protocol 7 as a sans-IO state machine: text frames in, actions out.

Nothing here touches a socket, a clock or Redis. :class:`PusherConnection` turns each message a
client sends into a list of actions (send these bytes, close with this code, join or leave a
channel, relay a client event); the server (``notiflow.realtime.server``) performs them. That keeps
every protocol rule testable without a network, and the transport replaceable.

Wire facts this follows (checked against pusher-js 8, Soketi and Reverb): server-to-client ``data``
is a JSON *string*; ``activity_timeout`` must be present in the handshake; a failed subscription is
``pusher:subscription_error`` with the channel and ``{type, error, status}`` (what Echo's
``.error()`` receives); a ``pusher:error`` that names a channel also reaches that channel's
``bind('pusher:error')``; close codes 4000-4099 and 4300+ stop pusher-js reconnecting, 4100-4199
make it retry after a second, 4200-4299 retry at once (``connection/protocol/protocol.ts``).

User authentication (``pusher:signin``): a connection signs in once with a ``user_data`` its
backend signed; from then on it hears what is sent to ``#server-to-user-{id}`` (the SDKs'
``sendToUser``), which the server carries as an ordinary hub channel the connection joined
(:class:`SignIn`), and an app can end all of that user's connections.

A presence member's ``user_id`` keeps the JSON type the authorizer gave it (``42`` or ``"42"``) in
every frame, while its string form identifies the member: it is the key of ``presence.hash`` in
JSON and of pusher-js's member map, so ``42`` and ``"42"`` are one member, as in Reverb.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from notiflow.realtime.signing import verify_channel_auth, verify_user_auth

CHANNEL_NAME_PATTERN = r"^[-a-zA-Z0-9_=@,.;]+$"
CHANNEL_NAME_RE = re.compile(CHANNEL_NAME_PATTERN)
MAX_CHANNEL_NAME = 200
MAX_EVENT_NAME = 200
# The channel of a signed-in user's server-to-user events (pusher-js subscribes to it after
# pusher:signin_success; the SDKs' sendToUser triggers on it).
SERVER_TO_USER_PREFIX = "#server-to-user-"
MAX_USER_ID = 200  # as the PyPI SDK's validate_user_id


class ErrorCode(IntEnum):
    """Pusher error / close codes and what pusher-js does with them as close codes."""

    APP_NOT_FOUND = 4001  # refused: do not reconnect
    APP_DISABLED = 4003
    UNAUTHORIZED = 4009  # origin not allowed, unauthorized: do not reconnect
    OVER_CAPACITY = 4100  # reconnect after ~1 s
    RECONNECT = 4200  # server going away / generic: reconnect now
    PONG_TIMEOUT = 4201
    CLIENT_EVENT_REJECTED = 4301  # refused: do not reconnect


# The ``status`` of a subscription refused for a limit or a bad name, as Soketi sends it: the
# class of the Pusher code says whether trying the same subscription again can work.
INVALID_CHANNEL_STATUS = 4009  # never, unchanged (a name too long or with other characters)
OVER_CAPACITY_STATUS = 4100  # once room is made (a member leaves, a channel is left)
MEMBER_TOO_BIG_STATUS = 4301  # never, unchanged


class ChannelKind(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"
    ENCRYPTED = "private-encrypted"
    PRESENCE = "presence"


def channel_kind(channel: str) -> ChannelKind:
    if channel.startswith("private-encrypted-"):
        return ChannelKind.ENCRYPTED
    if channel.startswith("private-"):
        return ChannelKind.PRIVATE
    if channel.startswith("presence-"):
        return ChannelKind.PRESENCE
    return ChannelKind.PUBLIC


def valid_channel_name(channel: object) -> bool:
    return (
        isinstance(channel, str)
        and 0 < len(channel) <= MAX_CHANNEL_NAME
        and CHANNEL_NAME_RE.fullmatch(channel) is not None
    )


def server_to_user_channel(user_id: str) -> str:
    return f"{SERVER_TO_USER_PREFIX}{user_id}"


def server_to_user_id(channel: object) -> str | None:
    """The user id of a ``#server-to-user-{id}`` channel, or None for any other name."""
    if not isinstance(channel, str) or not channel.startswith(SERVER_TO_USER_PREFIX):
        return None
    user_id = channel[len(SERVER_TO_USER_PREFIX) :]
    return user_id if valid_user_id(user_id) else None


def valid_user_id(user_id: object) -> bool:
    """A signed-in user's id: a non-empty string of at most 200 characters without control
    characters (what the SDKs' sendToUser and terminateUserConnections take)."""
    return isinstance(user_id, str) and 0 < len(user_id) <= MAX_USER_ID and user_id.isprintable()


# ---------------------------------------------------------------------------- frames


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode(message: dict[str, Any]) -> bytes:
    return _dumps(message).encode()


def event_message(event: str, channel: str | None, data: Any, **extra: Any) -> bytes:
    """A server-to-client event. ``data`` that is not already a string is JSON-encoded into one,
    as Pusher servers do (pusher-js parses it back)."""
    message: dict[str, Any] = {"event": event}
    if channel is not None:
        message["channel"] = channel
    message["data"] = data if isinstance(data, str) else _dumps(data)
    message.update(extra)
    return encode(message)


def connection_established(socket_id: str, activity_timeout: int) -> bytes:
    return event_message(
        "pusher:connection_established",
        None,
        {"socket_id": socket_id, "activity_timeout": activity_timeout},
    )


def error_message(code: int | None, message: str, channel: str | None = None) -> bytes:
    """``pusher:error``; with ``channel`` pusher-js also hands it to that channel's
    ``bind('pusher:error')`` (a rejected client event, a malformed subscribe)."""
    frame: dict[str, Any] = {"event": "pusher:error"}
    if channel is not None:
        frame["channel"] = channel
    frame["data"] = {"code": code, "message": message}
    return encode(frame)


PONG = encode({"event": "pusher:pong", "data": {}})
PING = encode({"event": "pusher:ping", "data": {}})


def subscription_succeeded(channel: str, presence: dict[str, Any] | None = None) -> bytes:
    data: dict[str, Any] = {} if presence is None else {"presence": presence}
    return event_message("pusher_internal:subscription_succeeded", channel, data)


def subscription_error(channel: str, error_type: str, error: str, status: int) -> bytes:
    return encode(
        {
            "event": "pusher:subscription_error",
            "channel": channel,
            "data": {"type": error_type, "error": error, "status": status},
        }
    )


def member_added(channel: str, user_id: UserId, user_info: Any) -> bytes:
    return event_message(
        "pusher_internal:member_added", channel, {"user_id": user_id, "user_info": user_info}
    )


def member_removed(channel: str, user_id: UserId) -> bytes:
    return event_message("pusher_internal:member_removed", channel, {"user_id": user_id})


def signin_success(user_data: str) -> bytes:
    """What pusher-js reads after a sign-in: ``data.user_data``, the signed JSON text as sent
    (an object here, as Soketi sends it; pusher-js takes a string too)."""
    return encode({"event": "pusher:signin_success", "data": {"user_data": user_data}})


def presence_data(members: Mapping[str, Member]) -> dict[str, Any]:
    """The ``presence`` object of a presence channel's subscription_succeeded: ``ids`` keep each
    id's type, ``hash`` is keyed by their string form (JSON keys are strings)."""
    return {
        "ids": [member.user_id for member in members.values()],
        "hash": {key: member.user_info for key, member in members.items()},
        "count": len(members),
    }


def _named_channel(channel: Any) -> str | None:
    """The channel to name in an error about a client's message: what it sent, if it can be a
    channel at all (no echo of a megabyte-long "name")."""
    return channel if isinstance(channel, str) and len(channel) <= MAX_CHANNEL_NAME else None


def _client_event_channel(payload: bytes | str) -> str | None:
    """The channel of a client event refused for its size, so the refusal reaches it. Parsing
    costs what reading the message did (it is at most a frame, 1 MiB by default)."""
    try:
        message = json.loads(payload)
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict):
        return None
    event = message.get("event")
    if not isinstance(event, str) or not event.startswith("client-"):
        return None
    return _named_channel(message.get("channel"))


def _malformed_subscribe(channel: str, problem: str) -> Send:
    """A subscribe whose fields have the wrong shape: not a refusal of the subscription but
    of the message (4200, the connection stays), on the channel so its listeners hear it."""
    return Send(error_message(ErrorCode.RECONNECT, f"Invalid pusher:subscribe: {problem}", channel))


# ---------------------------------------------------------------------------- actions

# A presence member's id as the authorizer's channel_data gave it: a JSON string or integer.
UserId = str | int


@dataclass(frozen=True, slots=True)
class Member:
    user_id: UserId
    user_info: Any = None

    @property
    def key(self) -> str:
        """What identifies the member: the id's string form (``42`` and ``"42"`` are one)."""
        return str(self.user_id)


@dataclass(frozen=True, slots=True)
class Send:
    frame: bytes


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Join:
    """Subscribe the connection; the server answers with subscription_succeeded."""

    channel: str
    member: Member | None = None
    # A private channel's channel_data, when the auth signed it too (the replay's last seen
    # sequence on a user's notifications channel: notiflow.realtime.replay).
    signed_data: str | None = None


@dataclass(frozen=True, slots=True)
class Leave:
    channel: str
    member: Member | None = None


@dataclass(frozen=True, slots=True)
class Whisper:
    """A client event to relay to the channel's other subscribers (frame already built)."""

    channel: str
    frame: bytes


@dataclass(frozen=True, slots=True)
class SignIn:
    """The connection signed in as ``user_id``: join ``channel`` (its server-to-user channel,
    no subscription_succeeded), then send ``frame`` (pusher:signin_success), so whatever is
    sent to the user after the client heard of its sign-in reaches it."""

    user_id: str
    channel: str
    frame: bytes


Action = Send | Close | Join | Leave | Whisper | SignIn


@dataclass(frozen=True, slots=True)
class ProtocolConfig:
    app_key: str
    app_secret: str
    activity_timeout: int = 30
    # Ping a client this long after its last message (pusher-js itself pings after
    # activity_timeout), then close with 4201 if nothing arrives within pong_timeout.
    ping_after: float = 45.0
    pong_timeout: float = 30.0
    max_message_bytes: int = 10_000
    client_events: bool = True
    client_event_rate: float = 10.0  # per second, per connection (Pusher's limit)
    # A client still sending after this many rejected client events in a row is closed.
    client_event_flood_limit: int = 100
    max_member_info_bytes: int = 2_000
    # Each subscription costs memory here and, in a cluster, a Redis subscription: without a cap
    # one connection could hold 10,000 channels.
    max_channels_per_connection: int = 100
    # Close a connection that has not signed in (pusher:signin) this many seconds after it
    # opened, with 4009 (Soketi's userAuthenticationTimeout); None: never.
    user_auth_timeout: float | None = None


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


@dataclass
class PusherConnection:
    """The protocol state of one WebSocket connection."""

    socket_id: str
    config: ProtocolConfig
    now: float
    subscriptions: dict[str, Member | None] = field(default_factory=dict)
    closed: bool = False
    last_activity: float = 0.0
    ping_sent_at: float | None = None
    rejected_in_a_row: int = 0
    # The id this connection signed in as (pusher:signin), once it has.
    user_id: str | None = None
    _bucket: _Bucket = field(init=False)

    def __post_init__(self) -> None:
        self.last_activity = self.now
        self._bucket = _Bucket(tokens=self.config.client_event_rate, updated=self.now)

    def open(self) -> list[Action]:
        return [Send(connection_established(self.socket_id, self.config.activity_timeout))]

    # -------------------------------------------------------------- incoming

    def receive(self, payload: bytes | str, now: float) -> list[Action]:
        if self.closed:
            return []
        self.last_activity = now
        self.ping_sent_at = None
        size = len(payload.encode() if isinstance(payload, str) else payload)
        if size > self.config.max_message_bytes:
            return [
                Send(
                    error_message(
                        ErrorCode.CLIENT_EVENT_REJECTED,
                        f"Message too large: {size} bytes (maximum "
                        f"{self.config.max_message_bytes})",
                        _client_event_channel(payload),
                    )
                )
            ]
        try:
            message = json.loads(payload)
        except RecursionError:  # "[" * 5000 is only 5 KB
            return [
                Send(
                    error_message(ErrorCode.RECONNECT, "Invalid message format: nested too deeply")
                )
            ]
        except (ValueError, UnicodeDecodeError):
            return [Send(error_message(ErrorCode.RECONNECT, "Invalid message format: not JSON"))]
        if not isinstance(message, dict) or not isinstance(message.get("event"), str):
            return [
                Send(
                    error_message(
                        ErrorCode.RECONNECT,
                        "Invalid message format: expected an object with an event name",
                    )
                )
            ]
        event: str = message["event"]
        data = message.get("data")
        if event == "pusher:ping":
            return [Send(PONG)]
        if event == "pusher:pong":
            return []
        if event == "pusher:subscribe":
            return self._subscribe(data)
        if event == "pusher:unsubscribe":
            return self._unsubscribe(data)
        if event.startswith("client-"):
            return self._client_event(event, message.get("channel"), data, now)
        if event == "pusher:signin":
            return self._signin(data)
        return [Send(error_message(ErrorCode.RECONNECT, f"Unsupported event: {event[:100]}"))]

    def _subscribe(self, data: Any) -> list[Action]:
        if not isinstance(data, dict) or not isinstance(data.get("channel"), str):
            return [
                Send(
                    error_message(
                        ErrorCode.RECONNECT, "pusher:subscribe needs data.channel, a string"
                    )
                )
            ]
        # Every answer names the channel as the client sent it: pusher-js finds the channel
        # an answer is for by its exact name.
        channel: str = data["channel"]
        if server_to_user_id(channel) is not None:
            # pusher-js subscribes to its user's channel after signing in. Only a connection
            # signed in as that user hears it, and it joined the channel when it signed in:
            # the subscription itself changes nothing (as on Soketi, which sends these events
            # to the user's connections whatever they subscribed to).
            return [Send(subscription_succeeded(channel))]
        if len(channel) > MAX_CHANNEL_NAME:
            return [
                Send(
                    subscription_error(
                        channel,
                        "LimitReached",
                        f"Channel names are at most {MAX_CHANNEL_NAME} characters",
                        INVALID_CHANNEL_STATUS,
                    )
                )
            ]
        if not valid_channel_name(channel):
            return [
                Send(
                    subscription_error(
                        channel,
                        "InvalidChannel",
                        "Channel names are 1-200 characters of a-z A-Z 0-9 - _ = @ , . ;",
                        INVALID_CHANNEL_STATUS,
                    )
                )
            ]
        auth = data.get("auth")
        channel_data = data.get("channel_data")
        for field_name, value in (("auth", auth), ("channel_data", channel_data)):
            if value is not None and not isinstance(value, str):
                return [_malformed_subscribe(channel, f"{field_name} must be a string")]
        limit = self.config.max_channels_per_connection
        if channel not in self.subscriptions and len(self.subscriptions) >= limit:
            return [
                Send(
                    subscription_error(
                        channel,
                        "LimitReached",
                        f"A connection may subscribe to at most {limit} channels",
                        OVER_CAPACITY_STATUS,
                    )
                )
            ]
        kind = channel_kind(channel)
        if kind is ChannelKind.PUBLIC:
            self.subscriptions[channel] = None
            return [Join(channel)]

        signed_data: str | None = None
        if kind is not ChannelKind.PRESENCE:
            # A private channel's channel_data counts when the auth signs it too
            # (socket_id:channel:channel_data, as the SDKs' authorizeChannel signs data);
            # otherwise it is ignored, as Soketi ignores it.
            if (
                channel_data is not None
                and auth is not None
                and self._signed(channel, auth, channel_data)
            ):
                signed_data = channel_data
            channel_data = None
        elif channel_data is None:
            return [self._auth_error(channel, "Presence channels need channel_data")]
        if signed_data is None and (auth is None or not self._signed(channel, auth, channel_data)):
            return [self._auth_error(channel, "Invalid signature")]

        member: Member | None = None
        if isinstance(channel_data, str):  # a presence channel
            member_or_error = self._presence_member(channel, channel_data)
            if isinstance(member_or_error, Send):
                return [member_or_error]
            member = member_or_error
            previous = self.subscriptions.get(channel)
            if previous is not None and previous != member:
                # Re-subscribing as someone else: leave as the old member first.
                self.subscriptions[channel] = member
                return [Leave(channel, previous), Join(channel, member)]
        self.subscriptions[channel] = member
        return [Join(channel, member, signed_data)]

    def _signed(self, channel: str, auth: str, channel_data: str | None) -> bool:
        return verify_channel_auth(
            self.config.app_key, self.config.app_secret, self.socket_id, channel, auth, channel_data
        )

    def _presence_member(self, channel: str, channel_data: str) -> Member | Send:
        if len(channel_data.encode()) > self.config.max_member_info_bytes:
            return Send(
                subscription_error(
                    channel,
                    "LimitReached",
                    f"channel_data exceeds {self.config.max_member_info_bytes} bytes",
                    MEMBER_TOO_BIG_STATUS,
                )
            )
        try:
            parsed = json.loads(channel_data)
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            return _malformed_subscribe(channel, "channel_data must be a JSON object")
        user_id = parsed.get("user_id")
        # A string or an integer, kept as it is; a float or a boolean has no one string form
        # that pusher-js and this server would both key the member by.
        if isinstance(user_id, bool) or not isinstance(user_id, str | int) or user_id == "":
            return _malformed_subscribe(
                channel, "channel_data needs a user_id, a non-empty string or an integer"
            )
        return Member(user_id=user_id, user_info=parsed.get("user_info"))

    @staticmethod
    def _auth_error(channel: str, reason: str) -> Send:
        return Send(subscription_error(channel, "AuthError", reason, 401))

    def _signin(self, data: Any) -> list[Action]:
        """``pusher:signin`` ``{auth, user_data}``: the signature of
        ``"<socket_id>::user::<user_data>"``, and ``user_data`` a JSON object with an ``id``.
        A refusal is ``pusher:error`` 4009 and close 4009, as Soketi answers it (pusher-js does
        not reconnect: the same sign-in would fail again)."""
        if not isinstance(data, dict):
            return [self._malformed_signin("data must be an object with auth and user_data")]
        auth, user_data = data.get("auth"), data.get("user_data")
        if not isinstance(auth, str) or not isinstance(user_data, str):
            return [self._malformed_signin("auth and user_data must be strings")]
        if not verify_user_auth(
            self.config.app_key, self.config.app_secret, self.socket_id, user_data, auth
        ):
            return self._refuse_signin("Connection not authorized: invalid signature")
        try:
            user = json.loads(user_data)
        except (ValueError, RecursionError):
            user = None
        user_id = user.get("id") if isinstance(user, dict) else None
        if isinstance(user_id, int) and not isinstance(user_id, bool):
            # A backend's numeric primary key (Laravel's userAuthenticationUsing returning
            # $user->id): its string form, as Soketi takes it, rather than closing the
            # connection. pusher-js itself only uses a sign-in whose id is a string.
            user_id = str(user_id)
        if not valid_user_id(user_id):
            return self._refuse_signin(
                "user_data must be a JSON object whose id is a non-empty string"
            )
        assert isinstance(user_id, str)  # noqa: S101 - valid_user_id checked it
        if self.user_id == user_id:
            return [Send(signin_success(user_data))]  # again: already in the user's channel
        actions: list[Action] = []
        if self.user_id is not None:
            # Signed in again as someone else: the old user's events stop here.
            actions.append(Leave(server_to_user_channel(self.user_id)))
        self.user_id = user_id
        actions.append(SignIn(user_id, server_to_user_channel(user_id), signin_success(user_data)))
        return actions

    @staticmethod
    def _malformed_signin(problem: str) -> Send:
        return Send(error_message(ErrorCode.RECONNECT, f"Invalid pusher:signin: {problem}"))

    def _refuse_signin(self, reason: str) -> list[Action]:
        self.closed = True
        return [
            Send(error_message(ErrorCode.UNAUTHORIZED, reason)),
            Close(ErrorCode.UNAUTHORIZED, reason),
            *self._leave_all(),
        ]

    def terminate(self) -> list[Action]:
        """The app ended this user's connections (``terminate_connections``): 4009, as Soketi
        closes them, so pusher-js does not reconnect by itself."""
        if self.closed:
            return []
        self.closed = True
        reason = "You got disconnected by the app"
        return [
            Send(error_message(ErrorCode.UNAUTHORIZED, reason)),
            Close(ErrorCode.UNAUTHORIZED, reason),
            *self._leave_all(),
        ]

    def _unsubscribe(self, data: Any) -> list[Action]:
        channel = data.get("channel") if isinstance(data, dict) else None
        if not isinstance(channel, str) or channel not in self.subscriptions:
            return []
        member = self.subscriptions.pop(channel)
        return [Leave(channel, member)]

    def _client_event(self, event: str, channel: Any, data: Any, now: float) -> list[Action]:
        # Every refusal names the channel, so pusher-js's channel.bind('pusher:error') hears it.
        named = _named_channel(channel)
        reason = self._client_event_refusal(event, channel)
        if reason is None and not self._take_token(now):
            reason = f"Client event rate limit exceeded ({self.config.client_event_rate:g}/s)"
        if reason is not None:
            refusal = Send(error_message(ErrorCode.CLIENT_EVENT_REJECTED, reason, named))
            self.rejected_in_a_row += 1
            if self.rejected_in_a_row >= self.config.client_event_flood_limit:
                self.closed = True
                return [
                    refusal,
                    Close(ErrorCode.CLIENT_EVENT_REJECTED, "Too many rejected client events"),
                    *self._leave_all(),
                ]
            return [refusal]
        self.rejected_in_a_row = 0
        member = self.subscriptions[str(channel)]
        extra = {"user_id": member.user_id} if member is not None else {}
        try:
            frame = encode({"event": event, "channel": channel, "data": data, **extra})
        except RecursionError:  # parsed just under the limit, one level too deep to re-encode
            return [
                Send(
                    error_message(
                        ErrorCode.CLIENT_EVENT_REJECTED, "Event data nested too deeply", named
                    )
                )
            ]
        return [Whisper(channel, frame)]

    def _client_event_refusal(self, event: str, channel: Any) -> str | None:
        if not self.config.client_events:
            return "Client events are disabled"
        if len(event) > MAX_EVENT_NAME:
            return f"Event names are at most {MAX_EVENT_NAME} characters"
        if not isinstance(channel, str) or channel not in self.subscriptions:
            return "Client events need a channel this connection is subscribed to"
        if channel_kind(channel) not in (ChannelKind.PRIVATE, ChannelKind.PRESENCE):
            return "Client events are only allowed on private and presence channels"
        return None

    def _take_token(self, now: float) -> bool:
        rate = self.config.client_event_rate
        bucket = self._bucket
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        return False

    # -------------------------------------------------------------- time and closing

    def tick(self, now: float) -> list[Action]:
        """Liveness: ping an idle client, close one that does not answer (4201); with
        ``user_auth_timeout``, close one that has not signed in by then (4009)."""
        if self.closed:
            return []
        timeout = self.config.user_auth_timeout
        if timeout is not None and self.user_id is None and now - self.now >= timeout:
            self.closed = True
            reason = "Connection not authorized within timeout"
            return [
                Send(error_message(ErrorCode.UNAUTHORIZED, reason)),
                Close(ErrorCode.UNAUTHORIZED, reason),
                *self._leave_all(),
            ]
        if self.ping_sent_at is not None:
            if now - self.ping_sent_at >= self.config.pong_timeout:
                self.closed = True
                return [
                    Close(ErrorCode.PONG_TIMEOUT, "Pong reply not received in time"),
                    *self._leave_all(),
                ]
            return []
        if now - self.last_activity >= self.config.ping_after:
            self.ping_sent_at = now
            return [Send(PING)]
        return []

    def disconnected(self) -> list[Action]:
        """The socket is gone: leave every channel."""
        if self.closed and not self.subscriptions and self.user_id is None:
            return []
        self.closed = True
        return list(self._leave_all())

    def _leave_all(self) -> list[Action]:
        leaves: list[Action] = [
            Leave(channel, member) for channel, member in self.subscriptions.items()
        ]
        self.subscriptions.clear()
        if self.user_id is not None:
            leaves.append(Leave(server_to_user_channel(self.user_id)))
            self.user_id = None
        return leaves
