"""Fault drill: a whole scale-out notiflow under real faults and hostile clients, one row a fault.

The drill owns everything it breaks: a PostgreSQL cluster (``pg_createcluster``), a
``redis-server`` and an SMTP sink (aiosmtpd), each on a free port (tests/fault_servers.py and
tests/delivery/conftest.py; the machine's shared PostgreSQL and Redis are never touched). On them
it runs ``notiflow api``, two ``notiflow worker``, ``notiflow scheduler`` and two ``notiflow
realtime`` nodes as child processes, and injects each fault under load:

  redis-outage-1s/15s/5m  clients on both nodes (one private channel, some in a presence
                          channel) get events published through the API (Pusher HTTP API, the
                          PyPI SDK) and as client events through each node; Redis is killed and
                          started again empty. Counted: deliveries before and after (lost /
                          duplicated), clients hearing API events again within --settle s of
                          Redis' return, presence rebuilt, an email through the job queue after.
  postgres-outage         a few sends a second with Idempotency-Keys; PostgreSQL stopped
                          (immediate); the client retries 5xx with the same key. Counted: answers
                          by status and code (503 expected, 500 a defect), each notification's
                          email at the sink (lost / duplicated).
  smtp-outage             the SMTP sink stopped for longer than the first retries: every email
                          arrives exactly once (within the retry horizon).
  login-flood             8 concurrent wrong-password loops: GET /api/v1/user p50/p99 against a
                          baseline measured just before, 429 count.
  fragment-flood          one client sends a message in 30,000 one-byte fragments; another
                          client's event latency on the same node against a baseline.
  slow-readers            20 raw sockets that never read, subscribed to a channel that gets
                          ~5 MB each: still connected after the grace period? node RSS.
  connection-storm        N clients (64 handshakes in flight) on one node, each subscribing its
                          own private channel: subscription_succeeded / error / no answer, and
                          the errors the node logged.
  sigterm                 SIGTERM to every process after the faults: exit codes (0 expected).

recovered-without-restart: the drill never restarts a notiflow process during a scenario; after
each fault it reports whether every process is alive and healthy (the API's /health is ok, each
realtime node answers a new private subscription, and its /health when it has one). A scenario
that leaves a process unhealthy gets the stack restarted before the next one (said in its notes),
so each row measures its own fault.

Run from the repository root::

    .venv/bin/python bench/fault_drill.py --quick          # ~4 min (~10 on a busy machine)
    .venv/bin/python bench/fault_drill.py                  # full: ~25 min
    .venv/bin/python bench/fault_drill.py --quick --scenario login-flood

Quick mode shortens outages (Redis 1/5/15 s for the 1s/15s/5m rows, PostgreSQL 10 s, SMTP 15 s),
uses 50 clients a node and 500 in the storm, and scales the email retry horizon down to 30 s.
Full mode: Redis 1 s / 15 s / 5 min, PostgreSQL 5 min, SMTP 2 min with a 600 s horizon
(``--email-horizon``; the default hour would keep the drill waiting for an hour), 250 clients a
node, 5,000 in the storm. The last line is ``BENCH_JSON {...}`` with every figure.
"""

# ruff: noqa: E402, ASYNC109, ASYNC110 - the test helpers are imported after putting the
# repository root on sys.path; small polling helpers with timeouts, as in tests/

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import resource
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))  # tests/ holds the fault servers and process helpers

import httpx
import pusher
from picows import WSListener, WSMsgType, WSTransport, ws_connect
from pusher.http import process_response
from tests.delivery.conftest import SmtpServer
from tests.delivery.processes import NotiflowProcess, free_port, notiflow_env
from tests.fault_servers import OwnPostgres, OwnRedis

from _common import emit_json, git_revision, machine_info, note_load, percentile, print_table
from notiflow.realtime.signing import channel_auth
from ws_fanout import cpu_seconds

HOST = "127.0.0.1"
APP_ID, APP_KEY = "1", "drill-key"
BUS = "private-drill-bus"  # every redis-outage client listens here
PRESENCE = "presence-drill"
SLOW_CHANNEL = "drill-slow"
OWNER_EMAIL = "owner@drill.example"
OWNER_PASSWORD = "drill-password-" + secrets.token_hex(8)
# Events sent this close before Redis is killed are in flight: counted neither lost nor received.
IN_FLIGHT_SECONDS = 0.1
# Requests in flight to the API from the drill's senders (the connections of its HTTP client).
SEND_CONNECTIONS = 100
# Log markers of the defects the issue describes (counted per process and scenario).
MARKERS = (
    "realtime_task_failed",
    "MaxConnectionsError",
    "realtime_backplane_reader_failed",
    "Exception found while listening",
    "Traceback",
)
SCENARIOS = (
    "redis-outage-1s",
    "redis-outage-15s",
    "redis-outage-5m",
    "postgres-outage",
    "smtp-outage",
    "login-flood",
    "fragment-flood",
    "slow-readers",
    "connection-storm",
    "sigterm",
)


# ============================================================================ options


@dataclass
class Plan:
    """Sizes and durations of one drill run (quick or full, then the command line's overrides)."""

    quick: bool
    redis_outages: dict[str, float]
    postgres_outage: float
    smtp_outage: float
    email_horizon: float
    emails: int
    clients_per_node: int
    storm_clients: int
    storm_window: int
    settle: float
    flood_seconds: float
    send_rate: float
    extra_env: dict[str, str] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(
        description="Inject faults into a scale-out notiflow of the drill's own and count what "
        "was lost, duplicated and recovered without a restart.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios: " + ", ".join(SCENARIOS),
    )
    add = parser.add_argument
    add("--quick", action="store_true", help="short outages, fewer clients (a few minutes)")
    add("--scenario", action="append", choices=SCENARIOS, help="run only these (repeatable)")
    add("--clients-per-node", type=int, help="redis-outage clients on each realtime node")
    add("--storm-clients", type=int, help="connection-storm clients (quick 500, full 5,000)")
    add("--storm-window", type=int, default=64, help="handshakes in flight in the storm")
    add("--postgres-outage", type=float, help="seconds PostgreSQL stays down")
    add("--smtp-outage", type=float, help="seconds the SMTP sink stays down")
    add("--emails", type=int, help="emails sent into the SMTP outage")
    add(
        "--email-horizon",
        type=float,
        help="NOTIFLOW_EMAIL_RETRY_HORIZON_SECONDS (quick 30, full 600)",
    )
    add("--settle", type=float, default=5.0, help="seconds a recovery may take after a fault")
    add(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra NOTIFLOW_<NAME> setting for every process (repeatable)",
    )
    add("--keep-logs", action="store_true", help="keep the processes' logs (path printed)")
    add("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    extra: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set wants NAME=VALUE, got {item!r}")
        extra[name.lower()] = value
    plan = Plan(
        quick=quick,
        redis_outages=(
            {"redis-outage-1s": 1.0, "redis-outage-15s": 5.0, "redis-outage-5m": 15.0}
            if quick
            else {"redis-outage-1s": 1.0, "redis-outage-15s": 15.0, "redis-outage-5m": 300.0}
        ),
        postgres_outage=args.postgres_outage or (10.0 if quick else 300.0),
        smtp_outage=args.smtp_outage or (15.0 if quick else 120.0),
        email_horizon=args.email_horizon or (30.0 if quick else 600.0),
        emails=args.emails or (30 if quick else 200),
        clients_per_node=args.clients_per_node or (50 if quick else 250),
        storm_clients=args.storm_clients or (500 if quick else 5000),
        storm_window=args.storm_window,
        settle=args.settle,
        flood_seconds=8.0 if quick else 30.0,
        send_rate=3.0,
        extra_env=extra,
    )
    return args, plan


