"""The Redis backplane under faults: real `notiflow realtime` nodes and `notiflow api` over a
redis-server of the test's own, stopped and started again empty, and a connection storm."""

# ruff: noqa: ASYNC109 - small polling helpers with a timeout argument

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from notiflow.realtime.signing import body_md5, channel_auth, request_signature
from tests.delivery.processes import (
    NOTIFLOW,
    eventually,
    free_port,
    scale_out_env,
)
from tests.fault_servers import OwnRedis
from tests.realtime.wsclient import WsClient

# Compares latencies or CPU time with a baseline of its own: runs alone (scripts/run-tests.sh).
pytestmark = pytest.mark.serial

APP_ID, KEY, SECRET = "1", "fault-key", "fault-secret-0123456789abcdef"
# The bound: every client hears events again within 5 s of Redis's return.
RECOVERY_BOUND = 5.0


class Process:
    """``notiflow <args>`` with its stderr in a file (a pipe nobody reads would fill up and
    block a process that logs a lot, which is exactly the failure to catch)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        with log.open("wb") as stderr:
            self.process = subprocess.Popen(  # noqa: S603 - our own console script
                [NOTIFLOW, *args], env=env, stdout=subprocess.DEVNULL, stderr=stderr
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and the exit code (killed after ``timeout``: a hang is a failure too)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return -9
        return self.process.returncode


async def wait_http(url: str, timeout: float = 60.0) -> None:
    async def answers() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url)).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    await eventually(answers, timeout=timeout)


async def health(url: str) -> int:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{url}/health")).status_code
    except httpx.HTTPError:
        return 0


def signed(method: str, path: str, body: bytes = b"") -> dict[str, str]:
    params = {
        "auth_key": KEY,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
    }
    if body:
        params["body_md5"] = body_md5(body)
    params["auth_signature"] = request_signature(SECRET, method, path, params)
    return params


async def trigger(api: str, channel: str, event: str, data: dict[str, Any]) -> int:
    path = f"/apps/{APP_ID}/events"
    body = json.dumps({"name": event, "channel": channel, "data": json.dumps(data)}).encode()
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{api}{path}",
            params=signed("POST", path, body),
            content=body,
            headers={"Content-Type": "application/json"},
        )
    return response.status_code


async def channel_users(api: str, channel: str) -> set[str] | None:
    path = f"/apps/{APP_ID}/channels/{channel}/users"
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{api}{path}", params=signed("GET", path))
    if response.status_code != 200:
        return None
    return {user["id"] for user in response.json()["users"]}


async def subscribe_private(port: int, channel: str) -> WsClient:
    client = await WsClient.open(port, KEY)
    client.subscribe(channel, channel_auth(KEY, SECRET, client.socket_id, channel))
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel, timeout=10)
    return client


async def join_presence(port: int, channel: str, user_id: str) -> tuple[WsClient, set[str]]:
    """A member's connection, and the members its subscription_succeeded listed."""
    client = await WsClient.open(port, KEY)
    data = json.dumps({"user_id": user_id, "user_info": {"name": user_id.title()}})
    client.subscribe(channel, channel_auth(KEY, SECRET, client.socket_id, channel, data), data)
    succeeded = await client.wait_for(
        "pusher_internal:subscription_succeeded", channel=channel, timeout=10
    )
    return client, set(json.loads(succeeded["data"])["presence"]["hash"])


def seen(client: WsClient, event: str, mark: int) -> bool:
    """Whether ``client`` got ``event`` carrying a mark of at least ``mark``."""
    for message in client.messages:
        if message.get("event") == event:
            data = message["data"]
            data = json.loads(data) if isinstance(data, str) else data
            if int(data.get("mark", -1)) >= mark:
                return True
    return False


@pytest.fixture
def redis_server() -> Iterator[OwnRedis]:
    with OwnRedis() as server:
        yield server


