"""Which webhook events a node's changes make: once per cluster, not once per node.

The hub tells a :class:`~notiflow.realtime.hub.HubWebhooks` of every local change: a channel's
first or last subscriber *here*, a presence member's first or last connection *here*, a client
event. What that means for the app depends on the other nodes:

- :class:`LocalWebhooks` (one process, no Redis: ``notiflow serve``): here is everywhere, so a
  local transition is the event, recorded at once for the outbox in the same process.
- :class:`ClusterWebhooks` (Redis): each node keeps, per channel and per presence member, a set
  of the nodes that hold it (``notiflow:rt:wh:<app>:ch:<channel>``,
  ``...:member:<channel>:<user id as JSON>``). A node's transitions are applied by one Lua
  script, in the order they happened here: joining a set that had no live holder makes
  ``channel_occupied`` / ``member_added``, leaving a set that keeps no live holder makes
  ``channel_vacated`` / ``member_removed``. The script appends the event to the Redis stream
  ``notiflow:rt:webhooks`` in the same atomic step, so the stream's order is the cluster's order
  of decisions, and two nodes deciding at once cannot both be first (or both be last).

Exactly once, also across failures:

- Every transition carries the node's sequence number; the script skips those it has applied
  already (``...:seq:<node>``), so a batch whose answer was lost (Redis gone mid-call) is simply
  sent again.
- A holder whose node is dead (its heartbeat key ``notiflow:rt:node:<id>`` expired) is dropped
  by whichever script meets it. When a live node joins a set whose only holders were dead, no
  ``channel_occupied`` is made: for the receiver the channel never stopped being occupied (its
  clients reconnected elsewhere). What a dead node leaves behind is reaped by
  :func:`reap_dead_nodes` (run beside the outbox): its holdings end as ``channel_vacated`` /
  ``member_removed`` unless a live node holds them too.
- A node whose sequence key is gone (Redis restarted empty, or the node was taken for dead
  during a partition) writes its holdings again before anything else, with ``join`` semantics.
  Its channels are announced again only where no live node holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

import structlog
from redis.asyncio import Redis

from notiflow.kit.retry import Backoff
from notiflow.realtime.protocol import Member
from notiflow.realtime.redis import PREFIX, RECONNECT_MAX, RECONNECT_RETRY, UNREACHABLE, Cluster
from notiflow.realtime.webhooks.events import (
    Recorded,
    RecordedEvents,
    WebhookApp,
    WebhookName,
    cache_miss,
    channel_occupied,
    channel_vacated,
    client_event,
    member_added,
    member_removed,
    now_ms,
)

log = structlog.get_logger(__name__)

__all__ = [
    "STREAM",
    "ClusterWebhooks",
    "LocalWebhooks",
    "reap_dead_nodes",
]

# The Redis stream the nodes append to and the outbox reads (every app's events: each entry
# names its app).
STREAM = f"{PREFIX}:webhooks"
# Entries the stream keeps while nobody reads it (the scheduler is down): about 200 bytes
# each, so at most ~20 MB; beyond that the oldest are trimmed (and lost).
STREAM_MAX_ENTRIES = 100_000
# Transitions one script call applies: a burst of subscriptions is one round trip per 200.
OPS_PER_CALL = 200
# Transitions a node keeps while Redis is unreachable; new ones beyond that are dropped.
MAX_PENDING = 100_000
# How long a stopping node waits for its last transitions to reach Redis (what is left is
# reaped once its heartbeat key is gone).
STOP_WAIT = 5.0


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _user_key(user_id: Any) -> str:
    """A member's identity: its id's string form, as for presence (``Member.key``): 42 and
    "42" are one member, whose member_added / member_removed are told once."""
    return str(user_id)


def _message_fields(message: bytes) -> tuple[str, Any, Any] | None:
    """``(event, data, user_id)`` of a relayed client event's JSON."""
    try:
        parsed = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("event"), str):
        return None
    return parsed["event"], parsed.get("data"), parsed.get("user_id")