# ============================================================================ processes


class Proc:
    """A notiflow child process whose stderr (its JSON log) is copied to a file as it comes."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = logs / f"{name}.log"
        self.process: NotiflowProcess | None = None
        self._drain: threading.Thread | None = None
        self._drained = threading.Event()  # set: copy what is left of the log, then end
        self.exit_code: int | None = None

    async def start(self, ready_url: str | None = None) -> None:
        self.process = NotiflowProcess(self.args, self.env, ready_url)
        await self.process.start(settle=0.5)
        self._drained.clear()
        self._drain = threading.Thread(
            target=_follow,
            args=(self.process.log_path, self.log_path, self._drained),
            daemon=True,
        )
        self._drain.start()

    @property
    def pid(self) -> int:
        assert self.process is not None
        assert self.process.process is not None
        return self.process.process.pid

    @property
    def alive(self) -> bool:
        popen = self.process.process if self.process is not None else None
        return popen is not None and popen.poll() is None

    def cpu(self) -> float:
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return 0.0

    def rss_mib(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def log_mark(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, mark: int) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(mark)
            return log.read().decode(errors="replace")

    def terminate(self, timeout: float = 20.0) -> tuple[int | None, float]:
        """SIGTERM and wait: (exit code or None if it had to be killed, seconds to exit)."""
        assert self.process is not None
        assert self.process.process is not None
        popen = self.process.process
        started = time.monotonic()
        if popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
        try:
            code: int | None = popen.wait(timeout=timeout)
        except Exception:  # subprocess.TimeoutExpired: reported, then killed
            code = None
        took = time.monotonic() - started
        self.stop()
        self.exit_code = code
        return code, took

    def stop(self) -> None:
        if self.process is not None:
            popen = self.process.process
            if popen is not None and popen.poll() is None:
                popen.kill()
                popen.wait()
            if self._drain is not None:
                self._drained.set()
                self._drain.join(timeout=5)
            self.process.stop()


def _follow(source: Path, path: Path, done: threading.Event) -> None:
    """Copy the process's log file (tests/delivery/processes.py keeps one per process) into the
    drill's log folder as it grows, until ``done`` is set and nothing is left to copy."""
    with contextlib.suppress(OSError), source.open("rb") as src, path.open("ab") as log:
        while True:
            chunk = src.read(1 << 16)
            if chunk:
                log.write(chunk)
                log.flush()
            elif done.is_set():
                return
            else:
                time.sleep(0.05)


def log_counts(text: str) -> Counter[str]:
    """Error-level JSON log lines by event, plus the defect markers (a traceback only when it
    is not already inside an error line)."""
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        markers = MARKERS
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                record = {}
            if record.get("level") in ("error", "critical", "exception"):
                event = str(record.get("event"))
                counts[f"error:{event}"] += 1
                markers = tuple(m for m in MARKERS if m != "Traceback" and m not in event)
        for marker in markers:
            if marker in line:
                counts[marker] += 1
    return counts


# ============================================================================ WebSocket clients


class Listener(WSListener):
    """Records drill events (source, sequence number, receive time) and the protocol answers."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.socket_id: asyncio.Future[str] = loop.create_future()
        self.subscriptions: dict[str, asyncio.Future[str]] = {}
        self.presence_count: dict[str, int] = {}
        self.received: list[tuple[float, str, int]] = []
        self.errors: list[str] = []
        self.close_code: int | None = None
        self.disconnected_at: float | None = None

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        message = json.loads(frame.get_payload_as_bytes())
        event = message.get("event")
        if event in ("drill", "client-drill"):
            data = message.get("data")
            if isinstance(data, str):
                data = json.loads(data)
            self.received.append((time.perf_counter(), str(data["src"]), int(data["seq"])))
        elif event == "pusher:connection_established":
            if not self.socket_id.done():
                self.socket_id.set_result(json.loads(message["data"])["socket_id"])
        elif event == "pusher_internal:subscription_succeeded":
            channel = message.get("channel", "")
            if channel.startswith("presence-"):
                data = json.loads(message.get("data") or "{}")
                self.presence_count[channel] = int(data.get("presence", {}).get("count", 0))
            self._answer(channel, "ok")
        elif event == "pusher:subscription_error":
            self._answer(message.get("channel"), f"error {message.get('data')}")
        elif event == "pusher:ping":
            transport.send(WSMsgType.TEXT, b'{"event":"pusher:pong","data":{}}')
        elif event == "pusher:error":
            self.errors.append(json.dumps(message.get("data")))

    def _answer(self, channel: str | None, answer: str) -> None:
        waiting = self.subscriptions.get(channel or "")
        if waiting is None:  # an answer without a channel: the oldest subscription waiting
            waiting = next((f for f in self.subscriptions.values() if not f.done()), None)
        if waiting is not None and not waiting.done():
            waiting.set_result(answer)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.disconnected_at = time.perf_counter()


class Client:
    """One Pusher-protocol connection; private and presence channels signed with the app secret,
    as the application's /broadcasting/auth would."""

    def __init__(self, transport: WSTransport, listener: Listener, node: int, secret: str) -> None:
        self.transport = transport
        self.listener = listener
        self.node = node
        self.secret = secret
        self.socket_id = ""

    @classmethod
    async def open(cls, port: int, node: int, secret: str, timeout: float = 30.0) -> Client:
        url = f"ws://{HOST}:{port}/app/{APP_KEY}?protocol=7&client=drill"
        transport, listener = await asyncio.wait_for(ws_connect(Listener, url), timeout)
        client = cls(transport, cast(Listener, listener), node, secret)
        client.socket_id = await asyncio.wait_for(client.listener.socket_id, timeout)
        return client

    def subscribe(self, channel: str, user_id: str | None = None) -> asyncio.Future[str]:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.listener.subscriptions[channel] = answer
        data: dict[str, str] = {"channel": channel}
        if user_id is not None:
            channel_data = json.dumps({"user_id": user_id, "user_info": {"name": user_id}})
            data["channel_data"] = channel_data
            data["auth"] = channel_auth(APP_KEY, self.secret, self.socket_id, channel, channel_data)
        elif channel.startswith("private-"):
            data["auth"] = channel_auth(APP_KEY, self.secret, self.socket_id, channel)
        self.send({"event": "pusher:subscribe", "data": data})
        return answer

    def send(self, message: dict[str, Any]) -> None:
        if not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, json.dumps(message).encode())

    @property
    def connected(self) -> bool:
        return not self.transport.is_disconnected

    def close(self) -> None:
        if not self.transport.is_disconnected:
            self.transport.disconnect()


