"""SIGTERM on a node: every socket closes with 4200 (pusher-js reconnects at once, elsewhere) and
the node's presence members leave everywhere (the other nodes' clients get member_removed).

Real processes: `notiflow realtime` and `notiflow serve` nodes over Redis, pusher-js clients.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from notiflow.realtime.signing import channel_auth
from tests.conftest import REDIS_URL
from tests.delivery.processes import NotiflowProcess, free_port, scale_out_env
from tests.realtime.node import NodeClient
from tests.realtime.wsclient import WsClient

APP_ID, KEY, SECRET = "1", "shutdown-key", "shutdown-secret-0123456789abcdef"
# Generous bounds for a busy machine; none of them is a measurement.
EXIT_BOUND = 60.0
EVENT_BOUND = 30.0


@pytest.fixture
async def processes(redis: Redis) -> AsyncIterator[list[NotiflowProcess]]:
    """The notiflow processes a test starts (``redis`` empties the test database around it);
    stopped at the end if the test did not."""
    started: list[NotiflowProcess] = []
    yield started
    for process in started:
        await asyncio.to_thread(process.stop)


async def start(
    started: list[NotiflowProcess], args: list[str], env: dict[str, str], ready_url: str
) -> NotiflowProcess:
    process = await NotiflowProcess(args, env, ready_url).start()
    started.append(process)
    return process


async def realtime_node(
    started: list[NotiflowProcess], env: dict[str, str]
) -> tuple[NotiflowProcess, int]:
    ws_port, http_port = free_port(), free_port()
    args = ["realtime", "--port", str(ws_port), "--http-port", str(http_port)]
    process = await start(started, args, env, f"http://127.0.0.1:{http_port}/health")
    return process, ws_port


def browser(ws_port: int, user_id: int | str, channel: str) -> dict[str, Any]:
    """pusher-js on a node, a member of ``channel`` as ``user_id`` (signed as an authorizer
    would: a number stays a number)."""
    return {
        "wsHost": "127.0.0.1",
        "wsPort": ws_port,
        "key": KEY,
        "authEndpoint": "http://127.0.0.1:9/unused",
        "mode": "pusher",
        "signAs": {"secret": SECRET, "user_id": user_id, "user_info": {"n": user_id}},
        "subscribe": [{"kind": "presence", "name": channel}],
    }


async def raw_member(ws_port: int, channel: str, user_id: int | str) -> WsClient:
    client = await WsClient.open(ws_port, KEY)
    data = json.dumps({"user_id": user_id, "user_info": {"n": user_id}})
    client.subscribe(channel, channel_auth(KEY, SECRET, client.socket_id, channel, data), data)
    await client.wait_for(
        "pusher_internal:subscription_succeeded", channel=channel, timeout=EVENT_BOUND
    )
    return client


async def exit_code(process: NotiflowProcess) -> int | None:
    assert process.process is not None
    try:
        return await asyncio.to_thread(process.process.wait, EXIT_BOUND)
    except Exception:  # a hang is a failure too: the assertion shows the log
        return None


def channel_name() -> str:
    # Redis pub/sub is shared by every database of the server: a name of this test alone.
    return f"presence-team-{uuid.uuid4().hex[:12]}"


async def test_sigterm_on_a_realtime_node_closes_with_4200_and_ends_its_presence_everywhere(
    processes: list[NotiflowProcess], tmp_path: Path
) -> None:
    env = scale_out_env(tmp_path, REDIS_URL, free_port(), (APP_ID, KEY, SECRET))
    node_a, port_a = await realtime_node(processes, env)
    _node_b, port_b = await realtime_node(processes, env)
    channel = channel_name()

    async with NodeClient(browser(port_b, "watcher", channel), name="watcher on b") as watcher:
        await watcher.wait_for({"type": "subscribed"}, timeout=EVENT_BOUND)
        async with NodeClient(browser(port_a, 42, channel), name="ada on a") as ada:
            await ada.wait_for({"type": "subscribed"}, timeout=EVENT_BOUND)
            carol = await raw_member(port_a, channel, "carol")
            for user_id in (42, "carol"):
                await watcher.wait_for(
                    {"type": "presence", "action": "joining", "member": {"id": user_id}},
                    timeout=EVENT_BOUND,
                )

            assert node_a.process is not None
            node_a.process.send_signal(signal.SIGTERM)

            closed = await ada.wait_for({"type": "closed"}, timeout=EVENT_BOUND)
            assert closed["code"] == 4200, closed
            assert await carol.wait_closed(timeout=EVENT_BOUND) == 4200
            told = [m for m in carol.messages if m.get("event") == "pusher:error"]
            assert told[-1]["data"]["code"] == 4200
            for user_id in (42, "carol"):
                left = await watcher.wait_for(
                    {"type": "presence", "action": "leaving", "member": {"id": user_id}},
                    timeout=EVENT_BOUND,
                )
                assert type(left["member"]["id"]) is type(user_id), left
            assert await exit_code(node_a) == 0, node_a.logs()
            assert "Traceback" not in node_a.logs(20_000), node_a.logs()


async def test_sigterm_on_serve_tells_websocket_clients_at_once_while_a_request_still_runs(
    processes: list[NotiflowProcess], tmp_path: Path
) -> None:
    """uvicorn lets the HTTP requests still running finish before it returns; the WebSocket
    clients of `notiflow serve` must not wait for them (an upload that trickles, a long send)."""
    api_port, ws_port = free_port(), free_port()
    env = scale_out_env(tmp_path, REDIS_URL, api_port, (APP_ID, KEY, SECRET))
    args = ["serve", "--port", str(api_port), "--ws-port", str(ws_port)]
    serve = await start(processes, args, env, f"http://127.0.0.1:{api_port}/health")
    _node_b, port_b = await realtime_node(processes, env)
    channel = channel_name()

    async with NodeClient(browser(port_b, "watcher", channel), name="watcher on b") as watcher:
        await watcher.wait_for({"type": "subscribed"}, timeout=EVENT_BOUND)
        async with NodeClient(browser(ws_port, 42, channel), name="ada on serve") as ada:
            await ada.wait_for({"type": "subscribed"}, timeout=EVENT_BOUND)
            await watcher.wait_for(
                {"type": "presence", "action": "joining", "member": {"id": 42}},
                timeout=EVENT_BOUND,
            )
            writer = await stalled_request(api_port)
            try:
                assert serve.process is not None
                serve.process.send_signal(signal.SIGTERM)

                closed = await ada.wait_for({"type": "closed"}, timeout=EVENT_BOUND)
                assert closed["code"] == 4200, closed
                left = await watcher.wait_for(
                    {"type": "presence", "action": "leaving", "member": {"id": 42}},
                    timeout=EVENT_BOUND,
                )
                assert type(left["member"]["id"]) is int, left
                assert serve.process.poll() is None, "the request still runs: the API waits"
            finally:
                writer.close()  # the request ends (its client went away): the process can exit
                await writer.wait_closed()
            assert await exit_code(serve) == 0, serve.logs()


async def stalled_request(api_port: int) -> asyncio.StreamWriter:
    """A Pusher HTTP API request whose body never comes, returned once the route is waiting
    for it (the server's ``100 Continue`` says so)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", api_port)
    path = (
        f"/apps/{APP_ID}/events?auth_key={KEY}&auth_timestamp={int(time.time())}"
        "&auth_version=1.0&body_md5=0&auth_signature=0"
    )
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), EVENT_BOUND)
    assert status.startswith(b"HTTP/1.1 100"), status
    return writer
