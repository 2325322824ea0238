"""Channels and their subscribers in this process, presence, and the backplane between processes.

The hub is transport-neutral: a subscriber is anything with a ``socket_id`` and an ``enqueue``
that takes ready-to-write WebSocket frame bytes. Each event is framed once, whatever the number
of subscribers, and handed to every local subscriber; with a backplane it also goes to
the other nodes that have subscribers on that channel. Events published to a cache channel are
also kept by the hub's ``cache`` (``notiflow.realtime.cache``) for later subscribers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from notiflow.kit.errors import ServiceUnavailable
from notiflow.realtime import protocol
from notiflow.realtime.protocol import ChannelKind, Member, UserId, channel_kind

# Seconds a client is told to wait when the backplane is reconnecting (it retries every <= 2 s).
BACKPLANE_RETRY_AFTER = 5
# Published on a user's server-to-user channel to end that user's connections on every node
# (``terminate_user_connections``). A WebSocket close frame: every event the hub carries is a
# text frame, so no trigger can forge it, and the signed-in connection's subscriber of that
# channel (``notiflow.realtime.server``) closes instead of forwarding it.
TERMINATE_USER_FRAME = bytes((0x88, 0x02)) + (4009).to_bytes(2, "big")


class Subscriber(Protocol):
    socket_id: str

    def enqueue(self, frame: bytes) -> None: ...


def websocket_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (server to client), built once and written to many."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 65_536:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    occupied: bool
    subscription_count: int
    user_count: int | None = None


class PresenceFull(Exception):
    """The presence channel has reached its member limit."""


class PresenceStore(Protocol):
    """A user is one member however many connections they have, identified by ``Member.key``
    (so ``42`` and ``"42"`` are one member); the member's latest ``Member`` is what is shown."""

    async def add(self, channel: str, member: Member) -> bool:
        """Count one more connection of ``member``; True when it is the user's first."""
        ...

    async def remove(self, channel: str, member: Member) -> bool:
        """Count one connection less; True when it was the user's last."""
        ...

    async def members(self, channel: str) -> dict[str, Member]:
        """Everyone present, by ``Member.key``."""
        ...


class MemoryPresence:
    """Presence for a single node."""

    def __init__(self) -> None:
        # channel -> member key -> [the member's latest Member, its open connections]
        self._channels: dict[str, dict[str, list[Any]]] = {}

    async def add(self, channel: str, member: Member) -> bool:
        members = self._channels.setdefault(channel, {})
        entry = members.get(member.key)
        if entry is None:
            members[member.key] = [member, 1]
            return True
        entry[0] = member
        entry[1] += 1
        return False

    async def remove(self, channel: str, member: Member) -> bool:
        members = self._channels.get(channel)
        entry = members.get(member.key) if members else None
        if members is None or entry is None:
            return False
        entry[1] -= 1
        if entry[1] > 0:
            return False
        del members[member.key]
        if not members:
            del self._channels[channel]
        return True

    async def members(self, channel: str) -> dict[str, Member]:
        return {key: entry[0] for key, entry in self._channels.get(channel, {}).items()}

    def connections(self, channel: str, key: str) -> tuple[Member | None, int]:
        """``(member, open connections)`` of one user here; ``(None, 0)`` when absent."""
        entry = self._channels.get(channel, {}).get(key)
        return (entry[0], entry[1]) if entry is not None else (None, 0)

    def entries(self) -> Iterator[tuple[str, str, Member, int]]:
        """Every ``(channel, member key, member, connections)`` held here."""
        for channel, members in self._channels.items():
            for key, (member, count) in members.items():
                yield channel, key, member, count