async def open_clients(
    count: int, port: int, node: int, secret: str, window: int = 64
) -> list[Client]:
    limiter = asyncio.Semaphore(window)

    async def one() -> Client:
        async with limiter:
            return await Client.open(port, node, secret)

    return list(await asyncio.gather(*(one() for _ in range(count))))


# ============================================================================ the stack


class HttpxBackend:
    """The pusher SDK's request signing, sent over one keep-alive httpx client (the SDK's own
    asyncio backend opens a new session per request)."""

    def __init__(self, client: Any, http: httpx.AsyncClient) -> None:
        self.client = client
        self.http = http

    async def send_request(self, request: Any) -> Any:
        response = await self.http.request(
            request.method,
            f"{request.base_url}{request.path}",
            params=request.query_params,
            content=request.body,
            headers=request.headers,
        )
        return process_response(response.status_code, response.text)


@dataclass
class Health:
    healthy: bool
    detail: dict[str, str]

    def text(self) -> str:
        if self.healthy:
            return f"yes ({len(self.detail)}/{len(self.detail)})"
        bad = [f"{name}: {state}" for name, state in self.detail.items() if state != "ok"]
        return "NO (" + "; ".join(bad) + ")"


class Stack:
    """The drill's own servers and notiflow processes, and clients to talk to them."""

    def __init__(self, plan: Plan, logs: Path) -> None:
        self.plan = plan
        self.logs = logs
        self.postgres = OwnPostgres()
        self.redis = OwnRedis()
        self.smtp = SmtpServer()
        self.api_port = free_port()
        self.ws_ports = [free_port(), free_port()]
        self.health_ports = [free_port(), free_port()]  # `notiflow realtime --http-port`
        self.http_port_option = (
            "--http-port" in NotiflowProcess([], {}).run("realtime", "--help").stdout
        )
        self.pusher_secret = secrets.token_urlsafe(24)
        self.procs: dict[str, Proc] = {}
        self.env: dict[str, str] = {}
        self.owner_token = ""
        self.owner_id = ""
        self.http: httpx.AsyncClient | None = None
        self.health_http: httpx.AsyncClient | None = None
        self.publish_http: httpx.AsyncClient | None = None
        self.pusher: Any = None
        self.generation = 0
        self._sequence = 0

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _start(self) -> None:
        self.postgres.__enter__()
        self.redis.__enter__()
        self.smtp.start()
        settings: dict[str, str] = {
            "env": "test",
            "secret_key": secrets.token_urlsafe(32),
            "pusher_app_key": APP_KEY,
            "pusher_app_secret": self.pusher_secret,
            "database_url": self.postgres.url,
            "redis_url": self.redis.url,
            "smtp_host": self.smtp.host,
            "smtp_port": str(self.smtp.port),
            "smtp_timeout_seconds": "5",
            "public_url": self.api_url,
            "pusher_port": str(self.api_port),
            "ws_port": str(self.ws_ports[0]),
            "log_level": "INFO",
            "email_retry_horizon_seconds": str(self.plan.email_horizon),
            "mail_from": "notiflow drill <drill@notiflow.example>",
        }
        if self.plan.quick:  # the retries of this era's email path, scaled like the horizon
            settings.update(sweep_interval_seconds="1", delivery_backoff_seconds="1")
        settings.update(self.plan.extra_env)
        self.env = notiflow_env(**settings)
        tool = NotiflowProcess([], self.env)
        for command in (
            ["db", "upgrade"],
            [
                "users",
                "create",
                "--tenant",
                "drill",
                "--email",
                OWNER_EMAIL,
                "--role",
                "owner",
                "--password",
                OWNER_PASSWORD,
                "--with-token",
            ],
        ):
            done = tool.run(*command)
            if done.returncode != 0:
                raise SystemExit(f"notiflow {' '.join(command)} failed: {done.stderr[-2000:]}")
        created = json.loads(done.stdout)
        self.owner_token, self.owner_id = created["token"], created["user_id"]
        self.http = httpx.AsyncClient(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self.owner_token}"},
            timeout=30,
            limits=httpx.Limits(max_connections=SEND_CONNECTIONS),
        )
        # Sends wait for one of the client's connections here, not in httpx's pool: with a
        # thousand retrying senders httpx's queue of waiters costs the drill's own CPU (each
        # freed connection scans it) and its timeout would count the wait.
        self.send_slots = asyncio.Semaphore(SEND_CONNECTIONS)
        self.health_http = httpx.AsyncClient(base_url=self.api_url, timeout=5)
        self.publish_http = httpx.AsyncClient(timeout=5)
        self.pusher = pusher.Pusher(
            app_id=APP_ID,
            key=APP_KEY,
            secret=self.pusher_secret,
            ssl=False,
            host=HOST,
            port=self.api_port,
            timeout=5,
            backend=HttpxBackend,
            http=self.publish_http,
        )
        await self.start_processes()

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs.values():
            proc.stop()
        for client in (self.http, self.health_http, self.publish_http):
            if client is not None:
                await client.aclose()
        self.smtp.stop()
        self.redis.__exit__(None, None, None)
        self.postgres.__exit__(None, None, None)

    async def start_processes(self) -> None:
        self.generation += 1
        suffix = f"-{self.generation}" if self.generation > 1 else ""
        specs: list[tuple[str, list[str]]] = [
            ("api", ["api", "--port", str(self.api_port)]),
            ("worker-1", ["worker", "--concurrency", "8"]),
            ("worker-2", ["worker", "--concurrency", "8"]),
            ("scheduler", ["scheduler"]),
            ("realtime-1", ["realtime", "--port", str(self.ws_ports[0])]),
            ("realtime-2", ["realtime", "--port", str(self.ws_ports[1])]),
        ]
        if self.http_port_option:  # older nodes serve no /health
            for node, (_, args) in enumerate(specs[-2:]):
                args += ["--http-port", str(self.health_ports[node])]
        self.procs = {}
        for name, args in specs:
            proc = Proc(name + suffix, args, self.env, self.logs)
            ready = f"{self.api_url}/health" if name == "api" else None
            await proc.start(ready)
            self.procs[name] = proc
        for node in (0, 1):  # a node is ready when it answers a subscription
            deadline = time.monotonic() + 30
            while await self.node_answers(node) != "ok":
                if time.monotonic() > deadline:
                    raise SystemExit(f"realtime node {node + 1} never answered")
                await asyncio.sleep(0.3)

    def stop_processes(self) -> None:
        for proc in self.procs.values():
            proc.terminate(timeout=10)

    async def restart_processes(self) -> None:
        self.stop_processes()
        await self.start_processes()

    # ----------------------------------------------------------------- probes

    async def node_answers(self, node: int, timeout: float = 5.0) -> str:
        """ "ok" when a new client on the node gets a private subscription answered and then an
        event published through the API; else what went wrong."""
        try:
            client = await Client.open(self.ws_ports[node], node, self.pusher_secret, timeout)
        except (OSError, TimeoutError):
            return "refuses connections"
        channel = f"private-drill-probe.{secrets.token_hex(4)}"
        try:
            try:
                answer = await asyncio.wait_for(client.subscribe(channel), timeout)
            except TimeoutError:
                return "deaf (a new subscription got no answer)"
            if answer != "ok":
                return f"subscription refused: {answer[:60]}"
            seq = self.next_sequence()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                await self.publish(channel, {"src": "probe", "seq": seq})
                await asyncio.sleep(0.3)
                if any(got == seq for _, _, got in client.listener.received):
                    return "ok"
            return f"deaf (no event from the API within {timeout:g} s)"
        finally:
            client.close()

    async def node_health(self, node: int) -> str | None:
        """The node's /health answer, if it serves one (None when it does not)."""
        if not self.http_port_option:
            return None
        try:
            async with httpx.AsyncClient(timeout=3) as probe:
                response = await probe.get(f"http://{HOST}:{self.health_ports[node]}/health")
        except httpx.HTTPError as error:
            return f"/health {type(error).__name__}"
        if "json" not in response.headers.get("content-type", ""):
            return f"/health {response.status_code}"
        status = response.json().get("status", "?")
        return "ok" if response.status_code == 200 and status == "ok" else f"health {status}"

    async def health(self) -> Health:
        detail: dict[str, str] = {}
        for name, proc in self.procs.items():
            if not proc.alive:
                detail[name] = "exited"
                continue
            detail[name] = "ok"
            if name == "api":
                assert self.health_http is not None
                try:
                    response = await self.health_http.get("/health")
                    if response.status_code != 200:
                        detail[name] = f"health {response.status_code} {response.text[:80]}"
                except httpx.HTTPError as error:
                    detail[name] = f"health {type(error).__name__}"
            elif name.startswith("realtime-"):
                node = int(name[-1]) - 1
                answer = await self.node_answers(node)
                if answer != "ok":
                    detail[name] = answer
                else:
                    served = await self.node_health(node)
                    if served not in (None, "ok"):
                        detail[name] = served
        return Health(all(state == "ok" for state in detail.values()), detail)

    async def wait_healthy(self, timeout: float) -> tuple[Health, float]:
        started = time.monotonic()
        while True:
            health = await self.health()
            if health.healthy or time.monotonic() - started > timeout:
                return health, time.monotonic() - started
            await asyncio.sleep(0.5)

    def log_marks(self) -> dict[str, int]:
        return {name: proc.log_mark() for name, proc in self.procs.items()}

    def log_counts_since(self, marks: dict[str, int]) -> dict[str, Counter[str]]:
        return {
            name: counts
            for name, proc in self.procs.items()
            if (counts := log_counts(proc.log_since(marks.get(name, 0))))
        }

    # ----------------------------------------------------------------- actions

    async def publish(self, channel: str, data: dict[str, Any], event: str = "drill") -> bool:
        try:
            await self.pusher.trigger(channel, event, data)
        except Exception:  # any failure of a publish is counted, not raised
            return False
        return True

    async def send_email(
        self, title: str, key: str | None = None, timeout: float = 30.0
    ) -> tuple[int, str]:
        """POST /notifications/send (in-app + email to the owner): (status, error code)."""
        assert self.http is not None
        headers = {"Idempotency-Key": key} if key else {}
        try:
            async with self.send_slots:
                response = await self.http.post(
                    "/api/v1/notifications/send",
                    headers=headers,
                    timeout=timeout,
                    json={
                        "user_ids": [self.owner_id],
                        "type": "system_announcement",
                        "title": title,
                        "message": f"{title}: a notification of the fault drill",
                        "channels": ["in_app", "email"],
                    },
                )
        except httpx.HTTPError as error:
            return 0, type(error).__name__
        code = ""
        if response.status_code >= 400:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                code = str(response.json()["error"]["code"])
        return response.status_code, code

    def emails_by_subject(self, prefix: str) -> Counter[str]:
        return Counter(
            str(mail.message["Subject"])
            for mail in list(self.smtp.received)
            if str(mail.message["Subject"]).startswith(prefix)
        )

    async def wait_emails(self, subjects: set[str], timeout: float) -> float | None:
        """Seconds until every subject arrived at the sink (None: not within ``timeout``)."""
        started = time.monotonic()
        prefix = min(subjects, key=len).rsplit(" ", 1)[0] if subjects else ""
        while time.monotonic() - started < timeout:
            if subjects <= set(self.emails_by_subject(prefix)):
                return time.monotonic() - started
            await asyncio.sleep(0.25)
        return None


