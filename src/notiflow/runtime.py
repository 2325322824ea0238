"""The long-lived objects one process shares: engine, Redis, the unread cache, event listeners."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from notiflow.config import Settings, parse_push_rollout
from notiflow.kit.db import create_engine, create_sessionmaker
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.service import NotificationService
from notiflow.notifications.unread import (
    MemoryUnreadCountCache,
    RedisUnreadCountCache,
    UnreadCountCache,
)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    cache: UnreadCountCache
    redis: Redis | None = None
    events: NotificationEvents = field(default_factory=NotificationEvents)

    def notification_service(self, session: AsyncSession) -> NotificationService:
        return NotificationService(
            session,
            cache=self.cache,
            events=self.events,
            push_rollout=parse_push_rollout(self.settings.push_rollout),
        )

    async def close(self) -> None:
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
    return Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        cache=cache,
        redis=redis,
    )
