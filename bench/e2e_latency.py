"""End-to-end latency: send -> browser event through notiflow, against the Pusher HTTP API, one run.

Target: "end-to-end send -> browser event p99 < 25 ms at 1,000 notifications/s".

Shape of a run: a scratch PostgreSQL database (created here, dropped at the end), an owner made
with ``notiflow users create --with-token``, and ``notiflow serve`` as a subprocess pinned to the
first CPU (development settings, no Redis: the in-process hub, unread cache and job queue of the
one-process deployment). This process, pinned to the second CPU, is the load: N WebSocket
connections (picows) subscribed to the owner's ``private-notifications.{id}`` channel through
``/broadcasting/auth``, and a sender over keep-alive HTTP/1.1 connections, one per in-flight
request (``--http-client raw``: prepared request bytes, httptools for the answers; ``httpx``
costs ~1 ms of CPU per request on a small machine, more than the server's baseline path).

Two paths, same server, same connections, interleaved rate by rate:

  notiflow  ``POST /api/v1/notifications/send`` (user_ids=[owner], channels in_app + push): the
            real path (token auth, preference resolution, notification row, delivery ledger,
            COMMIT, then ``NotificationCreated`` and ``UnreadCountChanged`` on the channel, and
            the push delivery job in the background).
  baseline  ``POST /apps/{id}/events`` signed like the pusher SDKs, one ``NotificationCreated``
            with data of the same size (copied from a real one): the live-event path of the same
            server without the database write, preference resolution and ledger.

For each rate (``--rates``, fixed schedule send i at t0 + i/rate for ``--duration`` s, at most
``--concurrency`` requests in flight; what is still waiting for a slot at the end is not sent)
and then closed-loop "max" (``--max-concurrency`` workers sending back to back for
``--max-duration`` s): achieved send rate, delivered/expected, and latency = receive time on the
client (the WebSocket frame callback) minus a ``perf_counter()`` taken just before the HTTP
request and carried in the event's data (one process, one clock). Ratios are baseline / notiflow:
p99 below 1.0x means notiflow is slower, rate above 1.0x means the baseline sustains more.

Whether the load generator kept up: its own CPU time over the phase ("cli"), its core including
softirq and whatever else runs there ("c1"), and the event-loop lag it suffered ("lag99": time
from scheduling a callback to its run, sampled every 2 ms: a delivery can be stamped that much
late). Per send: server CPU ms ("srv ms") and the CPU ms of the server's PostgreSQL backends
("pg ms"). Before each phase the driver waits for the server to settle and (up to
``--wait-quiet`` s) for an idle machine, and reports the busiest core ("before").

Then, one request at a time (``--breakdown`` per case), where the time of one request goes: the
framework floor (a 404), token auth, the baseline event, a send without and with the push
channel: HTTP and send -> event latency, server CPU (background work included) and PostgreSQL
CPU per request. ``--py-spy`` adds a sampled profile of the server at the highest notiflow rate
(it slows the server: use a separate run for the figures).

Run::

    .venv/bin/python bench/e2e_latency.py                  # 50 connections, 100/500/1000 per s
    .venv/bin/python bench/e2e_latency.py --rates 1000 --duration 10 --json var/e2e.json
    .venv/bin/python bench/e2e_latency.py --rates 1000 --max-duration 0 --breakdown 0 \\
        --py-spy "$(command -v py-spy)"                  # where the server's time goes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import asyncpg
import httptools
import httpx
from picows import WSListener, WSMsgType, WSTransport, ws_connect

from notiflow.config import DEVELOPMENT_PUSHER_SECRET
from notiflow.realtime.signing import body_md5, request_signature
from ws_fanout import CoreSample, cpu_seconds, wait_for_quiet

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
APP_ID, APP_KEY, APP_SECRET = "1", "notiflow-key", DEVELOPMENT_PUSHER_SECRET
EVENT = "NotificationCreated"
# The send timestamp and phase id, as they appear in a frame: inside the event's data, which is
# a JSON string in the Pusher protocol, so the quotes may be escaped.
MARK_RE = re.compile(rb'e2e_t\\?":([0-9.]+),\\?"e2e_p\\?":([0-9]+)')
TARGET_RATE, TARGET_P99_MS = 1000, 25.0


# ============================================================================ measurements


def pct(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a sorted, non-empty list."""
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Phase:
    ident: int
    path: str  # "notiflow" or "baseline"
    label: str  # "100/s", "max", "warm-up"
    rate: float | None  # None: closed loop
    latencies: list[float] = field(default_factory=list)  # seconds, one per delivery
    http: list[float] = field(default_factory=list)  # request -> response, seconds
    start_lag: list[float] = field(default_factory=list)  # dispatch behind schedule, seconds
    loop_lag: list[float] = field(default_factory=list)
    ok: int = 0
    not_dispatched: int = 0  # due within the duration, but no slot free before its end
    errors: Counter[str] = field(default_factory=Counter)
    other_events: int = 0  # UnreadCountChanged and anything else unmarked
    first_send: float = 0.0
    last_response: float = 0.0
    drained: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    busy_before: float = 0.0

    def summary(self, subscribed: int) -> dict[str, Any]:
        span = self.last_response - self.first_send
        window = self.drained - self.first_send
        expected = self.ok * subscribed
        ordered = sorted(self.latencies)
        http = sorted(self.http)
        lag = sorted(self.loop_lag)
        out: dict[str, Any] = {
            "path": self.path,
            "phase": self.label,
            "target_rate": self.rate,
            "sent_ok": self.ok,
            "not_dispatched": self.not_dispatched,
            "send_errors": dict(self.errors),
            "achieved_rate": self.ok / span if span > 0 else 0.0,
            "expected": expected,
            "delivered": len(ordered),
            "delivered_ratio": len(ordered) / expected if expected else 0.0,
            "other_events": self.other_events,
            "busy_before": self.busy_before,
        }
        if ordered:
            out["latency_ms"] = {
                "p50": pct(ordered, 50) * 1e3,
                "p90": pct(ordered, 90) * 1e3,
                "p99": pct(ordered, 99) * 1e3,
                "max": ordered[-1] * 1e3,
                "mean": statistics.fmean(ordered) * 1e3,
            }
        if http:
            out["http_ms"] = {"p50": pct(http, 50) * 1e3, "p99": pct(http, 99) * 1e3}
        if self.start_lag:
            out["start_lag_p99_ms"] = pct(sorted(self.start_lag), 99) * 1e3
        if lag:
            out["client_loop_lag_ms"] = {"p50": pct(lag, 50) * 1e3, "p99": pct(lag, 99) * 1e3}
        if window > 0 and self.cpu:
            sends = max(1, self.ok)
            out["client_cpu"] = self.cpu["client"] / window
            out["server_cpu"] = self.cpu["server"] / window
            out["pg_cpu"] = self.cpu["pg"] / window
            out["cpu_ms_per_send"] = {
                "client": self.cpu["client"] / sends * 1e3,
                "server": self.cpu["server"] / sends * 1e3,
                "pg": self.cpu["pg"] / sends * 1e3,
            }
            out["core_busy"] = {
                "server": self.cpu["core_server"],
                "client": self.cpu["core_client"],
            }
        return out


