"""GET /api/v1/admin/realtime/nodes: live connections and channels per node, with only the
caller's tenant's channels by name, from the embedded server and from nodes over Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from notiflow.main.runtime import Runtime
from notiflow.models.tenancy import Role
from notiflow.realtime.hub import Hub
from notiflow.realtime.node_stats import report_connections
from notiflow.realtime.protocol import ProtocolConfig
from notiflow.realtime.redis import Cluster, RedisBackplane, RedisPresence, close_redis_hub
from notiflow.realtime.server import RealtimeServer
from notiflow.realtime.signing import channel_auth
from tests.conftest import REDIS_URL, TEST_PUSHER_KEY, TEST_PUSHER_SECRET, MakeMember
from tests.delivery.processes import NotiflowProcess, eventually, free_port, scale_out_env
from tests.realtime.conftest import LiveStack
from tests.realtime.wsclient import WsClient

NODES = "/api/v1/admin/realtime/nodes"


async def _subscribed(port: int, *channels: str) -> WsClient:
    client = await WsClient.open(port, TEST_PUSHER_KEY)
    for channel in channels:
        auth = None
        if channel.startswith(("private-", "presence-")):
            auth = channel_auth(TEST_PUSHER_KEY, TEST_PUSHER_SECRET, client.socket_id, channel)
        client.subscribe(channel, auth)
        await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)
    return client


async def test_the_embedded_server_reports_its_connections_and_the_tenants_channels(
    live: LiveStack, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    alice = await make_member("acme")
    outsider = await make_member("globex", role=Role.OWNER)
    report_connections(live.runtime.hub, lambda: live.realtime.connection_count)
    clients = [
        await _subscribed(
            live.ws_port, f"private-notifications.{alice.id}", f"private-tenant.{admin.tenant_id}"
        ),
        await _subscribed(
            live.ws_port,
            f"private-notifications.{outsider.id}",
            f"private-tenant.{outsider.tenant_id}",
            "orders",
        ),
    ]
    try:
        async with httpx.AsyncClient(base_url=live.api_url) as http:
            response = await http.get(NODES, headers=admin.headers)
            assert response.status_code == 200, response.text
            data = response.json()["data"]
            [node] = data["nodes"]
            assert node["node_id"] == "local"
            assert (node["connections"], data["connections"]) == (2, 2)
            assert (node["channels"], node["subscriptions"]) == (5, 5)
            assert node["tenant_channels"] == [
                {"name": f"private-notifications.{alice.id}", "subscriptions": 1},
                {"name": f"private-tenant.{admin.tenant_id}", "subscriptions": 1},
            ]
            theirs = (await http.get(NODES, headers=outsider.headers)).json()["data"]
            assert [c["name"] for c in theirs["nodes"][0]["tenant_channels"]] == [
                f"private-notifications.{outsider.id}",
                f"private-tenant.{outsider.tenant_id}",
            ]
            forbidden = await http.get(NODES, headers=alice.headers)
            assert forbidden.status_code == 403
            assert forbidden.json()["error"]["code"] == "forbidden"
    finally:
        for client in clients:
            await client.close()


class Node:
    def __init__(self, hub: Hub, cluster: Cluster, server: RealtimeServer | None) -> None:
        self.hub, self.cluster, self.server = hub, cluster, server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await close_redis_hub(self.hub, self.cluster)


async def _node(redis: Redis, name: str, *, websocket: bool) -> Node:
    """A hub joined to the cluster with a quick heartbeat, and a WebSocket server if asked."""
    cluster = Cluster(redis, name, heartbeat=0.05, ttl=5.0)
    backplane = RedisBackplane(redis, cluster)
    hub = Hub(presence=RedisPresence(redis, cluster))
    backplane.attach(hub)
    server = None
    if websocket:
        server = RealtimeServer(ProtocolConfig(TEST_PUSHER_KEY, TEST_PUSHER_SECRET), hub)
        await server.start("127.0.0.1", 0)
        report_connections(hub, lambda: server.connection_count)
    await cluster.start()
    await backplane.start()
    return Node(hub, cluster, server)


@pytest.fixture
async def cluster_nodes(redis: Redis, runtime: Runtime) -> AsyncIterator[list[Node]]:
    """Two realtime nodes and the API's own hub (joined, serving no WebSocket)."""
    nodes = [
        await _node(redis, "node-a", websocket=True),
        await _node(redis, "node-b", websocket=True),
        await _node(redis, "api-process", websocket=False),
    ]
    runtime.hub = nodes[2].hub
    yield nodes
    for node in nodes:
        await node.stop()


