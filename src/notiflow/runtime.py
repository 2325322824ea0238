"""The long-lived objects one process shares: engine, Redis, the unread cache, event listeners."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from notiflow.config import BroadcastDriver, Settings, parse_push_rollout
from notiflow.kit.db import create_engine, create_sessionmaker
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.service import NotificationService
from notiflow.notifications.unread import (
    MemoryUnreadCountCache,
    RedisUnreadCountCache,
    UnreadCountCache,
)
from notiflow.realtime.broadcast import (
    Broadcaster,
    HubBroadcaster,
    LogBroadcaster,
    NullBroadcaster,
    PusherHttpBroadcaster,
)
from notiflow.realtime.hub import Hub
from notiflow.realtime.notifier import RealtimeNotifier


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    cache: UnreadCountCache
    redis: Redis | None = None
    events: NotificationEvents = field(default_factory=NotificationEvents)
    hub: Hub = field(default_factory=Hub)
    broadcaster: Broadcaster = field(default_factory=NullBroadcaster)

    def notification_service(self, session: AsyncSession) -> NotificationService:
        return NotificationService(
            session,
            cache=self.cache,
            events=self.events,
            push_rollout=parse_push_rollout(self.settings.push_rollout),
        )

    async def close(self) -> None:
        await self.broadcaster.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()


def create_runtime(settings: Settings) -> Runtime:
    engine = create_engine(settings.database_url, echo=settings.database_echo)
    redis: Redis | None = None
    cache: UnreadCountCache
    if settings.redis_url:
        redis = Redis.from_url(settings.redis_url)
        cache = RedisUnreadCountCache(redis, settings.unread_count_cache_ttl_seconds)
    else:
        cache = MemoryUnreadCountCache(settings.unread_count_cache_ttl_seconds)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        cache=cache,
        redis=redis,
        hub=Hub(presence_limit=settings.ws_presence_limit),
    )
    wire_realtime(runtime)
    return runtime


def wire_realtime(runtime: Runtime) -> None:
    """Choose the broadcast driver and let it hear about notifications and unread counts."""
    settings = runtime.settings
    driver = settings.broadcast_driver
    if driver is BroadcastDriver.BUILTIN:
        runtime.broadcaster = HubBroadcaster(runtime.hub)
    elif driver is BroadcastDriver.PUSHER:
        runtime.broadcaster = PusherHttpBroadcaster(
            app_id=settings.pusher_app_id,
            key=settings.pusher_app_key,
            secret=settings.pusher_app_secret,
            base_url=f"{settings.pusher_scheme}://{settings.pusher_host}:{settings.pusher_port}",
        )
    elif driver is BroadcastDriver.LOG:
        runtime.broadcaster = LogBroadcaster()
    else:
        runtime.broadcaster = NullBroadcaster()
    runtime.events.subscribe(RealtimeNotifier(runtime.broadcaster, runtime.sessionmaker))


async def build_hub(settings: Settings) -> tuple[Hub, Callable[[], Awaitable[None]]]:
    """The hub of a standalone realtime node, and how to close it."""
    hub = Hub(presence_limit=settings.ws_presence_limit)

    async def close() -> None:
        return None

    return hub, close