class Receiver(WSListener):
    def __init__(self, bench: Bench) -> None:
        loop = asyncio.get_running_loop()
        self.bench = bench
        self.socket_id: asyncio.Future[str] = loop.create_future()
        self.subscribed: asyncio.Future[bool] = loop.create_future()

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        now = time.perf_counter()
        payload: bytes = frame.get_payload_as_bytes()
        match = MARK_RE.search(payload)
        bench = self.bench
        if match is not None:
            phase = bench.phases.get(int(match[2]))
            if phase is not None:
                phase.latencies.append(now - float(match[1]))
                if phase.path not in bench.samples:
                    bench.samples[phase.path] = payload
            return
        if bench.current is not None and not payload.startswith(b'{"event":"pusher'):
            bench.current.other_events += 1
            return
        message = json.loads(payload)
        event = message.get("event")
        if event == "pusher:ping":
            transport.send(WSMsgType.TEXT, b'{"event":"pusher:pong","data":{}}')
        elif event == "pusher:connection_established" and not self.socket_id.done():
            self.socket_id.set_result(json.loads(message["data"])["socket_id"])
        elif event == "pusher_internal:subscription_succeeded" and not self.subscribed.done():
            self.subscribed.set_result(True)
        elif event == "pusher:subscription_error" and not self.subscribed.done():
            self.subscribed.set_result(False)


# ============================================================================ the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def notiflow_bin() -> str:
    local = Path(sys.executable).parent / "notiflow"
    return str(local) if local.exists() else (shutil.which("notiflow") or "notiflow")