# ============================================================================ results


@dataclass
class Row:
    scenario: str
    sent: int | str
    received: int | str
    lost: int | str
    duplicated: int | str
    recovered: str
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[Any]:
        return [self.scenario, self.sent, self.received, self.lost, self.duplicated, self.recovered]


def errors_note(counts: dict[str, Counter[str]]) -> str:
    if not counts:
        return "no error logged"
    parts = []
    for name, counter in counts.items():
        parts.append(name + " " + ", ".join(f"{k} x{v}" for k, v in counter.most_common(4)))
    return "logged: " + "; ".join(parts)


async def every(rate: float, until: Callable[[], bool], action: Callable[[int], Any]) -> int:
    """Call ``action(i)`` (a coroutine is run as its own task) ``rate`` times a second."""
    started = time.perf_counter()
    tasks: set[asyncio.Task[Any]] = set()
    index = 0
    while not until():
        delay = started + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        result = action(index)
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        index += 1
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    return index


# ============================================================================ redis outages


@dataclass
class Sent:
    src: str
    seq: int
    at: float


async def redis_outage(stack: Stack, scenario: str, outage: float) -> Row:
    plan = stack.plan
    secret = stack.pusher_secret
    per_node = plan.clients_per_node
    present = min(per_node, 40)  # presence members per node (the default limit is 100)
    clients: list[Client] = []
    for node in (0, 1):
        opened = await open_clients(per_node, stack.ws_ports[node], node, secret)
        clients += opened
    answers = [client.subscribe(BUS) for client in clients]
    members: dict[str, Client] = {}
    for node in (0, 1):
        for index, client in enumerate(c for c in clients if c.node == node):
            if index < present:
                user = f"member-{node}-{index}"
                members[user] = client
                answers.append(client.subscribe(PRESENCE, user))
    publishers = [await Client.open(stack.ws_ports[node], node, secret) for node in (0, 1)]
    answers += [p.subscribe(BUS) for p in publishers]
    results = Counter(await asyncio.gather(*(asyncio.wait_for(a, 30) for a in answers)))
    if set(results) != {"ok"}:
        raise RuntimeError(f"{scenario}: subscriptions before the fault: {dict(results)}")

    sent: list[Sent] = []
    failed_publishes = 0
    phase = {"stop": 0.0, "start": 0.0, "end": 0.0}
    done = asyncio.Event()

    async def api_event(index: int) -> None:
        nonlocal failed_publishes
        seq = stack.next_sequence()
        at = time.perf_counter()
        if await stack.publish(BUS, {"src": "api", "seq": seq}):
            sent.append(Sent("api", seq, at))
        else:
            failed_publishes += 1

    def client_event(index: int) -> None:
        publisher = publishers[index % 2]
        if not publisher.connected:
            return
        seq = stack.next_sequence()
        src = f"node-{publisher.node + 1}"
        publisher.send({"event": "client-drill", "channel": BUS, "data": {"src": src, "seq": seq}})
        sent.append(Sent(src, seq, time.perf_counter()))

    worker_cpu = {n: p.cpu() for n, p in stack.procs.items() if n.startswith("worker")}
    marks = stack.log_marks()

    async def timeline() -> None:
        await asyncio.sleep(5.0)
        phase["stop"] = time.perf_counter()
        stack.redis.stop()
        await asyncio.sleep(outage)
        stack.redis.start()
        phase["start"] = time.perf_counter()
        await asyncio.sleep(plan.settle + 10.0)
        phase["end"] = time.perf_counter()
        done.set()

    runner = asyncio.create_task(timeline())
    await asyncio.gather(
        every(5.0, done.is_set, api_event),
        every(4.0, done.is_set, client_event),  # 2/s per node, under the client-event limit
    )
    await runner
    await asyncio.sleep(1.0)  # the last events in flight
    worker_cpu_used = sum(stack.procs[n].cpu() - before for n, before in worker_cpu.items())

    # Who should have got what: every client but an event's own publisher. An event sent in the
    # last IN_FLIGHT_SECONDS before the kill may reach its node after Redis died (client events
    # tick at the same moments as the kill): it is in flight, counted neither way.
    must_arrive = [
        s
        for s in sent
        if s.at < phase["stop"] - IN_FLIGHT_SECONDS or s.at >= phase["start"] + plan.settle
    ]
    missed: Counter[tuple[str, int]] = Counter()
    during = [s for s in sent if phase["stop"] <= s.at < phase["start"]]
    lost = duplicated = received = 0
    same_node_during = [0, 0]  # delivered, expected: client events to clients on their own node
    recovered_clients = 0
    recovery_times: list[float] = []
    for client in clients:
        got = Counter((src, seq) for _, src, seq in client.listener.received)
        received += sum(got.values())
        duplicated += sum(n - 1 for n in got.values() if n > 1)
        for s in must_arrive:
            if (s.src, s.seq) not in got:
                lost += 1
                missed[(s.src, s.seq)] += 1
        for s in during:
            if s.src == f"node-{client.node + 1}":
                same_node_during[1] += 1
                same_node_during[0] += (s.src, s.seq) in got
        after = [
            at for at, src, seq in client.listener.received if src == "api" and at >= phase["start"]
        ]
        if after:
            recovery_times.append(min(after) - phase["start"])
            recovered_clients += min(after) - phase["start"] <= plan.settle
    disconnected = sum(not c.connected for c in clients)

    presence = "?"
    try:
        users = await stack.pusher.users_info(PRESENCE)
        presence = f"{len(users.get('users', []))}/{len(members)} members via the HTTP API"
    except Exception as error:  # reported in the row
        presence = f"users_info failed: {type(error).__name__}"
    probe_counts = []
    for node in (0, 1):
        try:
            probe = await Client.open(stack.ws_ports[node], node, secret, 5)
            answer = await asyncio.wait_for(probe.subscribe(PRESENCE, f"probe-{node}"), 5)
            probe_counts.append(
                str(probe.listener.presence_count.get(PRESENCE, "?")) if answer == "ok" else answer
            )
            probe.close()
        except (OSError, TimeoutError):
            probe_counts.append("no answer")
    email_title = f"drill {scenario} after {stack.next_sequence()}"
    status, _ = await stack.send_email(email_title)
    email_after = await stack.wait_emails({email_title}, 60) if status == 202 else None
    health, _ = await stack.wait_healthy(plan.settle)
    logged = stack.log_counts_since(marks)
    for client in [*clients, *publishers]:
        client.close()

    sent_at = {(s.src, s.seq): s.at for s in sent}
    missed_notes = [
        f"{src} #{seq} missed by {count} clients, sent {sent_at[(src, seq)] - phase['stop']:+.3f} s"
        f" from the kill, {sent_at[(src, seq)] - phase['start']:+.3f} s from the return"
        for (src, seq), count in missed.most_common(5)
    ]
    expected_after = len(clients)
    max_recovery = f"{max(recovery_times):.1f} s" if recovery_times else "never"
    notes = [
        f"outage {outage:g} s",
        f"{recovered_clients}/{expected_after} clients heard API events within "
        f"{plan.settle:g} s of Redis' return (slowest {max_recovery})",
        f"presence {presence}; a new member sees {'/'.join(probe_counts)} (expect "
        f"{len(members) + 1})",
        f"same-node client events during the outage {same_node_during[0]}/{same_node_during[1]}",
        f"email after: {f'{email_after:.1f} s' if email_after is not None else 'NOT delivered'}",
        f"publishes refused {failed_publishes}, clients disconnected {disconnected}",
        f"worker CPU {worker_cpu_used:.1f} s over the scenario",
        *missed_notes,
        errors_note(logged),
    ]
    return Row(
        scenario,
        len(sent),
        received,
        lost,
        duplicated,
        health.text(),
        notes,
        {
            "outage_s": outage,
            "sent_events": len(sent),
            "must_arrive_events": len(must_arrive),
            "clients": len(clients),
            "recovered_clients": recovered_clients,
            "recovery_s": recovery_times and max(recovery_times),
            "same_node_during": same_node_during,
            "presence": presence,
            "presence_probe": probe_counts,
            "email_after_s": email_after,
            "worker_cpu_s": round(worker_cpu_used, 2),
            "health": health.detail,
            "logged": {k: dict(v) for k, v in logged.items()},
        },
    )


