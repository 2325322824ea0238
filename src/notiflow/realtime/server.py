"""The WebSocket server: picows transport, the protocol core per connection, the hub for channels.

Each connection runs :class:`~notiflow.realtime.protocol.PusherConnection` and performs its
actions on the hub of its app (:class:`ServedApp`, found once by the key of ``/app/{key}``: no
per-message lookup). Outgoing frames are queued per connection and written once per loop tick,
so a burst of events to one socket costs one ``write``; every frame is built once for all of its
receivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
import logging
import secrets
import socket
import struct
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from notiflow.config import Settings
from notiflow.realtime import protocol
from notiflow.realtime.apps import PusherApp, pusher_apps
from notiflow.realtime.cache import cache_replay
from notiflow.realtime.hub import TERMINATE_USER_FRAME, Hub, PresenceFull, websocket_frame
from notiflow.realtime.protocol import (
    OVER_CAPACITY_STATUS,
    Action,
    Close,
    ErrorCode,
    Join,
    Leave,
    Member,
    ProtocolConfig,
    PusherConnection,
    Send,
    SignIn,
    Whisper,
)
from notiflow.realtime.redis import RedisBackplane
from notiflow.realtime.replay import ReplaySource, missed_replay

log = structlog.get_logger(__name__)

# A client that stops reading gets this much queued before it is disconnected (4100: retry later).
MAX_WRITE_BUFFER_BYTES = 4 * 1024 * 1024
# RFC 6455 close codes
PROTOCOL_ERROR = 1002
MESSAGE_TOO_BIG = 1009
# How often a node with Redis writes its connections of each app that has max_connections, and
# reads the other nodes': the limit holds for the cluster within what opens in that time.
CONNECTION_COUNT_INTERVAL = 1.0
# SO_LINGER on with a zero timeout: close() resets the connection and drops the unsent data
# instead of leaving the kernel to push it to a peer that does not read.
_RESET_ON_CLOSE = struct.pack("ii", 1, 0)


class SocketIds:
    """``<node>.<counter>`` ids: the node part is random per process, so ids are unique across
    nodes without coordination, and match pusher's ``^\\d+\\.\\d+$``."""

    def __init__(self) -> None:
        self.node = str(secrets.randbelow(9 * 10**8) + 10**8)
        self._counter = itertools.count(secrets.randbelow(10**6) + 1)

    def next(self) -> str:
        return f"{self.node}.{next(self._counter)}"


def origin_allowed(origin: str | None, allowed: Sequence[str]) -> bool:
    """Compare the Origin's host with the allow-list (``*`` wildcards). Clients that send no
    Origin (servers, mobile apps) are not browsers and cannot be victims of cross-site hijacking."""
    if not allowed or "*" in allowed or origin is None:
        return True
    host = urlsplit(origin).hostname or ""
    return any(fnmatch.fnmatchcase(host, pattern) for pattern in allowed)


@dataclass(slots=True, eq=False)
class ServedApp:
    """An app as this server serves it: its protocol settings (key, secret, client events),
    its hub (channels, presence, cache), its connection limit, and its open connections. A
    connection finds it once, by the key of its path, and keeps it."""

    config: ProtocolConfig
    hub: Hub
    app_id: str = ""
    max_connections: int | None = None
    # Whether subscribing to private-notifications.{userId} replays notiflow's notifications:
    # only on notiflow's own (default) app, whose users they are.
    replays: bool = True
    # Open connections here, and (with a Redis cluster) on the other nodes as last read.
    connections: int = 0
    elsewhere: int = 0

    def full(self) -> bool:
        limit = self.max_connections
        return limit is not None and self.connections + self.elsewhere >= limit


class SignedInUser:
    """A signed-in connection as the subscriber of its server-to-user channel: events go to the
    connection; the hub's terminate frame closes it instead (4009). Only these subscribers
    look at what they are handed, so other channels' frames cost no check."""

    __slots__ = ("connection", "socket_id")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.socket_id = connection.socket_id

    def enqueue(self, frame: bytes) -> None:
        connection = self.connection
        if frame == TERMINATE_USER_FRAME:
            connection.perform(connection.protocol.terminate())
        else:
            connection.enqueue(frame)