class Server:
    """``notiflow serve`` on a scratch database, and the owner that the load acts as."""

    def __init__(self, database: str, workdir: Path, sweep_interval: float) -> None:
        self.database = database
        self.workdir = workdir
        self.api_port = free_port()
        self.ws_port = free_port()
        self.api_url = f"http://{HOST}:{self.api_port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFLOW_")}
        self.env.update(
            NOTIFLOW_DATABASE_URL=f"postgresql+asyncpg://postgres@{HOST}:5432/{database}",
            NOTIFLOW_LOG_LEVEL="WARNING",
            NOTIFLOW_ENV="development",
            NOTIFLOW_PUBLIC_URL=self.api_url,
            # A push delivery that fails (no push sender configured, as in some development
            # set-ups) is retried through the sweeper 15-60 s later, as bursts in later phases.
            # Keep them out of the measured window (see --help).
            NOTIFLOW_SWEEP_INTERVAL_SECONDS=f"{sweep_interval:g}",
        )
        self.proc: asyncio.subprocess.Process | None = None
        self.log = workdir / "server.log"
        self.owner: dict[str, Any] = {}

    async def create_owner(self) -> dict[str, Any]:
        proc = await asyncio.create_subprocess_exec(
            notiflow_bin(),
            *("users", "create", "--tenant", "Bench", "--email", "bench-e2e@example.com"),
            *("--role", "owner", "--with-token"),
            env=self.env,
            cwd=self.workdir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        if proc.returncode != 0:
            raise RuntimeError(f"notiflow users create failed: {err.decode()[-2000:]}")
        self.owner = json.loads(out.decode().strip().splitlines()[-1])
        return self.owner

    async def start(self, cpu: int | None, within: float = 60) -> None:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *(notiflow_bin(), "serve", "--port", str(self.api_port)),
                *("--ws-port", str(self.ws_port)),
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(base_url=self.api_url, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"notiflow serve exited: {self.log_tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get("/health")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"notiflow serve not healthy within {within:.0f} s: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def create_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# ============================================================================ HTTP clients


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time (httptools parses answers)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("connection closed"))


class RawHttp:
    """A minimal HTTP/1.1 client for the load: a pool of keep-alive connections, requests
    written as prepared bytes, answers parsed for the status only. httpx costs ~1 ms of CPU per
    request on a small machine, which at 1,000/s would make the load generator the bottleneck."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
        ).encode()
        self.idle: list[_RawConnection] = []

    async def request(self, method: str, target: str, body: bytes = b"") -> int:
        message = b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            method.encode(),
            target.encode(),
            self.head,
            len(body),
            body,
        )
        while self.idle:  # the server closes connections idle for 5 s (uvicorn's keep-alive)
            connection = self.idle.pop()
            if connection.closed or connection.transport is None:
                continue
            if connection.transport.is_closing():
                continue
            try:
                return await self._exchange(connection, message)
            except (ConnectionError, RuntimeError):
                continue  # closed under us before answering: nothing was processed, retry
        return await self._exchange(await self._open(), message)

    async def _exchange(self, connection: _RawConnection, message: bytes) -> int:
        assert connection.transport is not None
        waiter = asyncio.get_running_loop().create_future()
        connection.waiter = waiter
        connection.transport.write(message)
        try:
            status = await asyncio.wait_for(waiter, 60)
        except TimeoutError:
            connection.transport.close()
            raise
        connection.waiter = None
        if not connection.closed:
            self.idle.append(connection)
        return int(status)

    async def _open(self) -> _RawConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_RawConnection, self.host, self.port)
        return protocol

    async def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()
        self.idle.clear()


class HttpxHttp:
    """The same interface over ``httpx.AsyncClient`` (keep-alive pool, HTTP/1.1)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.headers = {"Content-Type": "application/json"}

    async def request(self, method: str, target: str, body: bytes = b"") -> int:
        response = await self.client.request(
            method, target, content=body or None, headers=self.headers
        )
        return response.status_code

    async def close(self) -> None:
        return None


# ============================================================================ the load


Send = Callable[[Phase, int], Awaitable[None]]


class Bench:
    def __init__(self, options: argparse.Namespace, server: Server, cpus: tuple[Any, Any]):
        self.options = options
        self.server = server
        self.cpus = cpus
        self.phases: dict[int, Phase] = {}
        self.current: Phase | None = None
        self.samples: dict[str, bytes] = {}  # one received frame per path
        self.transports: list[WSTransport] = []
        self.subscribed = 0
        self.pg: asyncpg.Connection | None = None
        self.api: httpx.AsyncClient  # set-up calls
        self.http: RawHttp | HttpxHttp  # the load
        self.channel = ""
        self.owner_id = ""
        self.baseline_parts: tuple[str, str] = ("", "")

    # ------------------------------------------------------------------ set-up

    async def connect(self) -> None:
        owner = self.server.owner
        self.owner_id = owner["user_id"]
        pool = max(self.options.concurrency, self.options.max_concurrency)
        self.api = httpx.AsyncClient(
            base_url=self.server.api_url,
            headers={"Authorization": f"Bearer {owner['token']}"},
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            timeout=30,
        )
        if self.options.http_client == "httpx":
            self.http = HttpxHttp(self.api)
        else:
            self.http = RawHttp(HOST, self.server.api_port, owner["token"])
        api = self.api
        config = (await api.get("/api/v1/realtime/config")).raise_for_status().json()["data"]
        self.channel = config["channel"]
        url = f"ws://{HOST}:{self.server.ws_port}/app/{config['key']}?protocol=7&client=js"
        limiter = asyncio.Semaphore(25)

        async def open_one() -> None:
            async with limiter:
                transport, listener = await ws_connect(lambda: Receiver(self), url)
                receiver = cast(Receiver, listener)
                self.transports.append(transport)
                socket_id = await asyncio.wait_for(receiver.socket_id, 10)
                grant = await api.post(
                    "/broadcasting/auth",
                    data={"socket_id": socket_id, "channel_name": self.channel},
                )
                grant.raise_for_status()
                subscribe = {"channel": self.channel, "auth": grant.json()["auth"]}
                transport.send(
                    WSMsgType.TEXT,
                    json.dumps({"event": "pusher:subscribe", "data": subscribe}).encode(),
                )
                if await asyncio.wait_for(receiver.subscribed, 10):
                    self.subscribed += 1

        await asyncio.gather(*(open_one() for _ in range(self.options.connections)))
        if self.subscribed != self.options.connections:
            raise RuntimeError(f"only {self.subscribed}/{self.options.connections} subscribed")
        self.pg = await asyncpg.connect(PG_ADMIN_DSN)

    async def close(self) -> None:
        for transport in self.transports:
            transport.disconnect()
        with contextlib.suppress(Exception):
            await self.http.close()
            await self.api.aclose()
        if self.pg is not None:
            await self.pg.close()

    # ------------------------------------------------------------------ the two requests

    def notiflow_request(
        self, phase: int, seq: int, started: float, channels: str = '"in_app","push"'
    ) -> tuple[str, bytes]:
        body = (
            f'{{"user_ids":["{self.owner_id}"],"type":"system_announcement","title":"Bench",'
            f'"message":"e2e latency {seq}","data":{{"e2e_t":{started!r},"e2e_p":{phase},'
            f'"e2e_i":{seq}}},"channels":[{channels}]}}'
        ).encode()
        return "/api/v1/notifications/send", body

    def use_sample(self) -> None:
        """Make the baseline's event data the same as a real NotificationCreated's, mark aside."""
        sample = self.samples.get("notiflow")
        if sample is None:
            raise RuntimeError("no NotificationCreated arrived during the notiflow warm-up")
        data: str = json.loads(sample)["data"]
        start = data.index('{"e2e_t"')
        end = data.index("}", start) + 1
        self.baseline_parts = (data[:start], data[end:])

    def baseline_request(self, phase: int, seq: int, started: float) -> tuple[str, bytes]:
        head, tail = self.baseline_parts
        data = f'{head}{{"e2e_t":{started!r},"e2e_p":{phase},"e2e_i":{seq}}}{tail}'
        body = json.dumps(
            {"name": EVENT, "channel": self.channel, "data": data}, separators=(",", ":")
        ).encode()
        path = f"/apps/{APP_ID}/events"
        params = {
            "auth_key": APP_KEY,
            "auth_timestamp": str(int(time.time())),
            "auth_version": "1.0",
            "body_md5": body_md5(body),
        }
        params["auth_signature"] = request_signature(APP_SECRET, "POST", path, params)
        return f"{path}?{urlencode(params)}", body

    async def send_notiflow(self, phase: Phase, seq: int) -> None:
        started = time.perf_counter()
        target, body = self.notiflow_request(phase.ident, seq, started)
        await self._post(phase, started, target, body, 202)

    async def send_baseline(self, phase: Phase, seq: int) -> None:
        started = time.perf_counter()
        target, body = self.baseline_request(phase.ident, seq, started)
        await self._post(phase, started, target, body, 200)

    async def _post(self, phase: Phase, started: float, target: str, body: bytes, ok: int) -> None:
        try:
            status = await self.http.request("POST", target, body)
        except (OSError, httpx.HTTPError) as error:
            phase.errors[type(error).__name__] += 1
            return
        done = time.perf_counter()
        if status == ok:
            phase.ok += 1
            phase.http.append(done - started)
            phase.last_response = max(phase.last_response, done)
        else:
            phase.errors[str(status)] += 1

    # ------------------------------------------------------------------ one phase

    async def pg_backends(self) -> dict[int, float]:
        assert self.pg is not None
        rows = await self.pg.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.server.database
        )
        found = {}
        for row in rows:
            with contextlib.suppress(OSError):
                found[row["pid"]] = cpu_seconds(row["pid"])
        return found

    async def run_phase(
        self,
        path: str,
        label: str,
        rate: float | None,
        duration: float,
        concurrency: int,
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> Phase:
        options = self.options
        phase = Phase(ident=len(self.phases) + 1, path=path, label=label, rate=rate)
        self.phases[phase.ident] = phase
        send: Send = self.send_notiflow if path == "notiflow" else self.send_baseline
        if label != "warm-up":
            await self.settle(within=options.wait_quiet)  # the server's own backlog first
            phase.busy_before = await wait_for_quiet(options.wait_quiet, options.quiet_threshold)
        if on_start is not None:
            await on_start()
        self.current = phase
        pg_before = await self.pg_backends()
        server_before = cpu_seconds(self.server.proc.pid) if self.server.proc else 0.0
        client_before = own_cpu_seconds()
        cores_before = CoreSample()
        stop_probe = asyncio.Event()
        probe = asyncio.create_task(loop_lag_probe(phase.loop_lag, stop_probe))
        phase.first_send = time.perf_counter()
        if rate is not None:
            await fixed_rate(phase, send, rate, duration, concurrency)
        else:
            await closed_loop(phase, send, duration, concurrency)
        expected = phase.ok * self.subscribed
        deadline = time.perf_counter() + options.drain
        # polling a counter that frame callbacks feed
        while len(phase.latencies) < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        phase.drained = time.perf_counter()
        stop_probe.set()
        await probe
        client = own_cpu_seconds() - client_before
        cores = CoreSample().busy_since(cores_before)
        server_cpu = (
            cpu_seconds(self.server.proc.pid) if self.server.proc else 0.0
        ) - server_before
        pg_after = await self.pg_backends()
        phase.cpu = {
            "client": client,
            "server": server_cpu,
            "pg": sum(after - pg_before.get(pid, 0.0) for pid, after in pg_after.items()),
            "core_server": cores.get(self.cpus[0], 0.0) if self.cpus[0] is not None else 0.0,
            "core_client": cores.get(self.cpus[1], 0.0) if self.cpus[1] is not None else 0.0,
        }
        self.current = None
        return phase

    async def settle(self, within: float = 5.0) -> None:
        """Wait until the server's CPU time stops growing (background jobs done)."""
        assert self.server.proc is not None
        deadline = time.monotonic() + within
        last = cpu_seconds(self.server.proc.pid)
        while time.monotonic() < deadline:
            await asyncio.sleep(0.15)
            now = cpu_seconds(self.server.proc.pid)
            if now == last:
                return
            last = now

    async def breakdown(self, count: int) -> list[dict[str, Any]]:
        """Where the time of one request goes: each case ``count`` times, one at a time, with
        the server's CPU (background work included: measured once it has settled) and its
        PostgreSQL backends' CPU per request."""
        assert self.server.proc is not None
        pid = self.server.proc.pid
        seq = iter(range(10**9))
        now = time.perf_counter
        Build = Callable[[int], tuple[str, str, bytes]]
        cases: list[tuple[str, Build, int, str | None]] = [
            (
                "GET unknown path: 404 (ASGI + FastAPI floor)",
                lambda _: ("GET", "/nope", b""),
                404,
                None,
            ),
            (
                "GET /api/v1/realtime/config (token auth)",
                lambda _: ("GET", "/api/v1/realtime/config", b""),
                200,
                None,
            ),
            (
                "POST /apps/1/events (baseline)",
                lambda ident: ("POST", *self.baseline_request(ident, next(seq), now())),
                200,
                "baseline",
            ),
            (
                "POST send, channels [in_app] (no live event)",
                lambda ident: ("POST", *self.notiflow_request(ident, next(seq), now(), '"in_app"')),
                202,
                None,
            ),
            (
                "POST send, channels [in_app, push]",
                lambda ident: ("POST", *self.notiflow_request(ident, next(seq), now())),
                202,
                "notiflow",
            ),
        ]
        rows = []
        for name, build, expected, path in cases:
            for _ in range(20):
                await self.http.request(*build(0))
            await self.settle()
            phase = Phase(
                ident=len(self.phases) + 1, path=path or "", label="1 at a time", rate=None
            )
            if path is not None:
                self.phases[phase.ident] = phase
            walls: list[float] = []
            wrong = 0
            pg_before = await self.pg_backends()
            server_before = cpu_seconds(pid)
            for _ in range(count):
                method, target, body = build(phase.ident)
                started = time.perf_counter()
                status = await self.http.request(method, target, body)
                walls.append(time.perf_counter() - started)
                wrong += status != expected
            await self.settle()
            server = cpu_seconds(pid) - server_before
            pg_after = await self.pg_backends()
            pg = sum(after - pg_before.get(p, 0.0) for p, after in pg_after.items())
            walls.sort()
            events = sorted(phase.latencies)
            rows.append(
                {
                    "case": name,
                    "requests": count,
                    "unexpected_status": wrong,
                    "wall_ms": {"p50": pct(walls, 50) * 1e3, "p99": pct(walls, 99) * 1e3},
                    "event_ms": {"p50": pct(events, 50) * 1e3, "p99": pct(events, 99) * 1e3}
                    if events
                    else None,
                    "server_cpu_ms": server / count * 1e3,
                    "pg_cpu_ms": pg / count * 1e3,
                }
            )
        return rows


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def loop_lag_probe(samples: list[float], stop: asyncio.Event) -> None:
    """Every 2 ms, how long a callback scheduled now waits for its turn on this loop: the delay
    a frame that arrives now could suffer before its receive time is taken."""
    loop = asyncio.get_running_loop()

    def ran(scheduled: float) -> None:
        samples.append(time.perf_counter() - scheduled)

    while not stop.is_set():
        loop.call_soon(ran, time.perf_counter())
        await asyncio.sleep(0.002)


async def fixed_rate(phase: Phase, send: Send, rate: float, duration: float, limit: int) -> None:
    """Send i is due at t0 + i/rate; at most ``limit`` in flight (a late dispatch is recorded as
    start lag, so a server that cannot keep up shows as a lower achieved rate). Nothing is
    dispatched after ``duration``: sends still waiting for a slot then are counted as not sent."""
    total = max(1, int(rate * duration))
    slots = asyncio.Semaphore(limit)
    tasks: set[asyncio.Task[None]] = set()

    async def one(seq: int) -> None:
        try:
            await send(phase, seq)
        finally:
            slots.release()

    start = time.perf_counter()
    end = start + duration
    for seq in range(total):
        due = start + seq / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if slots.locked():  # bounded: what could not be dispatched by the end is not sent
            remaining = end - time.perf_counter()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(slots.acquire(), remaining)
            except TimeoutError:
                phase.not_dispatched = total - seq
                break
        else:
            await slots.acquire()
        phase.start_lag.append(max(0.0, time.perf_counter() - due))
        task = asyncio.create_task(one(seq))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)


