"""``GET /api/v1/admin/realtime/nodes``: live WebSocket connections and channels per realtime
node, with only the caller's tenant's channels by name (owners and admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from notiflow.auth.deps import TenantAdmin
from notiflow.kit.deps import SessionDep, app_context
from notiflow.notifications.schemas import DataEnvelope
from notiflow.realtime.hub import Hub
from notiflow.realtime.node_stats import tenant_node_stats

router = APIRouter(prefix="/api/v1/admin/realtime", tags=["admin"])


class NodesContext(Protocol):
    """What the route needs from the process: the hub of notiflow's own app."""

    @property
    def hub(self) -> Hub: ...


class TenantChannelData(BaseModel):
    name: str
    subscriptions: int = Field(description="Subscriptions to it on this node")


class NodeData(BaseModel):
    node_id: str = Field(description="`local` for the one process without Redis")
    connections: int
    channels: int = Field(description="Channels with a subscriber on this node (all tenants)")
    subscriptions: int = Field(description="Subscriptions on this node (all tenants)")
    started_at: datetime | None = Field(description="With Redis: when the node joined; else null")
    reported_at: datetime = Field(description="When the counts were taken")
    tenant_channels: list[TenantChannelData] = Field(
        description="The caller's tenant's own channels with a subscriber on this node"
    )


class NodesData(BaseModel):
    nodes: list[NodeData]
    connections: int = Field(description="Open connections, all nodes together")


@router.get(
    "/nodes",
    response_model=DataEnvelope[NodesData],
    summary="Live WebSocket connections and channels per node",
)
async def realtime_nodes(
    auth: TenantAdmin,
    session: SessionDep,
    context: Annotated[NodesContext, Depends(app_context)],
) -> DataEnvelope[NodesData]:
    """Every live process serving WebSocket connections (each `notiflow realtime` node and
    `notiflow serve`'s embedded server): its open connections, how many channels have a
    subscriber there and how many subscriptions it holds, all tenants together (numbers
    only); and by name, only the caller's tenant's own channels there
    (`private-notifications.{userId}` of its members, `private-tenant.{tenantId}` and
    `presence-tenant.{tenantId}`, with their encrypted and cache variants) with their
    subscriptions. Other tenants' channel names are never shown. With Redis the counts are
    each node's last heartbeat (at most 10 s old, ``reported_at``), and a node that stopped
    reporting leaves the list within 30 s; 503 while Redis is unreachable. Owners and admins
    only."""
    nodes = await tenant_node_stats(session, context.hub, auth.tenant_id)
    return DataEnvelope(
        data=NodesData(
            nodes=[
                NodeData(
                    node_id=node.node_id,
                    connections=node.connections,
                    channels=node.channels,
                    subscriptions=node.subscriptions,
                    started_at=node.started_at,
                    reported_at=node.reported_at,
                    tenant_channels=[
                        TenantChannelData(name=name, subscriptions=count)
                        for name, count in node.tenant_channels.items()
                    ],
                )
                for node in nodes
            ],
            connections=sum(node.connections for node in nodes),
        )
    )
