"""The unread-count cache, in process and on a real Redis: no stale count survives a change."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.service import NotificationService
from notiflow.notifications.types import NotificationType
from notiflow.notifications.unread import (
    UNCACHEABLE,
    MemoryUnreadCountCache,
    RedisUnreadCountCache,
    UnreadCountCache,
)
from tests.conftest import MakeMember, commit
from tests.delivery.processes import free_port
from tests.fault_servers import OwnRedis


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, redis: Redis) -> AsyncIterator[UnreadCountCache]:
    if request.param == "memory":
        yield MemoryUnreadCountCache(ttl_seconds=60)
        return
    yield RedisUnreadCountCache(redis, ttl_seconds=60, prefix=f"test-{uuid.uuid4().hex[:8]}")


async def test_store_then_get(cache: UnreadCountCache) -> None:
    user, tenant = uuid.uuid4(), uuid.uuid4()
    count, generation = await cache.get(user, tenant)
    assert count is None
    await cache.store(user, tenant, generation, 7)
    assert (await cache.get(user, tenant))[0] == 7
    assert (await cache.get(user, uuid.uuid4()))[0] is None, "scoped per tenant"


async def test_invalidate_drops_the_entry(cache: UnreadCountCache) -> None:
    user, tenant = uuid.uuid4(), uuid.uuid4()
    _, generation = await cache.get(user, tenant)
    await cache.store(user, tenant, generation, 3)
    await cache.invalidate([(user, tenant)])
    assert (await cache.get(user, tenant))[0] is None


async def test_a_slow_reader_cannot_store_a_stale_count(cache: UnreadCountCache) -> None:
    user, tenant = uuid.uuid4(), uuid.uuid4()
    _, generation_seen_by_reader = await cache.get(user, tenant)
    # ... the reader counts in the database; meanwhile a writer commits and invalidates ...
    await cache.invalidate([(user, tenant)])
    await cache.store(user, tenant, generation_seen_by_reader, 5)  # the stale count
    assert (await cache.get(user, tenant))[0] is None


async def test_invalidating_many_users_at_once(cache: UnreadCountCache) -> None:
    tenant = uuid.uuid4()
    users = [uuid.uuid4() for _ in range(500)]
    for user in users:
        _, generation = await cache.get(user, tenant)
        await cache.store(user, tenant, generation, 1)
    await cache.invalidate([(user, tenant) for user in users])
    assert all([(await cache.get(user, tenant))[0] is None for user in users])


async def test_service_counts_through_redis(
    runtime, session: AsyncSession, redis: Redis, make_member: MakeMember
) -> None:
    member = await make_member()
    service = NotificationService(
        session, cache=RedisUnreadCountCache(redis), events=runtime.events
    )
    payload = NotificationPayload(NotificationType.NEW_COMMENT, "New comment", "Nice post!")
    await service.send(member.user, payload)
    await commit(session)
    assert await service.get_unread_count(member.id, member.tenant_id) == 1
    assert await redis.get(f"notiflow:unread:{member.id}:{member.tenant_id}") is not None

    await service.send(member.user, payload)
    await commit(session)
    assert await service.get_unread_count(member.id, member.tenant_id) == 2
    await service.mark_all_as_read(member.id, member.tenant_id)
    await commit(session)
    assert await service.get_unread_count(member.id, member.tenant_id) == 0


@pytest.mark.slow  # starts its own redis-server
async def test_unread_cache_retires_counts_whose_invalidation_an_outage_lost() -> None:
    """A process that could not reach Redis to invalidate a count (a partition: Redis kept its
    data) neither fails nor leaves the stale count to be served once Redis is reachable."""
    with OwnRedis() as redis:
        elsewhere = Redis.from_url(redis.url)  # a process that kept its connection
        unreachable_port = free_port()
        cut_off = Redis.from_url(f"redis://127.0.0.1:{unreachable_port}/0")
        prefix = "partition"
        reader = RedisUnreadCountCache(elsewhere, prefix=prefix)
        writer = RedisUnreadCountCache(cut_off, prefix=prefix)
        user, tenant = uuid.uuid4(), uuid.uuid4()
        try:
            _, generation = await reader.get(user, tenant)
            await reader.store(user, tenant, generation, 3)
            # The writer's change commits; its invalidation cannot reach Redis.
            await writer.invalidate([(user, tenant)])
            assert await writer.get(user, tenant) == (None, UNCACHEABLE)
            # Redis becomes reachable for the writer, data intact.
            await elsewhere.config_set("port", unreachable_port)
            await asyncio.sleep(writer.RETRY_SECONDS + 0.2)
            assert (await writer.get(user, tenant))[0] is None, "the stale count was served"
            assert (await reader.get(user, tenant))[0] is None, "the stale count was served"
            _, generation = await reader.get(user, tenant)
            await reader.store(user, tenant, generation, 2)
            assert (await writer.get(user, tenant))[0] == 2, "the cache works again"
        finally:
            await elsewhere.aclose()
            await cut_off.aclose()
            # The server listens on the new port now; stop() kills it by pid either way.