async def closed_loop(phase: Phase, send: Send, duration: float, workers: int) -> None:
    """``workers`` senders, each sending back to back until ``duration`` has passed."""
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            await send(phase, next(counter))

    await asyncio.gather(*(worker() for _ in range(workers)))


# ============================================================================ evidence


async def unread_count_cost(bench: Bench) -> dict[str, Any]:
    """The query that every send's ``UnreadCountChanged`` runs (notifier._counts), timed with
    EXPLAIN ANALYZE on the rows this run left: it counts every unread row of the recipient."""
    owner = bench.server.owner
    connection = await asyncpg.connect(f"postgresql://postgres@{HOST}:5432/{bench.server.database}")
    try:
        rows = await connection.fetchval("SELECT count(*) FROM notifications")
        plan = await connection.fetch(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT user_id, count(*) FROM notifications "
            "WHERE tenant_id = $1 AND user_id = ANY($2::uuid[]) AND read_at IS NULL "
            "AND archived_at IS NULL GROUP BY user_id",
            uuid.UUID(owner["tenant_id"]),
            [uuid.UUID(owner["user_id"])],
        )
        lines = [row[0] for row in plan]
        deliveries = await connection.fetch(
            "SELECT channel, status, left(coalesce(last_error, reason, ''), 60) AS why, "
            "count(*) AS n FROM notification_deliveries GROUP BY 1, 2, 3 ORDER BY 4 DESC"
        )
        execution = next((line for line in lines if line.startswith("Execution Time")), "")
        return {
            "notification_rows": rows,
            "execution_ms": float(execution.split(":")[1].split()[0]) if execution else None,
            "plan": lines,
            "deliveries": [dict(row) for row in deliveries],
        }
    finally:
        await connection.close()


