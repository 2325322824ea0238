"""No missed notification across a disconnect: real processes, real clients, real PostgreSQL.

Two ``notiflow realtime`` nodes over a Redis of the test's own, the API (``notiflow api``) and a
PostgreSQL database of the test's own. The browser is the npm pusher-js (or Laravel Echo on it)
using the shipped helper ``clients/js/notiflow-replay.js``; it reaches the nodes through a small
TCP proxy the test controls, so its connection can really be dropped (or its node killed) and
its reconnect held until the notifications it must miss have been sent.
"""

# ruff: noqa: ASYNC109 - the waits take generous timeouts, as the other process tests do

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import POSTGRES_URL
from tests.delivery.processes import NotiflowProcess, free_port, scale_out_env
from tests.fault_servers import OwnRedis
from tests.realtime.node import NodeClient

APP = ("6161", "replay-node-key", "replay-node-secret-0123456789")


class TcpProxy:
    """Forwards each accepted connection to ``upstream`` (a port on 127.0.0.1). ``cut()`` drops
    every open connection (both sides aborted: the client sees its socket die); while ``hold()``
    is on, new connections wait before they are forwarded."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = 0
        self._open = asyncio.Event()
        self._open.set()
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def cut(self) -> None:
        for client, server in list(self._pairs):
            client.transport.abort()
            server.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.release()
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._open.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                writer.transport.abort()
                return
            pair = (writer, up_writer)
            self._pairs.add(pair)
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
            self._pairs.discard(pair)
            writer.transport.abort()
            up_writer.transport.abort()
        finally:
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65_536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.transport.abort()


@dataclass
class Deployment:
    api: NotiflowProcess
    nodes: list[NotiflowProcess]
    node_ports: list[int]
    api_port: int
    proxy: TcpProxy

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def logs(self) -> str:
        return "\n".join(process.logs() for process in (self.api, *self.nodes))

    def new_user(self, email: str) -> dict[str, str]:
        created = self.api.run(
            "users", "create", "--tenant", "acme", "--email", email, "--role", "owner",
            "--with-token",
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        user: dict[str, str] = json.loads(created.stdout)
        return user

    async def send(self, user: dict[str, str], count: int) -> list[str]:
        """``count`` notifications to ``user``, one request each, through the real API."""
        ids = []
        async with httpx.AsyncClient(base_url=self.api_url, timeout=30) as client:
            for number in range(count):
                response = await client.post(
                    "/api/v1/notifications/send",
                    headers={"Authorization": f"Bearer {user['token']}"},
                    json={
                        "user_ids": [user["user_id"]],
                        "type": "new_comment",
                        "title": f"Comment {number}",
                        "message": "Nice post!",
                    },
                )
                assert response.status_code == 202, response.text
                ids.append(response.json()["data"]["notifications"][0]["id"])
        return ids

    def browser(self, user: dict[str, str], mode: str = "pusher", helper: bool = True) -> Any:
        channel = f"private-notifications.{user['user_id']}"
        entry: dict[str, Any] = {"kind": "private", "name": channel}
        if mode == "echo":
            entry["listen"] = [".NotificationCreated", ".UnreadCountChanged", ".ResyncRequired"]
        config: dict[str, Any] = {
            "wsHost": "127.0.0.1",
            "wsPort": self.proxy.port,
            "key": APP[1],
            "authEndpoint": f"{self.api_url}/broadcasting/auth",
            "token": user["token"],
            "mode": mode,
            "subscribe": [entry],
        }
        if helper:
            config["replay"] = {"userId": user["user_id"]}
        return config


async def _create_database() -> str:
    base, _, _ = POSTGRES_URL.rpartition("/")
    name = f"notiflow_replay_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{base.replace('postgresql+asyncpg', 'postgresql')}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{base}/{name}"


async def _drop_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(f"{base.replace('postgresql+asyncpg', 'postgresql')}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    settings: dict[str, str] = getattr(request, "param", {})
    database_url = await _create_database()
    redis_server = OwnRedis().start()
    api_port, ws_a, ws_b, http_a, http_b = (free_port() for _ in range(5))
    env = scale_out_env(
        tmp_path, redis_server.url, api_port, APP, database_url=database_url, **settings
    )
    api = NotiflowProcess(
        ["api", "--port", str(api_port)], env, ready_url=f"http://127.0.0.1:{api_port}/health"
    )
    nodes = [
        NotiflowProcess(
            ["realtime", "--port", str(ws), "--http-port", str(http)],
            env,
            ready_url=f"http://127.0.0.1:{http}/health",
        )
        for ws, http in ((ws_a, http_a), (ws_b, http_b))
    ]
    proxy = await TcpProxy(ws_a).start()
    started = Deployment(api, nodes, [ws_a, ws_b], api_port, proxy)
    try:
        await api.start()  # migrates the database
        for node in nodes:
            await node.start()
        yield started
    finally:
        await proxy.close()
        for process in (*nodes, api):
            process.stop()
        redis_server.stop()
        await _drop_database(database_url)


def created(client: NodeClient) -> list[dict[str, Any]]:
    return [m for m in client.messages if m.get("event") == "NotificationCreated"]


def of_event(client: NodeClient, name: str) -> list[dict[str, Any]]:
    return [m for m in client.messages if m.get("type") == "event" and m.get("event") == name]


async def until(client: NodeClient, check: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s\n{client.transcript()}")
        await asyncio.sleep(0.05)


async def subscribed_with_snapshot(client: NodeClient, channel: str, times: int = 1) -> None:
    """Wait for the ``times``-th subscription and the snapshot that follows it."""
    await until(
        client,
        lambda: (
            sum(m.get("type") == "subscribed" and m["channel"] == channel for m in client.messages)
            >= times
            and len([m for m in of_event(client, "UnreadCountChanged") if "sequence" in m["data"]])
            >= times
        ),
    )


async def drop_and_miss(
    deployment: Deployment, client: NodeClient, user: dict[str, str], count: int, kill: bool
) -> list[str]:
    """Drop the client's connection (or kill its node, A) and send ``count`` notifications
    before it may reconnect (to B when A was killed); then let it reconnect."""

    def drops() -> int:
        return sum(
            m.get("type") == "state" and m["previous"] == "connected" for m in client.messages
        )

    before = drops()
    proxy = deployment.proxy
    proxy.hold()
    if kill:
        deployment.nodes[0].kill()
        proxy.upstream = deployment.node_ports[1]
    proxy.cut()
    await until(client, lambda: drops() > before)
    ids = await deployment.send(user, count)
    proxy.release()
    return ids


async def assert_healed(
    client: NodeClient, channel: str, expected_ids: list[str], unread: int
) -> None:
    """After its second subscription the client has exactly ``expected_ids`` (in order, each
    once, sequences 1..n) and the badge says ``unread``."""
    await subscribed_with_snapshot(client, channel, times=2)
    await until(client, lambda: len(created(client)) >= len(expected_ids))
    await asyncio.sleep(1.0)  # room for a duplicate to show up
    events = created(client)
    assert [event["data"]["id"] for event in events] == expected_ids, client.transcript()
    assert [event["data"]["sequence"] for event in events] == list(range(1, len(expected_ids) + 1))
    assert of_event(client, "ResyncRequired") == []
    assert of_event(client, "UnreadCountChanged")[-1]["data"]["count"] == unread


@pytest.mark.parametrize("mode", ["pusher", "echo"])
@pytest.mark.parametrize("kill", [False, True], ids=["dropped", "node-killed"])
async def test_a_client_gets_what_it_missed_exactly_once_in_order(
    deployment: Deployment, mode: str, kill: bool
) -> None:
    user = deployment.new_user(f"ada-{mode}-{kill}@example.com")
    channel = f"private-notifications.{user['user_id']}"
    missed = 5
    async with NodeClient(deployment.browser(user, mode), name=mode) as client:
        try:
            await client.connected(timeout=15)
            await subscribed_with_snapshot(client, channel)
            live = await deployment.send(user, 1)
            await until(client, lambda: len(created(client)) == 1)

            replayed = await drop_and_miss(deployment, client, user, missed, kill)

            await assert_healed(client, channel, live + replayed, unread=1 + missed)
            # and live events go on after the replay
            later = await deployment.send(user, 1)
            await until(client, lambda: len(created(client)) == 2 + missed)
            assert created(client)[-1]["data"]["id"] == later[0]
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{deployment.logs()}") from None


@pytest.mark.parametrize(
    "deployment", [{"ws_replay_max_events": "3"}], indirect=True, ids=["window-3"]
)
async def test_past_the_window_the_client_gets_one_resync_required(
    deployment: Deployment,
) -> None:
    user = deployment.new_user("grace@example.com")
    channel = f"private-notifications.{user['user_id']}"
    async with NodeClient(deployment.browser(user), name="pusher") as client:
        try:
            await client.connected(timeout=15)
            await subscribed_with_snapshot(client, channel)
            await drop_and_miss(deployment, client, user, 4, kill=False)
            await subscribed_with_snapshot(client, channel, times=2)
            await until(client, lambda: len(of_event(client, "ResyncRequired")) == 1)
            await asyncio.sleep(1.0)
            (resync,) = of_event(client, "ResyncRequired")
            assert resync["data"] == {"sequence": 4, "reason": "window"}
            assert created(client) == [], "nothing replayed past the window"
            assert of_event(client, "UnreadCountChanged")[-1]["data"]["count"] == 4

            # the helper took the sequence the server gave: the next drop replays again
            replayed = await drop_and_miss(deployment, client, user, 2, kill=False)
            await subscribed_with_snapshot(client, channel, times=3)
            await until(client, lambda: len(created(client)) == 2)
            await asyncio.sleep(1.0)
            assert [event["data"]["id"] for event in created(client)] == replayed
            assert len(of_event(client, "ResyncRequired")) == 1
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{deployment.logs()}") from None


async def test_without_the_helper_every_subscribe_brings_the_unread_count(
    deployment: Deployment,
) -> None:
    user = deployment.new_user("linus@example.com")
    channel = f"private-notifications.{user['user_id']}"
    async with NodeClient(deployment.browser(user, "echo", helper=False), name="echo") as client:
        try:
            await client.connected(timeout=15)
            await subscribed_with_snapshot(client, channel)
            assert of_event(client, "UnreadCountChanged")[0]["data"] == {
                "count": 0,
                "tenant_id": user["tenant_id"],
                "sequence": 0,
            }
            await drop_and_miss(deployment, client, user, 3, kill=True)
            await subscribed_with_snapshot(client, channel, times=2)
            with contextlib.suppress(AssertionError):
                await until(client, lambda: bool(created(client)), timeout=1.0)
            assert created(client) == [], "no replay without a last sequence"
            assert of_event(client, "ResyncRequired") == []
            snapshot = of_event(client, "UnreadCountChanged")[-1]["data"]
            assert snapshot == {"count": 3, "tenant_id": user["tenant_id"], "sequence": 3}
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{deployment.logs()}") from None