@pytest.fixture
async def cluster(
    redis_server: OwnRedis, tmp_path: Path
) -> AsyncIterator[tuple[str, list[tuple[int, str]], list[Process]]]:
    """An api and two realtime nodes: (api url, [(ws port, health url)], processes)."""
    api_port = free_port()
    env = scale_out_env(tmp_path, redis_server.url, api_port, (APP_ID, KEY, SECRET))
    processes = [Process(["api", "--port", str(api_port)], env, tmp_path / "api.log")]
    nodes: list[tuple[int, str]] = []
    for name in ("a", "b"):
        ws_port, http_port = free_port(), free_port()
        args = ["realtime", "--port", str(ws_port), "--http-port", str(http_port)]
        processes.append(Process(args, env, tmp_path / f"realtime-{name}.log"))
        nodes.append((ws_port, f"http://127.0.0.1:{http_port}"))
    api = f"http://127.0.0.1:{api_port}"
    try:
        for url in (api, *(health_url for _, health_url in nodes)):
            await wait_http(f"{url}/health")
        yield api, nodes, processes
    finally:
        for process in processes:
            process.terminate()


async def test_every_node_hears_again_after_redis_comes_back_empty(
    cluster: tuple[str, list[tuple[int, str]], list[Process]], redis_server: OwnRedis
) -> None:
    api, ((port_a, url_a), (port_b, url_b)), processes = cluster
    on_a = await subscribe_private(port_a, "private-orders")
    on_b = await subscribe_private(port_b, "private-orders")
    ada, _ = await join_presence(port_a, "presence-team", "ada")
    bob, members = await join_presence(port_b, "presence-team", "bob")
    assert members == {"ada", "bob"}
    clients = [on_a, on_b]
    mark = 0

    async def everyone_hears() -> bool:
        """Publish through the API and through each node (a client event); True once every
        client got an event of this round from each path."""
        nonlocal mark
        mark += 1
        await trigger(api, "private-orders", "OrderShipped", {"mark": mark})
        on_a.send({"event": "client-ping", "channel": "private-orders", "data": {"mark": mark}})
        on_b.send({"event": "client-pong", "channel": "private-orders", "data": {"mark": mark}})
        await asyncio.sleep(0.2)
        return (
            all(seen(client, "OrderShipped", mark) for client in clients)
            and seen(on_b, "client-ping", mark)
            and seen(on_a, "client-pong", mark)
        )

    await eventually(everyone_hears, timeout=10)

    late: list[WsClient] = []
    for outage in (1.0, 15.0):
        redis_server.stop()
        started = time.monotonic()
        # The nodes notice and say so; each keeps serving its own clients meanwhile.
        for url in (api, url_a, url_b):
            await eventually(lambda url=url: _equals(health(url), 503), timeout=outage + 10)
        if outage > 5:
            on_a_too = await subscribe_private(port_a, "private-orders")  # a join still works
            on_a.send({"event": "client-local", "channel": "private-orders", "data": {"mark": 0}})
            await on_a_too.wait_for("client-local", timeout=5)
            late.append(await subscribe_private(port_b, "private-orders"))
            carol, members = await join_presence(port_b, "presence-team", "carol")
            assert {"bob", "carol"} <= members  # this node's own members, at least
            late.append(carol)
            clients.extend([on_a_too, late[0]])
        await asyncio.sleep(max(0.0, outage - (time.monotonic() - started)))
        redis_server.start()  # empty: nothing was kept
        returned = time.monotonic()

        await eventually(everyone_hears, timeout=RECOVERY_BOUND)
        recovered = time.monotonic() - returned
        assert recovered <= RECOVERY_BOUND, f"events flowed again {recovered:.1f}s after Redis"
        expected = {"ada", "bob"} | ({"carol"} if late else set())
        assert await eventually(
            lambda expected=expected: _equals(channel_users(api, "presence-team"), expected),
            timeout=5,
        )
        for port in (port_a, port_b):
            newcomer, members = await join_presence(port, "presence-team", f"new{port}")
            assert members >= expected, f"presence not rebuilt on the node at {port}"
            await newcomer.close()
        for url in (api, url_a, url_b):
            assert await health(url) == 200

    assert all(process.alive() for process in processes), "no process was restarted"
    for process in processes[1:]:
        output = process.output
        assert output.count("realtime_redis_unreachable") == 2, output[-3000:]
        assert output.count("realtime_redis_restored") == 2, output[-3000:]
        assert "realtime_task_failed" not in output
        assert "Traceback" not in output, output[-3000:]
    for client in [*clients, ada, bob, *late]:
        await client.close()
    for process in processes[1:]:
        assert process.terminate() == 0, process.output[-3000:]


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