class Profiler:
    """py-spy on the server during one phase (optional; perturbs the run a little)."""

    def __init__(self, binary: str, out: Path, pid: int, seconds: float) -> None:
        self.binary = binary
        self.out = out
        self.pid = pid
        self.seconds = max(1, round(seconds))
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        pid, seconds = str(self.pid), str(self.seconds)
        self.proc = await asyncio.create_subprocess_exec(
            *(self.binary, "record", "--pid", pid, "--duration", seconds),
            *("--rate", "200", "--format", "raw", "--output", str(self.out)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def summary(self, top: int = 14) -> dict[str, Any]:
        """Samples by kind of work, and the notiflow functions with the most samples under them
        (inclusive). SQLAlchemy runs its sync side in greenlets, whose stacks py-spy sees
        without their async caller: those samples form their own kind."""
        if self.proc is not None:
            await asyncio.wait_for(self.proc.wait(), 60)
        if not self.out.exists():
            return {}
        kinds: Counter[str] = Counter()
        functions: Counter[str] = Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            if frames[-1].startswith(("Condition.wait", "Event.wait", "Queue.get")):
                continue  # an idle thread-pool thread (py-spy does not see it as idle)
            total += count
            kinds[_kind_of(frames)] += count
            for name in {_short_frame(f) for f in frames if "/notiflow/" in f or "(notiflow/" in f}:
                functions[name] += count
        if not total:
            return {}
        return {
            "samples": total,
            "kinds": [(kind, count / total) for kind, count in kinds.most_common()],
            "notiflow_functions": [
                (name, count / total) for name, count in functions.most_common(top)
            ],
        }


def _kind_of(frames: list[str]) -> str:
    text = ";".join(frames)
    if "DeliveryWorker" in text or "send_deliveries" in text:
        return "delivery job (push channel, taskiq in-process)"
    if "run_asgi" in text:
        if "authenticate_token" in text:
            return "HTTP request: token authentication"
        if "commit_and_flush_effects" in text:
            return "HTTP request: commit + after-commit effects (live events, unread count)"
        if "NotificationService" in text:
            return "HTTP request: NotificationService (recipients, rows, ledger)"
        return "HTTP request: uvicorn/Starlette/FastAPI, validation, dependencies"
    if frames[0].startswith("Thread._bootstrap"):
        return "worker thread (sync FastAPI dependencies run in anyio's thread pool)"
    if not frames[0].startswith("<module>"):
        return "SQLAlchemy sync side in a greenlet (caller not visible)"
    if "realtime/" in text or "picows" in text:
        return "WebSocket server"
    if frames[-1].startswith("Runner.run"):
        return "event loop itself (uvloop: I/O and C-level callbacks)"
    return "other"


def _short_frame(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"


# ============================================================================ output


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'phase':<6} {'path':<9} {'sent/s':>7} {'deliv':>6} {'p50':>6} {'p90':>6} {'p99':>7} "
        f"{'max':>7} {'http50':>6} {'slag99':>6} {'cli':>4} {'c1':>4} {'lag99':>5} "
        f"{'srv':>4} {'c0':>4} {'srv ms':>6} {'pg ms':>5} {'before':>6}"
    )
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        lat = row.get("latency_ms") or {"p50": 0, "p90": 0, "p99": 0, "max": 0}
        per = row.get("cpu_ms_per_send", {"server": 0, "pg": 0})
        cores = row.get("core_busy", {"server": 0, "client": 0})
        errors = sum(row["send_errors"].values())
        note = f" {errors} send errors {row['send_errors']}" if errors else ""
        if row["not_dispatched"]:
            note += f" {row['not_dispatched']} due sends not dispatched in time"
        print(
            f"{row['phase']:<6} {row['path']:<9} {row['achieved_rate']:>7.0f} "
            f"{row['delivered_ratio']:>6.1%} {lat['p50']:>6.2f} {lat['p90']:>6.2f} "
            f"{lat['p99']:>7.2f} {lat['max']:>7.1f} {row.get('http_ms', {}).get('p50', 0):>6.2f} "
            f"{row.get('start_lag_p99_ms', 0):>6.1f} {row.get('client_cpu', 0):>4.0%} "
            f"{cores['client']:>4.0%} {row.get('client_loop_lag_ms', {}).get('p99', 0):>5.2f} "
            f"{row.get('server_cpu', 0):>4.0%} {cores['server']:>4.0%} {per['server']:>6.2f} "
            f"{per['pg']:>5.2f} {row['busy_before']:>6.0%}{note}"
        )
    print(
        "\nsent/s = accepted sends / (last response - first send); deliv = frames received / "
        "(sent x connections);\np50..max = send -> WebSocket frame, ms; http50 = send -> HTTP "
        "response p50, ms; slag99 = dispatch behind schedule p99, ms;\ncli / srv = load "
        "generator / server process CPU over the phase; c1 / c0 = their cores incl. softirq;\n"
        "lag99 = client event-loop lag p99, ms; srv ms / pg ms = server / its PostgreSQL "
        "backends' CPU per send; before = busiest core before the phase."
    )


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """baseline / notiflow for p99 and achieved rate, phase by phase."""
    by_key = {(row["phase"], row["path"]): row for row in rows}
    out = []
    for (label, path), mine in by_key.items():
        base = by_key.get((label, "baseline"))
        if path != "notiflow" or base is None:
            continue
        mine_p99 = (mine.get("latency_ms") or {}).get("p99")
        base_p99 = (base.get("latency_ms") or {}).get("p99")
        out.append(
            {
                "phase": label,
                "p99_ratio": base_p99 / mine_p99 if mine_p99 and base_p99 else None,
                "rate_ratio": base["achieved_rate"] / mine["achieved_rate"]
                if mine["achieved_rate"]
                else None,
                "notiflow_p99_ms": mine_p99,
                "baseline_p99_ms": base_p99,
            }
        )
    return out


def verdict(rows: list[dict[str, Any]], path: str = "notiflow") -> dict[str, Any]:
    """The target: p99 < 25 ms at 1,000 notifications/s, with the rate actually achieved and
    every event delivered."""
    row = next((r for r in rows if r["path"] == path and r["target_rate"] == TARGET_RATE), None)
    if row is None:
        return {"measured": False, "passed": None}
    p99 = (row.get("latency_ms") or {}).get("p99")
    rate_ok = row["achieved_rate"] >= 0.95 * TARGET_RATE
    delivered_ok = row["delivered_ratio"] >= 0.999
    passed = bool(p99 is not None and p99 < TARGET_P99_MS and rate_ok and delivered_ok)
    return {
        "measured": True,
        "passed": passed,
        "p99_ms": p99,
        "achieved_rate": row["achieved_rate"],
        "delivered_ratio": row["delivered_ratio"],
        "rate_ok": rate_ok,
        "delivered_ok": delivered_ok,
    }


def client_notes(rows: list[dict[str, Any]]) -> list[str]:
    """Honest flags where the Python load generator, or other work, may have limited a phase."""
    notes = []
    for row in rows:
        mine = row.get("client_cpu", 0.0)
        core = row.get("core_busy", {}).get("client", 0.0)
        lag = row.get("client_loop_lag_ms", {}).get("p99", 0.0)
        p99 = (row.get("latency_ms") or {}).get("p99", 0.0)
        where = f"{row['phase']} {row['path']}"
        if mine >= 0.85:
            notes.append(
                f"{where}: the load generator used {mine:.0%} of its core: this phase is "
                "client-bound, its figures are a lower bound for the server"
            )
        elif core >= 0.9:
            notes.append(
                f"{where}: the load generator's core was {core:.0%} busy, {mine:.0%} of it the "
                "load generator: the rest is PostgreSQL, softirq or other work on the machine"
            )
        if lag >= max(1.0, 0.25 * p99):
            notes.append(
                f"{where}: client loop lag p99 {lag:.2f} ms is a sizeable part of p99 "
                f"{p99:.2f} ms: receive stamps are late by up to that much"
            )
    return notes


# ============================================================================ main


async def git_revision() -> str:
    """The checkout's commit, and whether src/ has changes on top (read-only git calls)."""
    root = REPO_ROOT

    async def git(*args: str) -> str:
        with contextlib.suppress(OSError):
            proc = await asyncio.create_subprocess_exec(
                "git",
                "-C",
                str(root),
                *args,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await proc.communicate()
            return out.decode().strip()
        return ""

    commit = await git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = await git("status", "--porcelain", "--", "src")
    return commit + (" + uncommitted changes in src/" if dirty else "")


async def main(options: argparse.Namespace) -> int:
    # SIGTERM / SIGHUP end the run through the clean-up below (server stopped, database dropped)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, task.cancel)
    cpus: tuple[int | None, int | None] = (None, None)
    if options.pin and len(os.sched_getaffinity(0)) >= 2:
        available = sorted(os.sched_getaffinity(0))
        cpus = (available[0], available[1])
        os.sched_setaffinity(0, {available[1]})
    rates = [float(r) for r in options.rates.split(",") if r]
    database = f"notiflow_bench_e2e_{uuid.uuid4().hex[:12]}"
    revision = await git_revision()
    workdir = Path(tempfile.mkdtemp(prefix="notiflow-e2e-"))
    print(
        f"{options.connections} connections on one private channel, rates {options.rates}/s for "
        f"{options.duration:g} s (<= {options.concurrency} in flight), max rate with "
        f"{options.max_concurrency} workers for {options.max_duration:g} s; server on CPU "
        f"{cpus[0]}, load on CPU {cpus[1]} ({options.http_client} HTTP client); database "
        f"{database}; notiflow {revision}; load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    await create_database(database)
    server = Server(database, workdir, options.sweep_interval)
    bench: Bench | None = None
    keep_workdir = False
    try:
        await server.create_owner()
        await server.start(cpus[0])
        bench = Bench(options, server, cpus)
        await bench.connect()
        gc.collect()
        gc.freeze()  # what exists now lives until the end: keep it out of collections
        # Warm-up, not reported: connections in the pools, code paths, and a real
        # NotificationCreated whose size the baseline copies.
        await bench.run_phase("notiflow", "warm-up", 100, options.warmup, options.concurrency)
        bench.use_sample()
        await bench.run_phase("baseline", "warm-up", 100, options.warmup, options.concurrency)

        phases: list[Phase] = []
        profile: dict[str, Any] = {}
        profile_at = max(rates) if rates else None
        plan: list[tuple[str, float | None, float, int]] = [
            (f"{r:g}/s", r, options.duration, options.concurrency) for r in rates
        ]
        if options.max_duration > 0:
            plan.append(("max", None, options.max_duration, options.max_concurrency))
        for label, rate, duration, concurrency in plan:
            for path in ("notiflow", "baseline"):
                print(f"  {label:<7} {path:<9}", end=" ", flush=True)
                profiler = None
                if options.py_spy and path == "notiflow" and rate == profile_at and server.proc:
                    out = Path(options.profile_out or workdir / "server.pyspy.txt")
                    profiler = Profiler(options.py_spy, out, server.proc.pid, duration)
                    keep_workdir = options.profile_out is None
                phase = await bench.run_phase(
                    path, label, rate, duration, concurrency, profiler.start if profiler else None
                )
                if profiler is not None:
                    profile = await profiler.summary()
                    if profile:
                        profile["raw_stacks"] = str(profiler.out)
                phases.append(phase)
                row = phase.summary(bench.subscribed)
                lat = row.get("latency_ms", {})
                print(
                    f"{row['achieved_rate']:7.0f}/s delivered {row['delivered_ratio']:.1%} "
                    f"p50 {lat.get('p50', 0):.2f} p99 {lat.get('p99', 0):.2f} ms",
                    flush=True,
                )
        rows = [phase.summary(bench.subscribed) for phase in phases]
        breakdown: list[dict[str, Any]] = []
        if options.breakdown > 0:
            print(f"  one request at a time, {options.breakdown} per case ...", flush=True)
            await wait_for_quiet(options.wait_quiet, options.quiet_threshold)
            breakdown = await bench.breakdown(options.breakdown)
        print_table(rows)

        compared = ratios(rows)
        print("\nbaseline / notiflow (p99 < 1.0x: notiflow slower; rate > 1.0x: baseline faster):")
        for item in compared:
            p99_text = f"{item['p99_ratio']:.3f}x" if item["p99_ratio"] else "-"
            rate_text = f"{item['rate_ratio']:.2f}x" if item["rate_ratio"] else "-"
            print(
                f"  {item['phase']:<7} p99 {item['baseline_p99_ms'] or 0:7.2f} / "
                f"{item['notiflow_p99_ms'] or 0:7.2f} ms = {p99_text:>7}   rate {rate_text}"
            )
        sizes = {path: len(sample) for path, sample in bench.samples.items()}
        print(
            f"\nframe bytes: NotificationCreated from notiflow {sizes.get('notiflow', 0)}, "
            f"baseline {sizes.get('baseline', 0)}; notiflow also sends UnreadCountChanged per "
            "send (counted in the 'other' events)"
        )
        try:
            evidence = await unread_count_cost(bench)
        except (asyncpg.PostgresError, OSError) as error:  # the schema may have moved on
            evidence = {"error": repr(error), "plan": [], "deliveries": []}
            evidence |= {"notification_rows": 0, "execution_ms": None}
        print(
            "per-send unread count query (UnreadCountChanged) on the "
            f"{evidence['notification_rows']:,} rows left: {evidence['execution_ms']} ms "
            "(EXPLAIN ANALYZE: "
            + "; ".join(line.strip(" ->") for line in evidence["plan"][:3]).replace("  ", " ")[:160]
            + ")"
        )
        for item in evidence["deliveries"]:
            print(
                f"ledger: {item['n']:,} {item['channel']} deliveries {item['status']}"
                + (f" ({item['why']})" if item["why"] else "")
            )
        if breakdown:
            print(
                f"\nwhere one request's time goes (one at a time, {bench.subscribed} subscribers; "
                "server CPU includes background work it triggers):"
            )
            print(
                f"  {'case':<46} {'http p50':>8} {'p99':>6} {'event p50':>9} {'p99':>6} "
                f"{'server CPU':>10} {'pg CPU':>6}"
            )
            for item in breakdown:
                bad = item["unexpected_status"]
                event = item["event_ms"]
                event_text = f"{event['p50']:>9.2f} {event['p99']:>6.2f}" if event else f"{'-':>16}"
                print(
                    f"  {item['case']:<46} {item['wall_ms']['p50']:>8.2f} "
                    f"{item['wall_ms']['p99']:>6.2f} {event_text} {item['server_cpu_ms']:>10.2f} "
                    f"{item['pg_cpu_ms']:>6.2f}" + (f"  ({bad} unexpected status)" if bad else "")
                )
            print("  (ms per request; event = send -> WebSocket frame)")
        if profile:
            print(
                f"\nserver profile (py-spy, {profile['samples']} samples, notiflow at "
                f"{profile_at:g}/s; raw stacks in {profile['raw_stacks']}): share of samples"
            )
            for kind, share in profile["kinds"]:
                print(f"  {share:6.1%}  {kind}")
            print("  notiflow functions (inclusive):")
            for name, share in profile["notiflow_functions"]:
                print(f"  {share:6.1%}  {name[:100]}")
        notes = client_notes(rows)
        for note in notes:
            print(f"NOTE: {note}")
        if not any("client-bound" in note for note in notes):
            worst = max((row.get("client_cpu", 0.0) for row in rows), default=0.0)
            print(f"load generator: at most {worst:.0%} of its core in any phase (not the limit)")
        result = verdict(rows)
        result["baseline"] = verdict(rows, "baseline")
        if result["measured"]:
            print(
                f"\ntarget: end-to-end send -> event p99 < {TARGET_P99_MS:g} ms "
                f"at {TARGET_RATE:,}/s:"
            )
            for path, item in (("notiflow", result), ("baseline", result["baseline"])):
                why = []
                if not item["rate_ok"]:
                    why.append(f"achieved only {item['achieved_rate']:.0f}/s")
                if not item["delivered_ok"]:
                    why.append(f"delivered {item['delivered_ratio']:.2%}")
                print(
                    f"  {path:<9} p99 {item['p99_ms'] or 0:8.2f} ms "
                    f"at {item['achieved_rate']:5.0f}/s"
                    f"  {'PASS' if item['passed'] else 'FAIL'}"
                    + (f" ({'; '.join(why)})" if why else "")
                    + ("" if path == "notiflow" else "  (the bare live-event path, for reference)")
                )
        else:
            print(f"\ntarget not measured (add {TARGET_RATE} to --rates)")
        payload = {
            "bench": "e2e_latency",
            "options": vars(options),
            "machine": {
                "cpus": os.cpu_count(),
                "pinned": cpus,
                "python": sys.version.split()[0],
                "loadavg_at_end": os.getloadavg(),
            },
            "revision": revision,
            "rows": rows,
            "breakdown": breakdown,
            "ratios": compared,
            "target": result,
            "frame_bytes": sizes,
            "unread_count_query": evidence,
            "profile": profile,
            "client_notes": notes,
        }
        print(f"BENCH_JSON {json.dumps(payload, default=str, sort_keys=True)}")
        if options.json:
            await asyncio.to_thread(write_json, Path(options.json), payload)
        return 0
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("\ninterrupted: stopping the server and dropping the database", file=sys.stderr)
        raise
    except BaseException:
        keep_workdir = True
        print(f"\nserver log: {server.log}\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if bench is not None:
            await bench.close()
        await server.stop()
        await drop_database(database)
        if not keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--connections", type=int, default=50, help="WebSocket connections on the channel")
    add("--rates", default="100,500,1000", help="comma list of sends per second")
    add("--duration", type=float, default=5.0, help="seconds per rate and path")
    add("--concurrency", type=int, default=32, help="max in-flight sends at a fixed rate")
    add("--max-concurrency", type=int, default=16, help="workers in the max-rate phase")
    add("--max-duration", type=float, default=3.0, help="seconds of max rate (0: skip)")
    add("--warmup", type=float, default=1.0, help="seconds of warm-up at 100/s per path")
    add("--drain", type=float, default=5.0, help="max seconds to wait for late events")
    add("--wait-quiet", type=float, default=30.0, help="max seconds to wait for an idle machine")
    add("--quiet-threshold", type=float, default=0.15, help="busiest-core fraction that is idle")
    add(
        "--sweep-interval",
        type=float,
        default=3600.0,
        help="NOTIFLOW_SWEEP_INTERVAL_SECONDS of the server: retries of push deliveries that "
        "failed (e.g. no push sender configured) come back through the sweeper 15-60 s after "
        "each send; with notiflow's default 30 s they land in later phases as bursts",
    )
    add("--no-pin", dest="pin", action="store_false", help="do not pin server and load CPUs")
    add("--http-client", choices=("raw", "httpx"), default="raw", help="the load's HTTP client")
    add("--breakdown", type=int, default=200, help="requests per case, one at a time (0: skip)")
    add("--py-spy", help="py-spy binary: profile the server at the highest notiflow rate")
    add("--profile-out", help="where py-spy's raw stacks go (default: the run's temp dir)")
    add("--json", help="also write every figure to this file")
    return parser.parse_args(argv)


if __name__ == "__main__":
    import uvloop

    try:
        sys.exit(uvloop.run(main(parse_args())))
    except (asyncio.CancelledError, KeyboardInterrupt):
        sys.exit(130)
