"""A live stack for real-time tests: the API (uvicorn) and the WebSocket server on free ports,
sharing one runtime as ``notiflow serve`` does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn

from notiflow.main.app import create_app
from notiflow.main.runtime import Runtime, channel_cache, replay_source, wire_realtime
from notiflow.realtime.hub import Hub
from notiflow.realtime.server import RealtimeServer, build_realtime_server


@dataclass
class LiveStack:
    runtime: Runtime
    realtime: RealtimeServer
    api_port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ws_port(self) -> int:
        return self.realtime.port

    @property
    def key(self) -> str:
        return self.runtime.settings.pusher_app_key

    @property
    def secret(self) -> str:
        return self.runtime.settings.pusher_app_secret


async def start_api(runtime: Runtime) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    config = uvicorn.Config(
        create_app(runtime=runtime),
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    # The test process keeps its own signal handlers.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, task, port


@pytest.fixture
async def live(runtime: Runtime) -> AsyncIterator[LiveStack]:
    runtime.hub = Hub(
        presence_limit=runtime.settings.ws_presence_limit, cache=channel_cache(runtime.settings)
    )
    wire_realtime(runtime)
    realtime = build_realtime_server(
        runtime.settings, runtime.hub, replay_source(runtime.settings, runtime.sessionmaker)
    )
    await realtime.start("127.0.0.1", 0)
    server, task, port = await start_api(runtime)
    runtime.settings = runtime.settings.model_copy(
        update={"ws_port": realtime.port, "public_url": f"http://127.0.0.1:{port}"}
    )
    try:
        yield LiveStack(runtime=runtime, realtime=realtime, api_port=port)
    finally:
        server.should_exit = True
        await task
        await realtime.stop()