# ============================================================================ postgres, smtp


def email_row(
    scenario: str,
    expected: set[str],
    got: Counter[str],
    health: Health,
    notes: list[str],
    detail: dict[str, Any],
) -> Row:
    """A row counted at the SMTP sink: one email a notification, told apart by subject."""
    return Row(
        scenario,
        len(expected),
        sum(got.values()),
        len(expected - set(got)),
        sum(n - 1 for n in got.values() if n > 1),
        health.text(),
        notes,
        detail,
    )


async def postgres_outage(stack: Stack) -> Row:
    plan = stack.plan
    run_id = secrets.token_hex(3)
    statuses: Counter[str] = Counter()
    accepted: set[str] = set()
    gave_up: list[str] = []
    latencies: list[float] = []
    stop_sending = asyncio.Event()

    async def one(index: int) -> None:
        title = f"drill pg {run_id} {index:05d}"
        key = f"drill-{run_id}-{index}"
        started = time.perf_counter()
        deadline = started + plan.postgres_outage + 120
        while time.perf_counter() < deadline:
            status, code = await stack.send_email(title, key, timeout=30)
            statuses[f"{status} {code}".strip()] += 1
            if status == 202:
                accepted.add(title)
                latencies.append(time.perf_counter() - started)
                return
            if status and status < 500 and status != 429:
                break
            await asyncio.sleep(1.0)
        gave_up.append(title)

    marks = stack.log_marks()

    async def timeline() -> float:
        await asyncio.sleep(5.0)
        stopped = time.monotonic()
        stack.postgres.stop()
        await asyncio.sleep(plan.postgres_outage)
        stack.postgres.start()
        down = time.monotonic() - stopped
        await asyncio.sleep(10.0)
        stop_sending.set()
        return down

    runner = asyncio.create_task(timeline())
    attempts = await every(plan.send_rate, stop_sending.is_set, one)
    down = await runner
    arrived_in = await stack.wait_emails(accepted, plan.email_horizon * 1.3 + 60)
    await asyncio.sleep(2.0)  # a duplicate would show up now
    got = stack.emails_by_subject(f"drill pg {run_id}")
    health, _ = await stack.wait_healthy(plan.settle)
    logged = stack.log_counts_since(marks)
    five_xx = {k: v for k, v in statuses.items() if k[:1] == "5" or k.startswith("0 ")}
    notes = [
        f"PostgreSQL down {down:.0f} s, {plan.send_rate:g} sends/s, retried with the same key",
        "answers " + ", ".join(f"{k} x{v}" for k, v in sorted(statuses.items())),
        f"5xx/transport {dict(five_xx) or 'none'}",
        f"sends that never got 202: {len(gave_up)}",
        f"slowest send to 202 {max(latencies):.1f} s" if latencies else "no send accepted",
        f"all emails in {arrived_in:.1f} s" if arrived_in is not None else "emails MISSING",
        errors_note(logged),
    ]
    return email_row(
        "postgres-outage",
        accepted,
        got,
        health,
        notes,
        {
            "attempted": attempts,
            "statuses": dict(statuses),
            "gave_up": len(gave_up),
            "health": health.detail,
            "logged": {k: dict(v) for k, v in logged.items()},
        },
    )