async def _nodes_when(
    client: httpx.AsyncClient, headers: dict[str, str], done: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for _ in range(500):
        response = await client.get(NODES, headers=headers)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        if done(data):
            return data
        await asyncio.sleep(0.02)
    raise AssertionError(f"the nodes never reported as expected: {data}")


async def test_every_live_node_reports_over_redis_and_a_stopped_one_leaves(
    client: httpx.AsyncClient, cluster_nodes: list[Node], make_member: MakeMember
) -> None:
    a, b, _ = cluster_nodes
    assert a.server is not None
    assert b.server is not None
    admin = await make_member("acme", role=Role.OWNER)
    outsider = await make_member("globex", role=Role.OWNER)
    on_a = [
        await _subscribed(a.server.port, f"private-notifications.{admin.id}"),
        await _subscribed(a.server.port, "news"),
    ]
    on_b = [await _subscribed(b.server.port, f"private-notifications.{outsider.id}")]

    def counted(data: dict[str, Any]) -> bool:
        by_node = {node["node_id"]: node for node in data["nodes"]}
        return (
            set(by_node) == {"node-a", "node-b"}
            and by_node["node-a"]["connections"] == 2
            and by_node["node-b"]["connections"] == 1
        )

    try:
        data = await _nodes_when(client, admin.headers, counted)
        by_node = {node["node_id"]: node for node in data["nodes"]}
        assert data["connections"] == 3
        assert by_node["node-a"]["tenant_channels"] == [
            {"name": f"private-notifications.{admin.id}", "subscriptions": 1}
        ]
        assert by_node["node-a"]["subscriptions"] == 2  # the public "news" too, unnamed
        assert by_node["node-b"]["channels"] == 1
        assert by_node["node-b"]["tenant_channels"] == [], "globex's channel is not named"
        assert by_node["node-a"]["started_at"] is not None

        await b.stop()
        b.server = None
        await _nodes_when(
            client, admin.headers, lambda d: [n["node_id"] for n in d["nodes"]] == ["node-a"]
        )
    finally:
        for ws in on_a + on_b:
            await ws.close()


@pytest.mark.slow  # two notiflow processes, and a heartbeat (10 s) to wait for
async def test_served_and_realtime_processes_report_their_connections(
    redis: Redis, tmp_path: Path
) -> None:
    """``notiflow serve`` (API and WebSockets) and a ``notiflow realtime`` node over Redis: a
    client on each shows as one connection on each node, and a node that stops leaves."""
    app = ("4848", "nodes-key", "nodes-secret-0123456789abcdef")
    api_port, ws_a, ws_b, http_b = free_port(), free_port(), free_port(), free_port()
    env = scale_out_env(tmp_path, REDIS_URL, api_port, app)
    processes: list[NotiflowProcess] = []
    clients: list[WsClient] = []
    try:
        serve = await NotiflowProcess(
            ["serve", "--port", str(api_port), "--ws-port", str(ws_a)],
            env,
            ready_url=f"http://127.0.0.1:{api_port}/health",
        ).start()
        processes.append(serve)
        node = await NotiflowProcess(
            ["realtime", "--port", str(ws_b), "--http-port", str(http_b)],
            env,
            ready_url=f"http://127.0.0.1:{http_b}/health",
        ).start()
        processes.append(node)
        created = serve.run(
            "users", "create", "--tenant", "Acme", "--email", "owner@example.com",
            "--name", "Olivia", "--role", "owner", "--with-token",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        headers = {"Authorization": f"Bearer {json.loads(created.stdout)['token']}"}
        clients = [await WsClient.open(ws_a, app[1]), await WsClient.open(ws_b, app[1])]

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}") as http:

            async def nodes() -> list[dict[str, Any]]:
                response = await http.get(NODES, headers=headers)
                assert response.status_code == 200, response.text
                found: list[dict[str, Any]] = response.json()["data"]["nodes"]
                return found

            async def one_connection_on_each() -> list[dict[str, Any]] | None:
                found = await nodes()
                counts = sorted(node["connections"] for node in found)
                return found if counts == [1, 1] else None

            # Each node reports with its heartbeat (every 10 s).
            await eventually(one_connection_on_each, timeout=60)
            node.stop()
            await eventually(lambda: _has_nodes(nodes, 1), timeout=60)
    finally:
        for client in clients:
            await client.close()
        for process in processes:
            process.stop()


async def _has_nodes(nodes: Any, count: int) -> bool:
    return len(await nodes()) == count