class Connection(WSListener):
    __slots__ = (
        "_abort_timer",
        "_fragment_bytes",
        "_fragments",
        "app",
        "closing",
        "hub",
        "pending",
        "protocol",
        "raw",
        "refusal",
        "server",
        "socket_id",
        "transport",
    )

    def __init__(
        self,
        server: RealtimeServer,
        socket_id: str,
        refusal: tuple[int, str] | None,
        app: ServedApp | None = None,
    ) -> None:
        self.server = server
        self.socket_id = socket_id
        self.refusal = refusal
        # The connection's app, found once: everything it does goes to this hub.
        self.app = app or server.default_app
        self.hub = self.app.hub
        self.protocol = PusherConnection(socket_id, self.app.config, time.monotonic())
        self.pending: list[bytes] = []
        self._fragments: list[bytes] | None = None
        self._fragment_bytes = 0
        self.transport: WSTransport | None = None
        self.raw: asyncio.Transport | None = None
        # Set once the close is under way: nothing more is queued or read.
        self.closing = False
        self._abort_timer: asyncio.TimerHandle | None = None

    # ---------------------------------------------------------------- picows callbacks

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.raw = transport.underlying_transport
        if self.refusal is not None:
            self.refuse(*self.refusal)
            return
        self.server.connections[self.socket_id] = self
        self.app.connections += 1
        self.perform(self.protocol.open())

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.closing:
            # picows still hands over the rest of what it read (a flood's tail): drop it cheaply.
            return
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            # No extension is ever negotiated (permessage-deflate is not offered).
            self.close(PROTOCOL_ERROR, "Reserved bits set without a negotiated extension")
            return
        msg_type = frame.msg_type
        if msg_type == WSMsgType.TEXT or msg_type == WSMsgType.CONTINUATION:
            payload = self._assemble(frame)
            if payload is not None:
                self.perform(self.protocol.receive(payload, time.monotonic()))
        elif msg_type == WSMsgType.PING:
            # Answered here rather than by picows, so a ping passes the checks above too.
            transport.send_pong(frame.get_payload_as_bytes())
        elif msg_type == WSMsgType.CLOSE:
            self.closing = True
            transport.send_close(frame.get_close_code())
            self._disconnect(transport)
        elif msg_type == WSMsgType.BINARY:
            self.enqueue(
                websocket_frame(
                    protocol.error_message(ErrorCode.RECONNECT, "Binary frames are not supported")
                )
            )

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closing = True
        self.server.forget(self)
        self.pending.clear()
        self._fragments = None
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        # Let go of the transports at once: whatever a slow reader left queued goes with them.
        self.raw = None
        self.transport = None
        self.perform(self.protocol.disconnected())

    def _assemble(self, frame: WSFrame) -> bytes | None:
        """Join fragmented messages (pusher-js never fragments, other clients may). The byte
        count is kept as the fragments come, and their number is capped: a message is never
        re-measured, and one-byte fragments cannot turn a small message into a long stall."""
        chunk = frame.get_payload_as_bytes()
        fragments = self._fragments
        continuation = frame.msg_type == WSMsgType.CONTINUATION
        if fragments is None:
            if continuation:
                self.close(PROTOCOL_ERROR, "Continuation frame without a message to continue")
                return None
            if frame.fin:
                return chunk
            self._fragments = [chunk]
            self._fragment_bytes = len(chunk)
            return None
        if not continuation:
            self.close(PROTOCOL_ERROR, "New message before the fragmented one was finished")
            return None
        fragments.append(chunk)
        self._fragment_bytes += len(chunk)
        if self._fragment_bytes > self.server.max_frame_bytes:
            self.close(MESSAGE_TOO_BIG, "Message too big")
            return None
        if len(fragments) > self.server.max_fragments:
            self.close(
                MESSAGE_TOO_BIG, f"Message in more than {self.server.max_fragments} fragments"
            )
            return None
        if not frame.fin:
            return None
        self._fragments = None
        return b"".join(fragments)

    # ---------------------------------------------------------------- actions

    def perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.enqueue(websocket_frame(action.frame))
            elif isinstance(action, Whisper):
                self.server.spawn(self.hub.whisper(action.channel, action.frame, self.socket_id))
            elif isinstance(action, Join):
                self.server.spawn(self._join(action.channel, action.member, action.signed_data))
            elif isinstance(action, Leave):
                self.server.spawn(self.hub.leave(action.channel, self, action.member))
            elif isinstance(action, Close):
                self.close(action.code, action.reason)
            elif isinstance(action, SignIn):
                self.server.spawn(self._sign_in(action))

    async def _join(
        self, channel: str, member: Member | None, signed_data: str | None = None
    ) -> None:
        # A cache channel is joined through a stand-in that holds what is published until the
        # cached event (or pusher:cache_miss) has followed subscription_succeeded; a user's
        # notifications channel through one that holds it until the missed events and the
        # unread counts have.
        server = self.server
        hub = self.hub
        source = server.replay if self.app.replays else None
        replay = cache_replay(hub, channel, self) or missed_replay(
            source, hub, channel, self, signed_data, server.replay_timeout
        )
        try:
            members = await hub.join(channel, replay or self, member)
        except PresenceFull:
            self.protocol.subscriptions.pop(channel, None)
            self.enqueue(
                websocket_frame(
                    protocol.subscription_error(
                        channel,
                        "LimitReached",
                        "The presence channel is full",
                        OVER_CAPACITY_STATUS,
                    )
                )
            )
            return
        except Exception as error:  # answer the client: a join never fails in silence
            log.exception("realtime_join_failed", channel=channel, error=repr(error))
            self.protocol.subscriptions.pop(channel, None)
            try:
                await hub.leave(channel, self, member)
            except Exception:  # the client still gets its answer below
                log.exception("realtime_leave_failed", channel=channel)
            self.enqueue(
                websocket_frame(
                    protocol.subscription_error(
                        channel, "ServiceUnavailable", "The subscription failed; retry", 503
                    )
                )
            )
            return
        if self.transport is None or self.transport.is_disconnected:
            await hub.leave(channel, self, member)
            return
        presence = protocol.presence_data(members) if members is not None else None
        self.enqueue(websocket_frame(protocol.subscription_succeeded(channel, presence)))
        if replay is not None:
            await replay.finish()

    async def _sign_in(self, action: SignIn) -> None:
        """Join the user's channel, then say the sign-in succeeded: once the client knows,
        what is sent to the user reaches it (in a cluster too: the join waits for Redis)."""
        hub = self.hub
        try:
            await hub.join(action.channel, SignedInUser(self), None)
        except Exception as error:  # answer the client: a sign-in never fails in silence
            log.exception("realtime_signin_failed", error=repr(error))
            if self.protocol.user_id == action.user_id:
                self.protocol.user_id = None
            with contextlib.suppress(Exception):
                await hub.leave(action.channel, self, None)
            self.enqueue(
                websocket_frame(
                    protocol.error_message(ErrorCode.RECONNECT, "The sign-in failed; retry")
                )
            )
            return
        if (
            self.transport is None
            or self.transport.is_disconnected
            or self.protocol.user_id != action.user_id
        ):
            # Gone (or signed in as someone else) meanwhile: its leave may have run first.
            await hub.leave(action.channel, self, None)
            return
        self.enqueue(websocket_frame(action.frame))

    def enqueue(self, frame: bytes) -> None:
        if self.raw is None or self.closing:
            return
        if not self.pending:
            self.server.mark_dirty(self)
        self.pending.append(frame)

    def flush(self) -> None:
        if self.closing:
            self.pending.clear()
            return
        raw = self._write_pending()
        if raw is not None and raw.get_write_buffer_size() > self.server.max_buffered_bytes:
            self.close(ErrorCode.OVER_CAPACITY, "Client is not reading fast enough")

    def _write_pending(self) -> asyncio.Transport | None:
        raw = self.raw
        pending = self.pending
        if raw is None or not pending or raw.is_closing():
            pending.clear()
            return None
        if len(pending) == 1:
            raw.write(pending[0])
        else:
            # uvloop writes the list with one writev and keeps what the socket does not take as
            # references to the frames, which are shared by all their receivers: a backlog costs
            # no copy per connection (asyncio's own loop joins them).
            raw.writelines(pending)
        pending.clear()
        return raw

    def refuse(self, code: int, reason: str) -> None:
        """Say why in a ``pusher:error``, then close with the same code."""
        self.enqueue(websocket_frame(protocol.error_message(code, reason)))
        self.close(code, reason)

    def close(self, code: int, reason: str) -> None:
        transport = self.transport
        if transport is None or transport.is_disconnected or self.closing:
            return
        self.closing = True
        self._fragments = None
        raw = self.raw
        if raw is not None and raw.get_write_buffer_size() <= self.server.max_buffered_bytes:
            self._write_pending()  # what was queued before the close goes out first
        self.pending.clear()
        transport.send_close(WSCloseCode(code), reason.encode()[:120])
        self._disconnect(transport)

    def _disconnect(self, transport: WSTransport) -> None:
        """Close after the queued bytes are written; a client that does not read them within
        the grace period is reset instead, so its socket and buffer are freed."""
        transport.disconnect()
        if self._abort_timer is None and not transport.is_disconnected:
            loop = self.server.loop
            self._abort_timer = loop.call_later(self.server.close_grace, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        raw = self.raw
        if raw is None:
            return
        sock = raw.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        raw.abort()


class RealtimeServer:
    """Pusher-protocol server. ``await start(host, port)``, then publish through ``hub``."""

    def __init__(
        self,
        config: ProtocolConfig,
        hub: Hub | None = None,
        *,
        allowed_origins: Sequence[str] = (),
        max_connections: int | None = None,
        max_frame_bytes: int = 1_048_576,
        max_fragments: int = 1_000,
        max_buffered_bytes: int = MAX_WRITE_BUFFER_BYTES,
        close_grace: float = 3.0,
        reap_interval: float = 5.0,
        replay: ReplaySource | None = None,
        replay_timeout: float = 5.0,
        apps: Sequence[ServedApp] = (),
    ) -> None:
        self.config = config
        self.hub = hub or Hub()
        # The app of config and hub (notiflow's own), then any others, by key.
        self.default_app = ServedApp(config, self.hub)
        self.apps = {config.app_key: self.default_app}
        for app in apps:
            if app.config.app_key in self.apps:
                raise ValueError(f"two apps have the key {app.config.app_key!r}")
            self.apps[app.config.app_key] = app
        self.allowed_origins = tuple(allowed_origins)
        self.max_connections = max_connections
        self.max_frame_bytes = max_frame_bytes
        self.max_fragments = max_fragments
        self.max_buffered_bytes = max_buffered_bytes
        self.close_grace = close_grace
        self.reap_interval = reap_interval
        # Where missed notifications are read on a subscribe to private-notifications.{userId}.
        self.replay = replay
        self.replay_timeout = replay_timeout
        self.socket_ids = SocketIds()
        self.connections: dict[str, Connection] = {}
        self.stopping = False
        # Set once stopping and every connection is gone (their channels being left).
        self._all_gone = asyncio.Event()
        self._stopped: asyncio.Future[None] | None = None
        self._dirty: list[Connection] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._counter: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop or asyncio.get_running_loop()

    @property
    def connection_count(self) -> int:
        return len(self.connections)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("server not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str = "127.0.0.1", port: int = 6001) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await ws_create_server(
            self._accept,
            host,
            port,
            max_frame_size=self.max_frame_bytes,
            # A 1 KiB initial read buffer keeps idle connections small; it grows on demand.
            read_buffer_init_size=1024,
            enable_auto_pong=False,  # Connection.on_ws_frame answers pings
            websocket_handshake_timeout=10,
            # An adapter, not a Logger: picows then shares it instead of building a child
            # Logger per connection (~0.4 KB each).
            logger_name=logging.LoggerAdapter(logging.getLogger("picows.server"), {}),
            # Room for connection storms (reconnects after a deploy) without dropped SYNs.
            backlog=4096,
        )
        self._reaper = asyncio.create_task(self._reap_forever())
        counted = [
            (app, app.hub.backplane)
            for app in self.apps.values()
            if app.max_connections is not None and isinstance(app.hub.backplane, RedisBackplane)
        ]
        if counted:
            self._counter = asyncio.create_task(self._count_forever(counted))
        log.info("realtime_listening", url=f"ws://{host}:{self.port}/app/{self.config.app_key}")

    async def stop(self) -> None:
        """Stop listening, close every connection with 4200 (pusher-js reconnects at once, to
        another node), and return once every connection is gone and has left its channels:
        its presence members are then removed cluster-wide (the other nodes' subscribers got
        ``member_removed``), so the hub can be closed next. A second call waits for the first.
        """
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._shut_down())
        await asyncio.shield(self._stopped)

    async def _shut_down(self) -> None:
        self.stopping = True
        for task in (self._reaper, self._counter):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            # First, so pusher-js's immediate reconnect finds this node closed and goes on to
            # another one (a connection accepted meanwhile is refused with 4200 too).
            self._server.close()
        for connection in list(self.connections.values()):
            connection.refuse(ErrorCode.RECONNECT, "Server shutting down")
        if not self.connections:
            self._all_gone.set()
        # Each close writes what is queued and the close frame; a client that does not read
        # them is reset after close_grace. Either way its socket is gone by then.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_gone.wait(), self.close_grace + 1.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), self.close_grace)
        # The leaves of the closed connections (presence members removed, member_removed
        # published to the other nodes) and anything they started.
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self, connection: Connection) -> None:
        """A connection's socket is gone."""
        if self.connections.pop(connection.socket_id, None) is not None:
            connection.app.connections -= 1
        if self.stopping and not self.connections:
            self._all_gone.set()

    def _accept(self, request: WSUpgradeRequest) -> Connection | None:
        target = urlsplit(request.path.decode("latin-1"))
        prefix, _, key = target.path.partition("/app/")
        if prefix or not key or "/" in key:
            return None  # 404
        refusal: tuple[int, str] | None = None
        app = self.apps.get(key)
        if self.stopping:
            refusal = (ErrorCode.RECONNECT, "Server shutting down")
        elif app is None:
            refusal = (ErrorCode.APP_NOT_FOUND, f"App key {key[:64]} does not exist")
        elif not origin_allowed(request.headers.get("Origin"), self.allowed_origins):
            refusal = (ErrorCode.UNAUTHORIZED, "Origin not allowed")
        elif self.max_connections is not None and len(self.connections) >= self.max_connections:
            refusal = (ErrorCode.OVER_CAPACITY, "Over connection quota")
        elif app.full():
            # Soketi's answer (Pusher's own, 4004, would stop pusher-js for good).
            refusal = (
                ErrorCode.OVER_CAPACITY,
                "The current concurrent connections quota has been reached",
            )
        return Connection(self, self.socket_ids.next(), refusal, app)

    # ---------------------------------------------------------------- writes and tasks

    def mark_dirty(self, connection: Connection) -> None:
        self._dirty.append(connection)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection.flush()

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("realtime_task_failed", error=repr(task.exception()))

    async def _count_forever(self, counted: list[tuple[ServedApp, RedisBackplane]]) -> None:
        """Keep each app's connections on the other nodes known (``ServedApp.elsewhere``);
        while Redis is unreachable the last known count stands."""
        while True:
            for app, backplane in counted:
                try:
                    elsewhere = await backplane.connections_elsewhere(app.connections)
                except Exception:  # a defect must not end the counting for good
                    log.exception("realtime_connection_count_failed", app=app.app_id)
                    continue
                if elsewhere is not None:
                    app.elsewhere = elsewhere
            await asyncio.sleep(CONNECTION_COUNT_INTERVAL)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            now = time.monotonic()
            for connection in list(self.connections.values()):
                actions = connection.protocol.tick(now)
                if actions:
                    connection.perform(actions)