class _NodeWebhooks(ABC):
    """This node's own transitions: a channel's first and last subscriber here (the hub says
    which), a member's first and last connection here (counted by socket id, so a socket that
    subscribes twice is one connection)."""

    def __init__(self, app: WebhookApp) -> None:
        self.app = app
        self._channels = app.wants(WebhookName.CHANNEL_OCCUPIED) or app.wants(
            WebhookName.CHANNEL_VACATED
        )
        self._members = app.wants(WebhookName.MEMBER_ADDED) or app.wants(WebhookName.MEMBER_REMOVED)
        self._client_events = app.wants(WebhookName.CLIENT_EVENT)
        self._cache_misses = app.wants(WebhookName.CACHE_MISS)
        # (channel, user key) -> the sockets of that member here.
        self._member_sockets: dict[tuple[str, str], set[str]] = {}

    # ---------------------------------------------------------------- HubWebhooks

    def subscribed(
        self, channel: str, socket_id: str, member: Member | None, first_here: bool
    ) -> None:
        if first_here and self._channels:
            self._joined(
                self._channel_key(channel),
                self._wanted(channel_occupied(channel)),
                self._wanted(channel_vacated(channel)),
            )
        if member is not None and self._members:
            key = (channel, _user_key(member.user_id))
            sockets = self._member_sockets.setdefault(key, set())
            first = not sockets
            sockets.add(socket_id)
            if first:
                self._joined(
                    self._member_key(channel, key[1]),
                    self._wanted(member_added(channel, member.user_id)),
                    self._wanted(member_removed(channel, member.user_id)),
                )

    def unsubscribed(
        self, channel: str, socket_id: str, member: Member | None, last_here: bool
    ) -> None:
        # The member leaves before the channel empties: member_removed, then channel_vacated.
        if member is not None and self._members:
            key = (channel, _user_key(member.user_id))
            sockets = self._member_sockets.get(key)
            if sockets is not None and socket_id in sockets:
                sockets.discard(socket_id)
                if not sockets:
                    del self._member_sockets[key]
                    self._left(
                        self._member_key(channel, key[1]),
                        self._wanted(member_removed(channel, member.user_id)),
                    )
        if last_here and self._channels:
            self._left(self._channel_key(channel), self._wanted(channel_vacated(channel)))

    def client_event(self, channel: str, message: bytes, socket_id: str) -> None:
        if not self._client_events:
            return
        fields = _message_fields(message)
        if fields is None:
            return
        event, data, user_id = fields
        self._emit(client_event(channel, event, data, socket_id, user_id))

    def cache_miss(self, channel: str) -> None:
        if self._cache_misses:
            self._emit(cache_miss(channel))

    # ---------------------------------------------------------------- what the modes do

    def _wanted(self, event: dict[str, Any]) -> dict[str, Any] | None:
        return event if self.app.wants(event["name"]) else None

    def _channel_key(self, channel: str) -> str:
        return f"ch:{channel}"

    def _member_key(self, channel: str, user_key: str) -> str:
        # Channel names have no ":" (protocol.CHANNEL_NAME_RE): the key is unambiguous.
        return f"member:{channel}:{user_key}"

    @abstractmethod
    def _joined(
        self, key: str, event: dict[str, Any] | None, leave_event: dict[str, Any] | None
    ) -> None:
        """Record that this node now holds ``key`` (``event`` if it is the first anywhere)."""

    @abstractmethod
    def _left(self, key: str, event: dict[str, Any] | None) -> None:
        """Record that this node no longer holds ``key`` (``event`` if it was the last)."""

    @abstractmethod
    def _emit(self, event: dict[str, Any]) -> None:
        """Hand one webhook event to the app's outbox (this node's own, or the cluster's)."""


class LocalWebhooks(_NodeWebhooks):
    """One process and no other node: its transitions are the app's events."""

    def __init__(self, app: WebhookApp, recorded: RecordedEvents) -> None:
        super().__init__(app)
        self.recorded = recorded

    def _joined(
        self, key: str, event: dict[str, Any] | None, leave_event: dict[str, Any] | None
    ) -> None:
        if event is not None:
            self._emit(event)

    def _left(self, key: str, event: dict[str, Any] | None) -> None:
        if event is not None:
            self._emit(event)

    def _emit(self, event: dict[str, Any]) -> None:
        self.recorded.put(Recorded(self.app.app_id, event, now_ms()))


# ---------------------------------------------------------------------------- the cluster