class Backplane(Protocol):
    """Carries frames between nodes (Redis pub/sub in ``notiflow.realtime.redis``).

    None of these raise because the other nodes are unreachable: the local subscription and
    the local delivery stand, and the backplane reconciles when it is back."""

    async def joined(self, channel: str, first_here: bool) -> None:
        """A local subscription was added (the first of this node when ``first_here``)."""
        ...

    async def left(self, channel: str, last_here: bool) -> None: ...

    async def publish(self, channel: str, frame: bytes, except_socket_id: str | None) -> None:
        """Hand a frame already delivered here to the other nodes."""
        ...

    @property
    def connected(self) -> bool:
        """Whether the other nodes are reachable (cluster-wide answers are possible)."""
        ...

    async def channel_counts(self, prefix: str | None = None) -> dict[str, int]:
        """Subscription counts of every occupied channel, across all nodes."""
        ...


class EventCache(Protocol):
    """Keeps the last event of each cache channel (``notiflow.realtime.cache``)."""

    def caches(self, channel: str) -> bool: ...

    async def remember(self, channel: str, message: bytes) -> None:
        """Keep ``message`` (as built for the subscribers); never raises."""
        ...


class HubWebhooks(Protocol):
    """Hears every local change a Pusher webhook may report (``notiflow.realtime.webhooks``).
    Called synchronously, in the order the changes happen here; must not block."""

    def subscribed(
        self, channel: str, socket_id: str, member: Member | None, first_here: bool
    ) -> None: ...

    def unsubscribed(
        self, channel: str, socket_id: str, member: Member | None, last_here: bool
    ) -> None: ...

    def client_event(self, channel: str, message: bytes, socket_id: str) -> None:
        """A client event relayed on ``channel``: ``message`` is its JSON as relayed."""
        ...

    def cache_miss(self, channel: str) -> None: ...