async def smtp_outage(stack: Stack) -> Row:
    plan = stack.plan
    run_id = secrets.token_hex(3)
    marks = stack.log_marks()
    stack.smtp.stop()
    stopped = time.monotonic()
    titles = {f"drill smtp {run_id} {i:05d}" for i in range(plan.emails)}
    refused = 0
    for title in sorted(titles):
        status, _ = await stack.send_email(title)
        refused += status != 202
        await asyncio.sleep(min(0.2, plan.smtp_outage / plan.emails / 2))
    await asyncio.sleep(max(0.0, plan.smtp_outage - (time.monotonic() - stopped)))
    stack.smtp.start()
    down = time.monotonic() - stopped
    arrived_in = await stack.wait_emails(titles, plan.email_horizon * 1.3 + 60)
    await asyncio.sleep(2.0)
    got = stack.emails_by_subject(f"drill smtp {run_id}")
    health, _ = await stack.wait_healthy(plan.settle)
    logged = stack.log_counts_since(marks)
    notes = [
        f"SMTP down {down:.0f} s, email retry horizon {plan.email_horizon:g} s"
        + (" (quick: backoff 1 s, sweep 1 s)" if plan.quick else ""),
        f"sends refused {refused}",
        f"all emails {arrived_in:.0f} s after SMTP returned"
        if arrived_in is not None
        else f"{len(titles - set(got))} emails never arrived "
        f"(waited {plan.email_horizon * 1.3 + 60:.0f} s)",
        errors_note(logged),
    ]
    return email_row(
        "smtp-outage",
        titles,
        got,
        health,
        notes,
        {
            "down_s": down,
            "health": health.detail,
            "logged": {k: dict(v) for k, v in logged.items()},
        },
    )


# ============================================================================ hostile clients


async def login_flood(stack: Stack, loops: int = 8) -> Row:
    seconds = stack.plan.flood_seconds
    assert stack.http is not None
    http = stack.http

    async def user_latencies(seconds: float) -> tuple[list[float], Counter[int]]:
        samples: list[float] = []
        statuses: Counter[int] = Counter()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                status = (await http.get("/api/v1/user")).status_code
            except httpx.HTTPError:
                status = 0
            samples.append((time.perf_counter() - started) * 1000)
            statuses[status] += 1
            await asyncio.sleep(0.02)
        return samples, statuses

    marks = stack.log_marks()
    baseline, _ = await user_latencies(seconds)
    flood = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH_DIR / "_login_flood.py"),
        stack.api_url,
        OWNER_EMAIL,
        str(seconds),
        str(loops),
        stdout=asyncio.subprocess.PIPE,
    )
    assert flood.stdout is not None
    await asyncio.wait_for(flood.stdout.readline(), 60)  # "started"
    flooded, user_statuses = await user_latencies(seconds)
    answer = await asyncio.wait_for(flood.stdout.readline(), 60)
    await flood.wait()
    logins = Counter({int(k): v for k, v in json.loads(answer or b"{}").items()})
    health, _ = await stack.wait_healthy(stack.plan.settle)
    logged = stack.log_counts_since(marks)

    def figures(samples: list[float]) -> str:
        return (
            f"p50 {percentile(samples, 50):.1f} / p99 {percentile(samples, 99):.1f} / "
            f"max {max(samples):.0f} ms"
        )

    notes = [
        f"GET /api/v1/user alone {figures(baseline)}",
        f"during {loops} wrong-password loops {figures(flooded)}",
        "logins " + ", ".join(f"{k} x{v}" for k, v in sorted(logins.items())),
        f"429 x{logins[429]}",
        errors_note(logged),
    ]
    return Row(
        "login-flood",
        sum(logins.values()),
        sum(user_statuses.values()),
        "-",
        "-",
        health.text(),
        notes,
        {
            "baseline_p99_ms": percentile(baseline, 99),
            "flood_p99_ms": percentile(flooded, 99),
            "flood_max_ms": max(flooded),
            "logins": dict(logins),
            "user_statuses": dict(user_statuses),
            "health": health.detail,
        },
    )