def protocol_config(settings: Settings, app: PusherApp) -> ProtocolConfig:
    """What a connection of ``app`` follows: the app's key, secret and client-event switch,
    the server's ``NOTIFLOW_WS_*`` limits."""
    return ProtocolConfig(
        app_key=app.key,
        app_secret=app.secret,
        activity_timeout=settings.ws_activity_timeout,
        max_message_bytes=settings.ws_max_message_bytes,
        client_events=app.client_events,
        client_event_rate=settings.ws_client_event_rate,
        max_channels_per_connection=settings.ws_max_channels_per_connection,
        user_auth_timeout=settings.ws_user_auth_timeout_seconds or None,
    )


def build_realtime_server(
    settings: Settings,
    hub: Hub,
    replay: ReplaySource | None = None,
    app_hubs: Mapping[str, Hub] | None = None,
) -> RealtimeServer:
    """The WebSocket server configured from ``NOTIFLOW_*`` settings; ``hub`` is the default
    app's, ``app_hubs`` those of the apps of NOTIFLOW_PUSHER_APPS by id (each one needed);
    ``replay`` reads missed notifications (none without it, or with
    NOTIFLOW_WS_REPLAY_MAX_EVENTS=0)."""
    user_auth_timeout = settings.ws_user_auth_timeout_seconds or None
    # The sign-in deadline is checked by the same sweep as liveness: every 5 s, or often
    # enough to close a connection within half the deadline past it.
    reap_interval = 5.0 if user_auth_timeout is None else min(5.0, user_auth_timeout / 2)
    apps = pusher_apps(settings)
    served: list[ServedApp] = []
    for app in apps.others:
        app_hub = (app_hubs or {}).get(app.app_id)
        if app_hub is None:
            raise ValueError(f"no hub for the app {app.app_id} of NOTIFLOW_PUSHER_APPS")
        served.append(
            ServedApp(
                protocol_config(settings, app),
                app_hub,
                app_id=app.app_id,
                max_connections=app.max_connections,
                replays=False,
            )
        )
    server = RealtimeServer(
        protocol_config(settings, apps.default),
        hub,
        allowed_origins=settings.ws_allowed_origins,
        max_fragments=settings.ws_max_message_fragments,
        max_buffered_bytes=settings.ws_max_buffered_bytes,
        close_grace=settings.ws_close_grace_seconds,
        replay=replay if settings.ws_replay_max_events > 0 else None,
        replay_timeout=settings.ws_replay_timeout_seconds,
        reap_interval=reap_interval,
        apps=served,
    )
    server.default_app.app_id = apps.default.app_id
    return server