# Shared by the scripts. ARGV[1..6]: node, key prefix of the app, heartbeat key prefix, stream,
# stream length, app id. Every key is derived from ARGV (a standalone Redis, as the
# backplane's keys are).
_PRELUDE = """
local node, wh, alive, stream, maxlen, app = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local function emit(event, ms)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'app', app, 'event', event, 'ms', ms)
end

-- The live holders of key other than `me`; dead ones are dropped on the way, with their node's
-- sequence (a node that was only cut off then writes its holdings again when it is back).
local function others(key, me)
  local live, dead = 0, 0
  for _, holder in ipairs(redis.call('SMEMBERS', key)) do
    if holder ~= me then
      if redis.call('EXISTS', alive .. holder) == 1 then
        live = live + 1
      else
        dead = dead + 1
        redis.call('SREM', key, holder)
        redis.call('HDEL', wh .. ':holdings:' .. holder, key)
        redis.call('DEL', wh .. ':seq:' .. holder)
      end
    end
  end
  return live, dead
end

-- This node holds `key` now: the event when nobody held it, nothing when only dead nodes did
-- (the receiver never heard that they left). `leave_event` is kept for the reaper.
local function join(key, event, leave_event, ms)
  if redis.call('SADD', key, node) == 1 then
    local live, dead = others(key, node)
    if live == 0 and dead == 0 and event ~= '' then emit(event, ms) end
  end
  redis.call('HSET', wh .. ':holdings:' .. node, key, leave_event)
end
"""

# ARGV[7]: 1 when the node has applied transitions before (then its sequence key must exist);
# then groups of six: sequence, op (join, leave or emit), key, event, leave event, ms.
# Returns the number applied, or -1 when the node's sequence key is gone (restore first).
_APPLY = (
    _PRELUDE
    + """
local seq_key = wh .. ':seq:' .. node
local stored = redis.call('GET', seq_key)
if not stored and ARGV[7] == '1' then return -1 end
local last = tonumber(stored or '0')
redis.call('SADD', wh .. ':nodes', node)
local applied = 0
for i = 8, #ARGV, 6 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    local op, key, event = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local leave_event, ms = ARGV[i + 4], ARGV[i + 5]
    if op == 'join' then
      join(key, event, leave_event, ms)
    elseif op == 'leave' then
      redis.call('HDEL', wh .. ':holdings:' .. node, key)
      if redis.call('SREM', key, node) == 1 then
        local live = others(key, node)
        if live == 0 and event ~= '' then emit(event, ms) end
      end
    else
      emit(event, ms)
    end
    last = seq
    applied = applied + 1
  end
end
redis.call('SET', seq_key, last)
return applied
"""
)

# ARGV[7]: the node's last applied sequence; ARGV[8]: now (ms); then groups of three: key,
# event, leave event. Runs only when the sequence key is gone.
_RESTORE = (
    _PRELUDE
    + """
local seq_key = wh .. ':seq:' .. node
if redis.call('EXISTS', seq_key) == 1 then return 0 end
redis.call('SADD', wh .. ':nodes', node)
local restored = 0
for i = 9, #ARGV, 3 do
  join(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[8])
  restored = restored + 1
end
redis.call('SET', seq_key, ARGV[7])
return restored
"""
)

# ARGV[1] is the dead node; ARGV[7]: now (ms). Its holdings end unless a live node holds them.
_REAP = (
    _PRELUDE
    + """
if redis.call('EXISTS', alive .. node) == 1 then return -1 end
local holdings = wh .. ':holdings:' .. node
local fields = redis.call('HGETALL', holdings)
local ended = 0
for i = 1, #fields, 2 do
  local key, leave_event = fields[i], fields[i + 1]
  if redis.call('SREM', key, node) == 1 then
    local live = others(key, node)
    if live == 0 and leave_event ~= '' then
      emit(leave_event, ARGV[7])
      ended = ended + 1
    end
  end
end
redis.call('DEL', holdings, wh .. ':seq:' .. node)
redis.call('SREM', wh .. ':nodes', node)
return ended
"""
)


def _app_prefix(app_id: str) -> str:
    return f"{PREFIX}:wh:{app_id}"


def _script_head(node: str, app_id: str) -> list[str]:
    return [node, _app_prefix(app_id), f"{PREFIX}:node:", STREAM, str(STREAM_MAX_ENTRIES), app_id]


@dataclass(frozen=True, slots=True)
class _Op:
    seq: int
    kind: str  # join, leave, emit
    key: str
    event: str
    leave_event: str
    ms: int