class _StormListener(WSListener):
    """Counts what one storm client needs: its socket id, then its subscription's answer."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.established: asyncio.Future[str] = loop.create_future()
        self.answer: asyncio.Future[str] = loop.create_future()

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        message = json.loads(frame.get_payload_as_bytes())
        event = message.get("event")
        if event == "pusher:connection_established" and not self.established.done():
            self.established.set_result(json.loads(message["data"])["socket_id"])
        elif not self.answer.done() and event in (
            "pusher_internal:subscription_succeeded",
            "pusher:subscription_error",
            "pusher:error",
        ):
            self.answer.set_result(event)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for future in (self.established, self.answer):
            if not future.done():
                future.set_result("disconnected")


async def storm(port: int, clients: int, window: int) -> tuple[list[str], list[WSTransport]]:
    """``clients`` connections, ``window`` handshakes in flight at once; each subscribes to a
    channel of its own as soon as it is established, without waiting for the answer."""
    handshakes = asyncio.Semaphore(window)
    transports: list[WSTransport] = []
    listeners: list[_StormListener] = []

    async def one(index: int) -> None:
        async with handshakes:
            transport, listener = await ws_connect(
                _StormListener, f"ws://127.0.0.1:{port}/app/{KEY}?protocol=7"
            )
            assert isinstance(listener, _StormListener)
            transports.append(transport)
            listeners.append(listener)
            socket_id = await asyncio.wait_for(listener.established, 30)
        channel = f"private-storm-{index}"
        subscribe = {"channel": channel, "auth": channel_auth(KEY, SECRET, socket_id, channel)}
        transport.send(
            WSMsgType.TEXT, json.dumps({"event": "pusher:subscribe", "data": subscribe}).encode()
        )

    await asyncio.gather(*(one(index) for index in range(clients)))
    answers = []
    for listener in listeners:
        try:
            answers.append(await asyncio.wait_for(listener.answer, 60))
        except TimeoutError:
            answers.append("silence")
    return answers, transports


async def test_a_connection_storm_subscribes_every_client(
    redis_server: OwnRedis, tmp_path: Path
) -> None:
    ws_port, http_port = free_port(), free_port()
    env = scale_out_env(
        tmp_path, redis_server.url, free_port(), (APP_ID, KEY, SECRET), log_level="WARNING"
    )
    node = Process(
        ["realtime", "--port", str(ws_port), "--http-port", str(http_port)],
        env,
        tmp_path / "realtime.log",
    )
    clients = 1_500
    try:
        await wait_http(f"http://127.0.0.1:{http_port}/health")
        answers, transports = await storm(ws_port, clients, window=64)
        tally = {answer: answers.count(answer) for answer in set(answers)}
        assert tally == {"pusher_internal:subscription_succeeded": clients}, (
            tally,
            node.output[-2000:],
        )
        assert "realtime_task_failed" not in node.output
        async with httpx.AsyncClient() as client:
            scrape = (await client.get(f"http://127.0.0.1:{http_port}/metrics")).text
        gauge = next(
            line
            for line in scrape.splitlines()
            if line.startswith("notiflow_realtime_connections ")
        )
        assert float(gauge.split()[1]) == clients, gauge
        for transport in transports:
            transport.disconnect()
    finally:
        code = node.terminate()
    assert code == 0, node.output[-3000:]