async def observed_latencies(
    stack: Stack, observer: Client, channel: str, until: Callable[[], bool]
) -> tuple[list[float], int]:
    """Publish to ``channel`` 20 times a second; the observer's send -> receive latencies (ms)."""
    first = len(observer.listener.received)
    sent_at: dict[int, float] = {}

    async def one(index: int) -> None:
        seq = stack.next_sequence()
        sent_at[seq] = time.perf_counter()
        await stack.publish(channel, {"src": "api", "seq": seq})

    await every(20.0, until, one)
    await asyncio.sleep(1.0)
    received = observer.listener.received[first:]
    latencies = [(at - sent_at[seq]) * 1000 for at, _, seq in received if seq in sent_at]
    missing = len(sent_at) - len({seq for _, _, seq in received if seq in sent_at})
    return latencies, missing


async def fragment_flood(stack: Stack, fragments: int = 30_000) -> Row:
    secret = stack.pusher_secret
    port = stack.ws_ports[0]
    observer = await Client.open(port, 0, secret)
    channel = f"private-drill-observer.{secrets.token_hex(3)}"
    await asyncio.wait_for(observer.subscribe(channel), 10)
    marks = stack.log_marks()
    warm_up = time.perf_counter() + 1
    await observed_latencies(stack, observer, channel, lambda: time.perf_counter() > warm_up)
    deadline = time.perf_counter() + 5
    baseline, _ = await observed_latencies(
        stack, observer, channel, lambda: time.perf_counter() > deadline
    )

    flooder = await Client.open(port, 0, secret)
    flood_started = time.perf_counter()
    flood_end = [flood_started + 60.0]

    async def flood() -> None:
        transport = flooder.transport
        listener = flooder.listener
        transport.send(WSMsgType.TEXT, b"{", fin=False)
        for index in range(fragments - 2):
            if index % 100 == 99:
                await asyncio.sleep(0)  # let the observer's frames and the server's answer in
                if listener.errors or listener.close_code is not None or not flooder.connected:
                    break
            transport.send(WSMsgType.CONTINUATION, b" ", fin=False)
        else:
            transport.send(WSMsgType.CONTINUATION, b"}", fin=True)
        # the server's answer (an error or a close) or 10 s
        wait_until = time.perf_counter() + 10
        while time.perf_counter() < wait_until and not (
            flooder.listener.errors or transport.is_disconnected
        ):
            await asyncio.sleep(0.05)
        flood_end[0] = time.perf_counter() + 2.0

    flooding = asyncio.create_task(flood())
    during, missing = await observed_latencies(
        stack, observer, channel, lambda: time.perf_counter() > flood_end[0]
    )
    await flooding
    outcome = (
        f"closed {flooder.listener.close_code}"
        if flooder.listener.close_code is not None
        else "disconnected"
        if not flooder.connected
        else "still open"
    )
    if flooder.listener.errors:
        outcome += f", pusher:error {flooder.listener.errors[0]}"
    flooder.close()
    observer.close()
    health, _ = await stack.wait_healthy(stack.plan.settle)
    logged = stack.log_counts_since(marks)
    notes = [
        f"{fragments:,} one-byte fragments on node 1; the flooder: {outcome}",
        f"observer latency alone p99 {percentile(baseline, 99):.1f} / max {max(baseline):.0f} ms",
        f"during the flood p99 {percentile(during, 99):.1f} / max {max(during):.0f} ms"
        if during
        else "observer got nothing during the flood",
        errors_note(logged),
    ]
    return Row(
        "fragment-flood",
        len(during) + missing,
        len(during),
        missing,
        0,
        health.text(),
        notes,
        {
            "baseline_max_ms": max(baseline),
            "flood_max_ms": max(during) if during else None,
            "flood_p99_ms": percentile(during, 99) if during else None,
            "outcome": outcome,
            "health": health.detail,
        },
    )


def masked_text_frame(payload: bytes) -> bytes:
    """One client-to-server text frame (clients must mask, RFC 6455 §5.3)."""
    mask = os.urandom(4)
    if len(payload) < 126:
        header = bytes([0x81, 0x80 | len(payload)])
    else:
        header = bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


async def open_slow_reader(port: int, channel: str) -> socket.socket:
    """A raw WebSocket that subscribes ``channel`` and then never reads again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /app/{APP_KEY}?protocol=7&client=drill HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())

    async def read_until(marker: bytes) -> None:
        seen = b""
        while marker not in seen:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            seen += chunk

    await read_until(b"connection_established")
    subscribe = {"event": "pusher:subscribe", "data": {"channel": channel}}
    await loop.sock_sendall(sock, masked_text_frame(json.dumps(subscribe).encode()))
    await read_until(b"subscription_succeeded")
    return sock


def established_from(server_port: int, client_ports: set[int]) -> int:
    """Server-side sockets still ESTABLISHED to these client ports (from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state != "01":
            continue
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) in (
            client_ports
        ):
            count += 1
    return count


async def slow_readers(stack: Stack, count: int = 20) -> Row:
    port = stack.ws_ports[1]
    node = stack.procs["realtime-2"]
    marks = stack.log_marks()
    rss_before = node.rss_mib()
    sockets = [await open_slow_reader(port, SLOW_CHANNEL) for _ in range(count)]
    client_ports = {s.getsockname()[1] for s in sockets}
    pad = "x" * 9000
    # beyond the kernel's send buffer (tcp_wmem up to 4 MB) and the node's 4 MB write cap
    per_client_mb = 12.0
    events = int(per_client_mb * 1024 * 1024 / 9000)
    sent = 0
    rss_peak = rss_before

    batches = 0
    deadline = time.monotonic() + 120
    while sent < events and time.monotonic() < deadline:
        batch = [
            {"channel": SLOW_CHANNEL, "name": "drill", "data": {"src": "api", "seq": i, "pad": pad}}
            for i in range(sent, min(events, sent + 10))
        ]
        batches += 1
        with contextlib.suppress(Exception):  # counted: only what the API took is "sent"
            await stack.pusher.trigger_batch(batch)
            sent += len(batch)
        rss_peak = max(rss_peak, node.rss_mib())
    published_at = time.monotonic()
    grace = 15.0 if stack.plan.quick else 30.0
    still = established_from(port, client_ports)
    while time.monotonic() - published_at < grace:
        rss_peak = max(rss_peak, node.rss_mib())
        still = established_from(port, client_ports)
        if still == 0:
            break
        await asyncio.sleep(0.5)
    disconnected_after = time.monotonic() - published_at
    rss_after_grace = node.rss_mib()
    for sock in sockets:
        sock.close()
    await asyncio.sleep(2.0)
    rss_after_close = node.rss_mib()
    health, _ = await stack.wait_healthy(stack.plan.settle)
    logged = stack.log_counts_since(marks)
    notes = [
        f"{count} clients that never read, {events} events of 9 KB each ({per_client_mb:g} MB)",
        f"still connected {still}/{count} "
        + (
            f"after {grace:g} s"
            if still
            else f"(all disconnected {disconnected_after:.1f} s after the last event)"
        ),
        f"node RSS {rss_before:.0f} MiB before, {rss_peak:.0f} peak, {rss_after_grace:.0f} "
        f"after the grace period, {rss_after_close:.0f} after the clients closed",
        errors_note(logged),
    ]
    return Row(
        "slow-readers",
        sent,
        "-",
        "-",
        "-",
        health.text(),
        notes,
        {
            "still_connected": still,
            "rss_mib": [rss_before, rss_peak, rss_after_grace, rss_after_close],
            "health": health.detail,
        },
    )


