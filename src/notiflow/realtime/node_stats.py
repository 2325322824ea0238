"""Live WebSocket connections and channels per realtime node, as a tenant's admins see them.

Each process that serves WebSocket connections reports its count
(:func:`report_connections`): with Redis, its cluster heartbeat writes it next to the node's
channel counts (``notiflow.realtime.redis``), so any API process reads every live node; without
Redis, the one process serves both the API and the WebSocket server and its hub answers.

A tenant's admins see each node's totals (connections, channels, subscriptions: numbers, no
names) and, by name, only the channels that are their tenant's own
(:func:`notiflow.realtime.authorization.belongs_to_tenant`): their members'
``private-notifications.{userId}`` and the tenant's ``private-tenant.`` / ``presence-tenant.``
channels. Another tenant's channel names are never shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import ServiceUnavailable
from notiflow.kit.ids import utcnow
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Membership
from notiflow.realtime.authorization import belongs_to_tenant
from notiflow.realtime.hub import BACKPLANE_RETRY_AFTER, Hub
from notiflow.realtime.redis import PREFIX, UNREACHABLE, RedisBackplane

LOCAL_NODE = "local"


def report_connections(hub: Hub, connections: Callable[[], int]) -> None:
    """This process serves WebSocket connections: say how many (with Redis, in the node's
    heartbeat from now on)."""
    hub.connections = connections
    if isinstance(hub.backplane, RedisBackplane):
        hub.backplane.cluster.connections = connections


@dataclass(frozen=True, slots=True)
class NodeStats:
    node_id: str
    connections: int
    channels: int  # channels with a subscriber on this node
    subscriptions: int  # subscriptions on this node, over all channels
    started_at: datetime | None
    reported_at: datetime  # when the counts were taken (a heartbeat's age at most)
    # channel -> this node's subscriptions, of the tenant's own channels only
    tenant_channels: dict[str, int]


def _moment(value: bytes | str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(float(value), UTC)


async def _member_ids(session: AsyncSession, tenant_id: uuid.UUID) -> frozenset[uuid.UUID]:
    return frozenset(
        (
            await session.scalars(
                select(Membership.user_id).where(in_tenant(Membership, tenant_id))
            )
        ).all()
    )


async def _nodes(hub: Hub) -> list[tuple[str, dict[str, bytes], dict[str, int]]]:
    """``(node id, its stats hash, its channel counts)`` of every live node serving
    WebSocket connections."""
    backplane = hub.backplane
    if not isinstance(backplane, RedisBackplane):
        if hub.connections is None:
            return []
        stats = {"connections": str(hub.connections()).encode()}
        counts = {name: len(subscribers) for name, subscribers in hub.channels.items()}
        return [(LOCAL_NODE, stats, counts)]
    if not backplane.connected:
        raise _unreachable()
    redis, cluster = backplane.redis, backplane.cluster
    try:
        live = sorted(await cluster.live_nodes())
        async with redis.pipeline(transaction=False) as pipe:
            for node in live:
                pipe.hgetall(f"{PREFIX}:stats:{node}")
                # notiflow's own app's channels (the app this hub serves); other apps' channels
                # are never a tenant's.
                pipe.hgetall(f"{backplane.prefix}:counts:{node}")
            found = await pipe.execute()
    except UNREACHABLE as error:
        raise _unreachable() from error
    nodes: list[tuple[str, dict[str, bytes], dict[str, int]]] = []
    for index, node in enumerate(live):
        stats = {_text(key): value for key, value in found[2 * index].items()}
        if not stats:  # a process without a WebSocket server (an API), or not reported yet
            continue
        counts = {_text(key): int(value) for key, value in found[2 * index + 1].items()}
        nodes.append((node, stats, {name: n for name, n in counts.items() if n > 0}))
    return nodes


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _unreachable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the real-time backplane (Redis) is unreachable; try again shortly",
        code="realtime_unavailable",
        retry_after=BACKPLANE_RETRY_AFTER,
    )


async def tenant_node_stats(
    session: AsyncSession, hub: Hub, tenant_id: uuid.UUID
) -> list[NodeStats]:
    """Every live node's totals, with the tenant's own channels by name."""
    nodes = await _nodes(hub)
    members = await _member_ids(session, tenant_id) if nodes else frozenset()
    now = utcnow()
    return [
        NodeStats(
            node_id=node,
            connections=int(stats.get("connections", b"0")),
            channels=len(counts),
            subscriptions=sum(counts.values()),
            started_at=_moment(stats.get("started_at")),
            reported_at=_moment(stats.get("reported_at")) or now,
            tenant_channels={
                name: count
                for name, count in sorted(counts.items())
                if belongs_to_tenant(name, tenant_id, members)
            },
        )
        for node, stats, counts in nodes
    ]
