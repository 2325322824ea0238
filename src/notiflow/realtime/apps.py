"""The Pusher apps notiflow serves: the default one (``NOTIFLOW_PUSHER_APP_*``, notiflow's own)
and those of ``NOTIFLOW_PUSHER_APPS``, each with its key, secret, limits, channels and webhooks.

Apps are data: a connection finds its app once, by the key of its path ``/app/{key}``, and a
Pusher HTTP API request by the id of ``/apps/{id}`` (or its ``auth_key``)::

    apps = pusher_apps(settings)
    app = apps.by_key.get("acme-key")      # None: unknown key (pusher:error 4001)
    app = apps.by_id.get("2")              # None: unknown app (404)
    await ApiRateLimiter(redis).check(app) # TooManyRequests (429) over its api_rate_limit

Each app has a hub of its own (its channels, presence and cache), so the channels of two apps
never meet; in Redis each app's keys and pub/sub channels live under :attr:`PusherApp.prefix`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import structlog
from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis

from notiflow.config import Settings, parse_rate_limit
from notiflow.kit.errors import TooManyRequests
from notiflow.realtime.redis import PREFIX

log = structlog.get_logger(__name__)

__all__ = ["ApiRateLimiter", "PusherApp", "PusherApps", "pusher_apps"]


@dataclass(frozen=True, slots=True)
class PusherApp:
    app_id: str
    key: str
    secret: str
    # Open connections at once (all nodes together when they share Redis); None: no limit.
    max_connections: int | None = None
    client_events: bool = True
    max_presence_members: int = 100
    api_rate_limit: str | None = None
    # The app of NOTIFLOW_PUSHER_APP_*: notiflow's own channels, /broadcasting/auth and
    # /broadcasting/user-auth, replay of missed notifications.
    default: bool = False

    @property
    def prefix(self) -> str:
        """Where the app's channels, counts, presence and cached events live in Redis. The
        default app keeps the keys notiflow had before apps were data, so nodes of both
        versions share its channels during a rolling upgrade; the others are under
        ``notiflow:rt:app:<id>`` (no channel name can reach there: channel keys are
        ``...:ch:<name>``)."""
        return PREFIX if self.default else f"{PREFIX}:app:{self.app_id}"


class PusherApps:
    """Every app, the default one first; looked up by key and by id."""

    def __init__(self, apps: Sequence[PusherApp]) -> None:
        if not apps or not apps[0].default:
            raise ValueError("the default app comes first")
        self.all = tuple(apps)
        self.default = apps[0]
        self.by_key = {app.key: app for app in apps}
        self.by_id = {app.app_id: app for app in apps}

    def __iter__(self) -> Iterator[PusherApp]:
        return iter(self.all)

    @property
    def others(self) -> tuple[PusherApp, ...]:
        """The apps of ``NOTIFLOW_PUSHER_APPS``."""
        return self.all[1:]


def pusher_apps(settings: Settings) -> PusherApps:
    """The apps of the settings (their ids and keys are unique: the settings checked)."""
    default = PusherApp(
        app_id=settings.pusher_app_id,
        key=settings.pusher_app_key,
        secret=settings.pusher_app_secret,
        client_events=True,
        max_presence_members=settings.ws_presence_limit,
        default=True,
    )
    others = [
        PusherApp(
            app_id=app.id,
            key=app.key,
            secret=app.secret,
            max_connections=app.max_connections,
            client_events=app.client_events,
            max_presence_members=app.max_presence_members or settings.ws_presence_limit,
            api_rate_limit=app.api_rate_limit,
        )
        for app in settings.pusher_apps
    ]
    return PusherApps([default, *others])


class ApiRateLimiter:
    """Each app's Pusher HTTP API rate limit (``api_rate_limit``), over a moving window: every
    signed request counts one. With ``redis`` (the process's client, whose connections it
    shares) the count is shared by every process that serves the API; otherwise it is this
    process's. Redis unreachable, requests are let through (the outage is logged): the limit
    protects the server, it is not a quota to bill."""

    def __init__(self, redis: Redis | None = None) -> None:
        storage: Storage = MemoryStorage()
        if redis is not None:
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{PREFIX}:api-rate",
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # typed for scalar options only; redis-py takes a pool
            )
        self._limiter = MovingWindowRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {}
        self._failing = False

    async def check(self, app: PusherApp) -> None:
        """Count one request of ``app``; :class:`TooManyRequests` when it is over its limit."""
        if app.api_rate_limit is None:
            return
        item = self._items.get(app.api_rate_limit)
        if item is None:
            item = self._items[app.api_rate_limit] = parse_rate_limit(app.api_rate_limit)
        try:
            allowed = await self._limiter.hit(item, "app", app.app_id)
            if allowed:
                self._recovered()
                return
            stats = await self._limiter.get_window_stats(item, "app", app.app_id)
        except Exception as error:  # the storage is away: let the request through, say so once
            if not self._failing:
                self._failing = True
                log.warning("pusher_api_rate_limit_unavailable", error=repr(error))
            return
        self._recovered()
        raise TooManyRequests(
            f"app {app.app_id} is over its HTTP API rate limit ({app.api_rate_limit})",
            retry_after=max(0.0, stats.reset_time - time.time()),
        )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("pusher_api_rate_limit_available")