class Hub:
    def __init__(
        self,
        *,
        presence: PresenceStore | None = None,
        backplane: Backplane | None = None,
        presence_limit: int = 100,
        cache: EventCache | None = None,
    ) -> None:
        self.channels: dict[str, dict[str, Subscriber]] = {}
        self.presence: PresenceStore = presence or MemoryPresence()
        self.backplane = backplane
        self.presence_limit = presence_limit
        self.cache = cache

        self.webhooks: HubWebhooks | None = None
        # The open WebSocket connections of this process's server, when it runs one
        # (``notiflow.realtime.node_stats.report_connections``).
        self.connections: Callable[[], int] | None = None

    # ------------------------------------------------------------------ membership

    def add_local(self, channel: str, subscriber: Subscriber) -> bool:
        """Register a local subscriber at once (so nothing published after this is missed).
        True when it is this node's first subscriber of the channel."""
        subscribers = self.channels.get(channel)
        if subscribers is None:
            self.channels[channel] = {subscriber.socket_id: subscriber}
            return True
        subscribers[subscriber.socket_id] = subscriber
        return False

    def remove_local(self, channel: str, subscriber: Subscriber) -> bool:
        """True when the channel has no local subscriber left."""
        subscribers = self.channels.get(channel)
        if subscribers is None or subscribers.pop(subscriber.socket_id, None) is None:
            return False
        if subscribers:
            return False
        del self.channels[channel]
        return True

    async def join(
        self, channel: str, subscriber: Subscriber, member: Member | None
    ) -> dict[str, Member] | None:
        """Subscribe; for presence channels return the members (the joiner included) and tell
        the others when this is the user's first connection."""
        if member is not None:
            present = await self.presence.members(channel)
            if member.key not in present and len(present) >= self.presence_limit:
                raise PresenceFull(channel)
        first_here = self.add_local(channel, subscriber)
        if self.webhooks is not None:
            self.webhooks.subscribed(channel, subscriber.socket_id, member, first_here)
        if self.backplane is not None:
            await self.backplane.joined(channel, first_here)
        if member is None:
            return None
        if await self.presence.add(channel, member):
            await self.publish_frame(
                channel,
                websocket_frame(protocol.member_added(channel, member.user_id, member.user_info)),
                except_socket_id=subscriber.socket_id,
            )
        return await self.presence.members(channel)

    async def leave(self, channel: str, subscriber: Subscriber, member: Member | None) -> None:
        subscribers = self.channels.get(channel)
        if subscribers is None or subscriber.socket_id not in subscribers:
            return
        last_here = self.remove_local(channel, subscriber)
        if self.webhooks is not None:
            self.webhooks.unsubscribed(channel, subscriber.socket_id, member, last_here)
        if member is not None and await self.presence.remove(channel, member):
            await self.publish_frame(
                channel, websocket_frame(protocol.member_removed(channel, member.user_id)), None
            )
        if self.backplane is not None:
            await self.backplane.left(channel, last_here)

    # ------------------------------------------------------------------ publishing

    async def publish(
        self, channel: str, event: str, data: Any, except_socket_id: str | None = None
    ) -> None:
        """Send ``event`` to everyone on ``channel`` (but ``except_socket_id``), on every node;
        on a cache channel, also keep it for those who subscribe later (before it is sent, so
        a node that subscribes meanwhile either hears it or finds it cached)."""
        cache = self.cache
        if cache is not None and cache.caches(channel):
            message = protocol.event_message(event, channel, data)
            await cache.remember(channel, message)
            await self.publish_frame(channel, websocket_frame(message), except_socket_id)
            return
        if self.backplane is None and channel not in self.channels:
            return  # nobody listens here and there is no other node: do not even frame it
        frame = websocket_frame(protocol.event_message(event, channel, data))
        await self.publish_frame(channel, frame, except_socket_id)

    async def terminate_user_connections(self, user_id: str) -> None:
        """Close every connection signed in as ``user_id``, on every node."""
        channel = protocol.server_to_user_channel(user_id)
        await self.publish_frame(channel, TERMINATE_USER_FRAME, None)

    async def whisper(self, channel: str, message: bytes, socket_id: str) -> None:
        """Relay a client event (its JSON ``message``) to everyone on ``channel`` but its sender."""
        if self.webhooks is not None:
            self.webhooks.client_event(channel, message, socket_id)
        await self.publish_frame(channel, websocket_frame(message), socket_id)

    async def publish_frame(self, channel: str, frame: bytes, except_socket_id: str | None) -> None:
        self.deliver(channel, frame, except_socket_id)
        if self.backplane is not None:
            await self.backplane.publish(channel, frame, except_socket_id)

    def deliver(self, channel: str, frame: bytes, except_socket_id: str | None) -> int:
        """Hand a framed message to this node's subscribers; returns how many got it."""
        subscribers = self.channels.get(channel)
        if not subscribers:
            return 0
        delivered = 0
        for socket_id, subscriber in subscribers.items():
            if socket_id != except_socket_id:
                subscriber.enqueue(frame)
                delivered += 1
        return delivered

    # ------------------------------------------------------------------ information

    def _require_cluster(self) -> None:
        """Refuse cluster-wide questions while the other nodes are unreachable: one node's view
        would be a wrong answer, not a partial one."""
        if self.backplane is not None and not self.backplane.connected:
            raise ServiceUnavailable(
                "the real-time backplane (Redis) is unreachable; try again shortly",
                code="realtime_unavailable",
                retry_after=BACKPLANE_RETRY_AFTER,
            )

    async def channel_counts(self, prefix: str | None = None) -> dict[str, int]:
        if self.backplane is not None:
            self._require_cluster()
            return await self.backplane.channel_counts(prefix)
        return {
            name: len(subscribers)
            for name, subscribers in self.channels.items()
            if prefix is None or name.startswith(prefix)
        }

    async def channel_info(self, channel: str) -> ChannelInfo:
        count = (await self.channel_counts(channel)).get(channel, 0)
        user_count = None
        if channel_kind(channel) is ChannelKind.PRESENCE:
            self._require_cluster()
            user_count = len(await self.presence.members(channel))
        return ChannelInfo(occupied=count > 0, subscription_count=count, user_count=user_count)

    async def users(self, channel: str) -> list[UserId]:
        """The ids of a presence channel's members, each as its authorizer gave it."""
        self._require_cluster()
        return [member.user_id for member in (await self.presence.members(channel)).values()]
