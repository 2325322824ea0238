"""Replay of missed notifications on ``private-notifications.{userId}`` (docs/realtime.md).

Every ``NotificationCreated`` carries the user's ``sequence``. A client that subscribes with the
last sequence it saw (sent to ``/broadcasting/auth`` as ``last_sequence``, signed back into the
subscription's ``channel_data``) is sent what it missed, in order, then the current unread count
of each of its tenants (the *snapshot*, sent on every subscribe, with or without a sequence)::

    replay = missed_replay(server.replay, hub, channel, connection, channel_data)
    await hub.join(channel, replay, None)  # joined first: live events are held from here on
    connection.enqueue(subscription_succeeded)
    await replay.finish()  # missed events (or ResyncRequired), the snapshot, then what was held

Exactly once and in order against live events racing the replay: the subscription is joined
before the database is asked (so a send that commits later is published to it), live frames
are held meanwhile, and a held ``NotificationCreated`` the replay already covered (its sequence
at most the one the replay read) is dropped. Only a connection in replay holds anything: the
broadcast path of every other subscriber is unchanged.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from notiflow.kit.outages import told_as_outage
from notiflow.realtime import protocol
from notiflow.realtime.hub import Hub, Subscriber, websocket_frame

log = structlog.get_logger(__name__)

NOTIFICATION_CREATED = "NotificationCreated"
UNREAD_COUNT_CHANGED = "UnreadCountChanged"
RESYNC_REQUIRED = "ResyncRequired"
REPLAYED_CHANNEL = re.compile(r"^private-notifications\.(?P<user>[0-9a-fA-F-]{36})$")
# The largest sequence a client may claim (a PostgreSQL BIGINT).
MAX_SEQUENCE = 2**63 - 1


class ResyncReason:
    WINDOW = "window"  # more missed than NOTIFLOW_WS_REPLAY_MAX_EVENTS, or older than its age
    UNKNOWN_SEQUENCE = "unknown_sequence"  # ahead of the server's (another database, a restore)
    UNAVAILABLE = "unavailable"  # the database did not answer


@dataclass(frozen=True, slots=True)
class ReplayBatch:
    """What a subscriber of a user's channel is sent before the live events."""

    sequence: int  # the user's current sequence, as read before the missed events
    events: list[str] = field(default_factory=list)  # NotificationCreated data, in order
    resync: str | None = None  # a ResyncReason: the client reloads instead
    unread: list[tuple[str, int]] = field(default_factory=list)  # (tenant id, unread count)


class ReplaySource(Protocol):
    """Where missed notifications are read (the database; wired by the composition root)."""

    async def replay(self, user_id: str, after: int | None) -> ReplayBatch:
        """The user's current sequence and unread counts and, when ``after`` is given, the
        live events with a sequence in ``(after, current]`` or why they cannot be replayed."""
        ...