async def connection_storm(stack: Stack) -> Row:
    plan = stack.plan
    total = plan.storm_clients
    port = stack.ws_ports[0]
    marks = stack.log_marks()
    limiter = asyncio.Semaphore(plan.storm_window)
    outcomes: Counter[str] = Counter()
    clients: list[Client] = []
    started = time.perf_counter()

    async def one(index: int) -> None:
        async with limiter:
            try:
                client = await Client.open(port, 0, stack.pusher_secret, 30)
            except (OSError, TimeoutError) as error:
                outcomes[f"connect failed: {type(error).__name__}"] += 1
                return
            clients.append(client)
            answer = client.subscribe(f"private-storm.{index}")
        try:
            result = await asyncio.wait_for(answer, 30)
        except TimeoutError:
            result = "no answer in 30 s"
        outcomes["subscribed" if result == "ok" else result[:60]] += 1

    await asyncio.gather(*(one(i) for i in range(total)))
    took = time.perf_counter() - started
    await asyncio.sleep(1.0)
    logged = stack.log_counts_since(marks)
    for client in clients:
        client.close()
    health, _ = await stack.wait_healthy(plan.settle)
    errors = sum(v for k, v in outcomes.items() if k != "subscribed")
    node_errors = sum(logged.get("realtime-1", Counter()).values())
    notes = [
        f"{total:,} clients, {plan.storm_window} handshakes in flight, {took:.1f} s",
        "answers " + ", ".join(f"{k} x{v}" for k, v in outcomes.most_common()),
        errors_note(logged),
    ]
    return Row(
        "connection-storm",
        total,
        outcomes["subscribed"],
        errors,
        "-",
        health.text(),
        notes,
        {"outcomes": dict(outcomes), "node_log": node_errors, "health": health.detail},
    )


async def sigterm(stack: Stack) -> Row:
    codes: dict[str, tuple[int | None, float]] = {}
    marks = stack.log_marks()
    procs = list(stack.procs.items())
    results = await asyncio.gather(*(asyncio.to_thread(proc.terminate, 20.0) for _, proc in procs))
    for (name, _), result in zip(procs, results, strict=True):
        codes[name] = result
    logged = stack.log_counts_since(marks)
    clean = sum(code == 0 for code, _ in codes.values())
    notes = [
        "exit codes "
        + ", ".join(
            f"{name} {'killed after 20 s' if code is None else code} ({took:.1f} s)"
            for name, (code, took) in codes.items()
        ),
        errors_note(logged),
    ]
    return Row(
        "sigterm",
        len(codes),
        clean,
        len(codes) - clean,
        "-",
        "n/a (stopped)",
        notes,
        {"exit_codes": {k: v[0] for k, v in codes.items()}},
    )


# ============================================================================ driver


async def drill(args: argparse.Namespace, plan: Plan, logs: Path) -> list[Row]:
    chosen = [s for s in SCENARIOS if not args.scenario or s in args.scenario]
    rows: list[Row] = []
    main_task = asyncio.current_task()
    assert main_task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):  # cancel: the servers are cleaned up
        asyncio.get_running_loop().add_signal_handler(signum, main_task.cancel)
    async with Stack(plan, logs) as stack:
        print(
            f"# stack up: PostgreSQL :{stack.postgres.port}, Redis :{stack.redis.port}, SMTP "
            f":{stack.smtp.port}, api :{stack.api_port}, realtime :{stack.ws_ports[0]} "
            f":{stack.ws_ports[1]}, 2 workers, scheduler; logs in {logs}",
            flush=True,
        )
        restart_reason = ""
        for scenario in chosen:
            if restart_reason and scenario != "sigterm":
                await stack.restart_processes()
            started = time.monotonic()
            print(f"# {scenario} ...", flush=True)
            try:
                row = await run_scenario(stack, scenario)
            except Exception as error:  # one broken scenario must not hide the rest
                row = Row(scenario, "-", "-", "-", "-", "?", [f"DRILL ERROR {error!r}"])
            if restart_reason and scenario != "sigterm":
                row.notes.append(f"fresh processes ({restart_reason})")
            row.detail["seconds"] = round(time.monotonic() - started, 1)
            rows.append(row)
            print_row(row)
            restart_reason = ""
            if scenario != "sigterm":
                health = await stack.health()
                if not health.healthy:
                    restart_reason = "previous scenario left " + health.text()
    return rows


async def run_scenario(stack: Stack, scenario: str) -> Row:
    if scenario in stack.plan.redis_outages:
        return await redis_outage(stack, scenario, stack.plan.redis_outages[scenario])
    runners: dict[str, Callable[[Stack], Awaitable[Row]]] = {
        "postgres-outage": postgres_outage,
        "smtp-outage": smtp_outage,
        "login-flood": login_flood,
        "fragment-flood": fragment_flood,
        "slow-readers": slow_readers,
        "connection-storm": connection_storm,
        "sigterm": sigterm,
    }
    return await runners[scenario](stack)


HEADERS = ["scenario", "sent", "received", "lost", "duplicated", "recovered w/o restart"]


def print_row(row: Row) -> None:
    print_table(HEADERS, [row.cells()])
    for note in row.notes:
        print(f"    {note}")
    print(flush=True)


@contextlib.contextmanager
def log_directory(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="notiflow-drill-"))
    try:
        yield path
    finally:
        if keep:
            print(f"# logs kept in {path}")
        else:
            for child in path.iterdir():
                child.unlink()
            path.rmdir()


def main(argv: list[str] | None = None) -> None:
    args, plan = parse_args(argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # thousands of sockets, children too
    # The fragment flood writes into a socket the server has closed: asyncio says so each time.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    note_load("at start")
    started = time.monotonic()
    with log_directory(args.keep_logs) as logs:
        import uvloop

        rows = uvloop.run(drill(args, plan, logs))
    print("## summary")
    print_table(HEADERS, [row.cells() for row in rows])
    note_load("at end")
    payload = {
        "mode": "quick" if plan.quick else "full",
        "plan": {k: v for k, v in vars(plan).items() if k != "extra_env"},
        "extra_env": plan.extra_env,
        "rows": [
            {
                **{h: c for h, c in zip(HEADERS, row.cells(), strict=True)},
                "notes": row.notes,
                "detail": row.detail,
            }
            for row in rows
        ],
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine_info(),
        "revision": git_revision(),
    }
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    emit_json("fault_drill", payload)


if __name__ == "__main__":
    main()