class ClusterWebhooks(_NodeWebhooks):
    """A node of a Redis cluster: its transitions go to Redis in order, one task sending them
    (so they arrive in the order they happened here), batched per round trip."""

    def __init__(self, app: WebhookApp, redis: Redis, cluster: Cluster) -> None:
        super().__init__(app)
        self.redis = redis
        self.cluster = cluster
        self.link = cluster.link
        self._apply = redis.register_script(_APPLY)
        self._restore = redis.register_script(_RESTORE)
        self._pending: deque[_Op] = deque()
        self._seq = 0
        self._applied = 0
        # What Redis has confirmed this node holds: key -> (event, leave event), for a restore.
        self._held: dict[str, tuple[str, str]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self, wait: float = STOP_WAIT) -> None:
        """Give the last transitions (a stopping server's leaves) a moment to reach Redis."""
        if self._task is None:
            return
        if self.link.up:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), wait)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ---------------------------------------------------------------- recording

    def _joined(
        self, key: str, event: dict[str, Any] | None, leave_event: dict[str, Any] | None
    ) -> None:
        self._add("join", key, event, leave_event)

    def _left(self, key: str, event: dict[str, Any] | None) -> None:
        self._add("leave", key, event, None)

    def _emit(self, event: dict[str, Any]) -> None:
        self._add("emit", "", event, None)

    def _add(
        self,
        kind: str,
        key: str,
        event: dict[str, Any] | None,
        leave_event: dict[str, Any] | None,
    ) -> None:
        if len(self._pending) >= MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.error("webhook_transitions_dropped", dropped=self.dropped, app=self.app.app_id)
            return
        self._seq += 1
        self._pending.append(
            _Op(
                self._seq,
                kind,
                key,
                _dumps(event) if event is not None else "",
                _dumps(leave_event) if leave_event is not None else "",
                now_ms(),
            )
        )
        self._idle.clear()
        self._wake.set()

    # ---------------------------------------------------------------- sending

    async def _run(self) -> None:
        backoff = Backoff(RECONNECT_RETRY)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if not self.link.up:
                    await self.link.wait_up()
                batch = list(islice(self._pending, OPS_PER_CALL))
                try:
                    await self._send(batch)
                except UNREACHABLE as error:
                    self.link.lost(error)
                    await asyncio.sleep(backoff.next_delay())
                    continue
                except Exception:  # a defect: say so, keep the transitions, try again later
                    log.exception("webhook_transitions_failed", app=self.app.app_id)
                    await asyncio.sleep(RECONNECT_MAX)
                    continue
                backoff.reset()
                for op in batch:
                    self._pending.popleft()
                    self._confirmed(op)
            self._idle.set()

    async def _send(self, batch: list[_Op]) -> None:
        head = _script_head(self.cluster.node_id, self.app.app_id)
        args: list[str | int] = [*head, "1" if self._applied else "0"]
        for op in batch:
            args += [op.seq, op.kind, _full_key(self.app.app_id, op.key), op.event]
            args += [op.leave_event, op.ms]
        async with self.link.gate:
            applied = await self._apply(keys=[], args=args)
            if applied == -1:
                restored = await self._restore(keys=[], args=self._restore_args(head))
                log.info(
                    "webhook_holdings_restored", app=self.app.app_id, holdings=int(restored or 0)
                )
                await self._apply(keys=[], args=args)

    def _restore_args(self, head: list[str]) -> list[str | int]:
        args: list[str | int] = [*head, self._applied, now_ms()]
        for key, (event, leave_event) in self._held.items():
            args += [_full_key(self.app.app_id, key), event, leave_event]
        return args

    def _confirmed(self, op: _Op) -> None:
        self._applied = op.seq
        if op.kind == "join":
            self._held[op.key] = (op.event, op.leave_event)
        elif op.kind == "leave":
            self._held.pop(op.key, None)


def _full_key(app_id: str, key: str) -> str:
    return f"{_app_prefix(app_id)}:{key}" if key else ""


# ---------------------------------------------------------------------------- the reaper


async def reap_dead_nodes(redis: Redis, apps: Iterable[WebhookApp]) -> int:
    """End what dead nodes held (``channel_vacated`` / ``member_removed`` where no live node
    holds it too); returns how many events that made. Safe to run anywhere, any number of
    times: each node is reaped by one atomic script, which does nothing if the node lives."""
    reap = redis.register_script(_REAP)
    made = 0
    for app in apps:
        nodes = [
            node.decode() if isinstance(node, bytes) else str(node)
            for node in await redis.smembers(f"{_app_prefix(app.app_id)}:nodes")
        ]
        if not nodes:
            continue
        alive = await redis.mget([f"{PREFIX}:node:{node}" for node in nodes])
        for node, flag in zip(nodes, alive, strict=True):
            if flag is not None:
                continue
            ended = await reap(keys=[], args=[*_script_head(node, app.app_id), now_ms()])
            if ended and ended > 0:
                log.info("webhook_dead_node_reaped", node=node, app=app.app_id, events=ended)
                made += int(ended)
    return made