def last_seen(channel_data: str | None) -> int | None:
    """The ``last_sequence`` of a subscription's signed ``channel_data``, if it names one."""
    if channel_data is None:
        return None
    try:
        parsed = json.loads(channel_data)
    except ValueError:
        return None
    value = parsed.get("last_sequence") if isinstance(parsed, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQUENCE:
        return None
    return value


class MissedReplay:
    """Stands in for a connection on its notifications channel while the replay is read.

    Frames published meanwhile are held; ``finish`` queues the replay, the snapshot and what was
    held (minus what the replay covered), then gives the channel back to the connection."""

    __slots__ = (
        "after",
        "channel",
        "held",
        "hub",
        "socket_id",
        "source",
        "subscriber",
        "timeout_seconds",
        "user_id",
    )

    def __init__(
        self,
        source: ReplaySource,
        hub: Hub,
        channel: str,
        user_id: str,
        subscriber: Subscriber,
        after: int | None,
        timeout_seconds: float = 5.0,
    ) -> None:
        self.source = source
        self.hub = hub
        self.channel = channel
        self.user_id = user_id
        self.subscriber = subscriber
        self.socket_id = subscriber.socket_id
        self.after = after
        self.timeout_seconds = timeout_seconds
        self.held: list[bytes] = []

    def enqueue(self, frame: bytes) -> None:
        self.held.append(frame)

    async def finish(self) -> None:
        """Call once the subscription is joined and its subscription_succeeded queued."""
        batch: ReplayBatch | None
        try:
            async with asyncio.timeout(self.timeout_seconds):
                batch = await self.source.replay(self.user_id, self.after)
        except Exception as error:  # the subscription and its live events stand
            if not told_as_outage(error, component="realtime_replay"):
                _FAILURES.failed(error)
            batch = None
        subscribers = self.hub.channels.get(self.channel)
        current = subscribers.get(self.socket_id) if subscribers is not None else None
        if subscribers is None or current is not self:
            if isinstance(current, MissedReplay):  # subscribed again meanwhile: it takes over
                current.held[:0] = self.held
            return  # otherwise unsubscribed or gone meanwhile
        for frame in self._frames(batch):
            self.subscriber.enqueue(frame)
        self.held = []
        subscribers[self.socket_id] = self.subscriber

    def _frames(self, batch: ReplayBatch | None) -> list[bytes]:
        channel = self.channel
        frames: list[bytes] = []
        covered: int | None = None  # held NotificationCreated up to this sequence are dropped
        if batch is None:
            if self.after is not None:
                frames.append(_resync(channel, None, ResyncReason.UNAVAILABLE))
        else:
            if self.after is not None:
                covered = batch.sequence
            if batch.resync is not None:
                frames.append(_resync(channel, batch.sequence, batch.resync))
            else:
                frames.extend(
                    websocket_frame(protocol.event_message(NOTIFICATION_CREATED, channel, data))
                    for data in batch.events
                )
            frames.extend(
                websocket_frame(
                    protocol.event_message(
                        UNREAD_COUNT_CHANGED,
                        channel,
                        {"count": count, "tenant_id": tenant_id, "sequence": batch.sequence},
                    )
                )
                for tenant_id, count in batch.unread
            )
        for frame in self.held:
            if covered is None or not _covered(frame, covered):
                frames.append(frame)
        return frames


class _FailureLog:
    """Replays that failed for another reason than an outage (a timeout, a database without the
    tables): logged with a traceback at most once a minute, with how many failed meanwhile, so a
    reconnect storm against a broken database does not write one per client."""

    INTERVAL_SECONDS = 60.0

    def __init__(self) -> None:
        self.next_log_at = 0.0
        self.unlogged = 0

    def failed(self, error: BaseException) -> None:
        self.unlogged += 1
        now = time.monotonic()
        if now < self.next_log_at:
            return
        self.next_log_at = now + self.INTERVAL_SECONDS
        log.error(
            "realtime_replay_failed",
            failures=self.unlogged,
            error=f"{type(error).__name__}: {error}"[:300],
            exc_info=error,
        )
        self.unlogged = 0


_FAILURES = _FailureLog()


def _resync(channel: str, sequence: int | None, reason: str) -> bytes:
    return websocket_frame(
        protocol.event_message(RESYNC_REQUIRED, channel, {"sequence": sequence, "reason": reason})
    )


def _covered(frame: bytes, sequence: int) -> bool:
    """Whether a held frame is a NotificationCreated the replay covered (its sequence is at most
    ``sequence``). Only the frames held during one connection's replay are parsed."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    try:
        message = json.loads(frame[start:])
        if message.get("event") != NOTIFICATION_CREATED:
            return False
        held = json.loads(message["data"]).get("sequence")
    except (ValueError, TypeError, KeyError, AttributeError):
        return False
    return isinstance(held, int) and held <= sequence


def missed_replay(
    source: ReplaySource | None,
    hub: Hub,
    channel: str,
    subscriber: Subscriber,
    channel_data: str | None,
    timeout_seconds: float = 5.0,
) -> MissedReplay | None:
    """The stand-in to subscribe with when ``channel`` is a user's notifications channel and
    replay is on."""
    if source is None:
        return None
    match = REPLAYED_CHANNEL.match(channel)
    if match is None:
        return None
    after = last_seen(channel_data)
    return MissedReplay(source, hub, channel, match["user"], subscriber, after, timeout_seconds)
