"""WebSocket fan-out benchmark: notiflow's Pusher server against a raw uvloop transport, one run.

Every scenario runs for each server kind back to back on the same machine and reports the ratio
notiflow / raw (targets: broadcast and targeted >= 0.85x, one event to 5,000
subscribers p99 <= 70 ms, coalesced bursts >= 500k msg/s, <= 15 KB per idle connection,
>= 7,000 opens/s). The raw server is ``bench/ws_raw_server.py``: the same bytes on a bare asyncio
Protocol, one write per message (``raw``) or one per connection per loop tick (``raw-coalesce``).

Shape of a run: each server runs in its own process (this file with ``--serve KIND``, pinned to
the first CPU), driven over a pipe with one JSON line per command, publishing from inside its own
event loop. The load comes from ``bench/wsload`` (C, single-threaded epoll, pinned to the second
CPU), built here with gcc when missing or stale. Per scenario and server: start the server,
start wsload, wait for ``{"ready":true}`` (every connection subscribed), tell the server to
publish, collect wsload's JSON result, stop the server. Before each run the driver waits (up to
``--wait-quiet`` s) for the machine to be idle, and reports how busy it was ("before").

Scenarios:
  broadcast  N connections on channel "bench"; K events published one per loop tick
  latency    N connections on one channel; one event every --latency-interval s, so p99 is the
             time for one event to reach all N (no queueing behind other events)
  targeted   N connections, connection i alone on channel bench-{i}; R rounds of one event per
             channel, --targeted-batch publishes per loop tick
  burst      as broadcast with --burst-batch events per loop tick; notiflow (which coalesces a
             connection's frames per tick) is compared with raw-coalesce
  idle       --idle-connections connections, each on its own channel: server RSS growth per
             connection, and the connection-open rate (opens/s, open p99)

Events are ~--size bytes of JSON with ``"t":<CLOCK_MONOTONIC ns>`` in their data, taken just
before each publish; wsload subtracts it from its receive time (same clock, same machine).
Whether the client kept up: its CPU time over the delivery span ("client"; below 100% means it
was waiting for data), and ``--clients 2`` splits the connections over two wsload processes.

Run::

    .venv/bin/python bench/ws_fanout.py                     # everything, raw and notiflow
    .venv/bin/python bench/ws_fanout.py --repeat 3 --json var/ws_fanout.json
    .venv/bin/python bench/ws_fanout.py --servers raw --scenarios broadcast,latency
    make -C bench/wsload && bench/wsload/build/wsload --help   # the client on its own
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
WSLOAD_SRC = BENCH_DIR / "wsload" / "wsload.c"
WSLOAD_BIN = BENCH_DIR / "wsload" / "build" / "wsload"
HOST = "127.0.0.1"
APP_KEY = "bench-key"
APP_SECRET = "bench-secret"  # noqa: S105 (the benchmark app's throwaway secret)
WS_PATH = f"/app/{APP_KEY}?protocol=7&client=js&version=8.4.0&flash=false"
EVENT = "bench-event"
SERVER_KINDS = ("raw", "raw-coalesce", "notiflow")
SCENARIOS = ("broadcast", "latency", "targeted", "burst", "idle")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ============================================================================ server process


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _pad_for(size: int, channel: str) -> str:
    """Padding that makes the event's JSON payload about ``size`` bytes."""
    sample = json.dumps(
        {
            "event": EVENT,
            "channel": channel,
            "data": json.dumps({"t": time.monotonic_ns(), "seq": 0, "pad": ""}),
        },
        separators=(",", ":"),
    )
    return "x" * max(0, size - len(sample))


def _event_data(seq: int, pad: str) -> str:
    return f'{{"t":{time.monotonic_ns()},"seq":{seq},"pad":"{pad}"}}'


Publish = Callable[[str, str], Awaitable[Any]]


class _ServerHost:
    """One server kind behind a uniform face: start, publish(channel, data), counts, stop."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.server: Any = None
        self.publish: Publish

    async def start(self, port: int) -> int:
        if self.kind in ("raw", "raw-coalesce"):
            from notiflow.realtime.protocol import event_message
            from ws_raw_server import RawServer, server_frame

            raw = await RawServer.start(HOST, port, coalesce=self.kind == "raw-coalesce")
            self.server = raw

            async def publish(channel: str, data: str) -> Any:
                return await raw.publish(channel, server_frame(event_message(EVENT, channel, data)))

            self.publish = publish
            return raw.port
        if self.kind == "notiflow":
            import logging

            import structlog

            # Per-connection info logs would be part of what is measured; keep warnings.
            structlog.configure(
                wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
            )
            from notiflow.realtime.protocol import ProtocolConfig
            from notiflow.realtime.server import RealtimeServer

            server = RealtimeServer(ProtocolConfig(app_key=APP_KEY, app_secret=APP_SECRET))
            await server.start(HOST, port)
            self.server = server
            hub = server.hub

            async def publish(channel: str, data: str) -> Any:
                return await hub.publish(channel, EVENT, data)

            self.publish = publish
            return port
        raise SystemExit(f"unknown server kind {self.kind!r}")

    def connections(self) -> int:
        return int(getattr(self.server, "connection_count", -1))

    def subscribers(self, channel: str) -> int:
        if self.kind == "notiflow":
            return len(self.server.hub.channels.get(channel, ()))
        return int(self.server.subscriber_count(channel))

    async def stop(self) -> None:
        if self.kind == "notiflow":
            await self.server.stop()
        else:
            await self.server.close()


async def _broadcast(host: _ServerHost, command: dict[str, Any]) -> dict[str, Any]:
    channel: str = command["channel"]
    events: int = command["events"]
    batch: int = max(1, command.get("batch", 1))
    interval: float = command.get("interval", 0.0)
    pad = _pad_for(command.get("size", 300), channel)
    publish = host.publish
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic_ns()
    for seq in range(events):
        await publish(channel, _event_data(seq, pad))
        if interval > 0:
            await asyncio.sleep(interval)
        elif (seq + 1) % batch == 0:
            await asyncio.sleep(0)
    end = time.monotonic_ns()
    return _publish_result(start, end, usage)


async def _targeted(host: _ServerHost, command: dict[str, Any]) -> dict[str, Any]:
    prefix: str = command["prefix"]
    connections: int = command["connections"]
    rounds: int = command["rounds"]
    batch: int = max(1, command.get("batch", 100))
    channels = [f"{prefix}{i}" for i in range(connections)]
    pad = _pad_for(command.get("size", 300), channels[-1])
    publish = host.publish
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic_ns()
    sent = 0
    for seq in range(rounds):
        for channel in channels:
            await publish(channel, _event_data(seq, pad))
            sent += 1
            if sent % batch == 0:
                await asyncio.sleep(0)
    end = time.monotonic_ns()
    return _publish_result(start, end, usage)


def _publish_result(start: int, end: int, usage: resource.struct_rusage) -> dict[str, Any]:
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    return {"publish_start_ns": start, "publish_end_ns": end, "publish_cpu_s": round(cpu, 4)}


async def _serve(kind: str, port: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Replies go to the original stdout; anything the server logs goes to stderr instead.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    host = _ServerHost(kind)
    actual_port = await host.start(port)

    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    reply({"port": actual_port, "pid": os.getpid(), "rss_kb": _rss_kb()})
    try:
        while line := await reader.readline():
            command = json.loads(line)
            op = command["op"]
            if op == "stats":
                reply(
                    {
                        "rss_kb": _rss_kb(),
                        "connections": host.connections(),
                        "subscribers": host.subscribers(command.get("channel", "")),
                    }
                )
            elif op == "broadcast":
                reply(await _broadcast(host, command))
            elif op == "targeted":
                reply(await _targeted(host, command))
            elif op == "stop":
                break
            else:
                reply({"error": f"unknown op {op!r}"})
    finally:
        await host.stop()
        reply({"stopped": True})


def serve_main(kind: str, port: int, cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    import uvloop

    uvloop.run(_serve(kind, port))


# ============================================================================ driver


def build_wsload() -> Path:
    if not WSLOAD_BIN.exists() or WSLOAD_BIN.stat().st_mtime < WSLOAD_SRC.stat().st_mtime:
        WSLOAD_BIN.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 (fixed arguments)
            ["gcc", "-O2", "-Wall", "-o", str(WSLOAD_BIN), str(WSLOAD_SRC)],  # noqa: S607
            check=True,
        )
    return WSLOAD_BIN


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class CoreSample:
    """Per-core jiffies from /proc/stat: busy = everything but idle and iowait (softirq
    included, which is where loopback TCP spends much of its time and which no process is
    charged for)."""

    def __init__(self) -> None:
        self.cores: dict[int, tuple[int, int]] = {}
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *values = line.split()
                    numbers = [int(v) for v in values[:8]]
                    idle = numbers[3] + numbers[4]
                    self.cores[int(name[3:])] = (sum(numbers) - idle, sum(numbers))

    def busy_since(self, earlier: CoreSample) -> dict[int, float]:
        busy = {}
        for core, (used, total) in self.cores.items():
            used0, total0 = earlier.cores.get(core, (0, 0))
            busy[core] = (used - used0) / (total - total0) if total > total0 else 0.0
        return busy


async def wait_for_quiet(max_wait: float, threshold: float) -> float:
    """Wait (up to ``max_wait`` s) until no core is busier than ``threshold`` over half a
    second, so other work on the machine does not skew a run; returns the last busiest core."""
    deadline = time.monotonic() + max_wait
    while True:
        before = CoreSample()
        await asyncio.sleep(0.5)
        busiest = max(CoreSample().busy_since(before).values(), default=0.0)
        if busiest <= threshold or time.monotonic() >= deadline:
            return busiest


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def _read_json(stream: asyncio.StreamReader, within: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no answer from {what} within {within:.0f} s")
        line = await asyncio.wait_for(stream.readline(), remaining)
        if not line:
            raise RuntimeError(f"{what} exited before answering")
        text = line.decode().strip()
        if text.startswith("{"):
            return dict(json.loads(text))
        print(f"  [{what}] {text}", file=sys.stderr)


class ServerProcess:
    """A ``--serve KIND`` child process, spoken to one JSON line at a time."""

    def __init__(self, kind: str, proc: asyncio.subprocess.Process, hello: dict[str, Any]):
        self.kind = kind
        self.proc = proc
        self.port: int = hello["port"]
        self.pid: int = hello["pid"]
        self.start_rss_kb: int = hello["rss_kb"]

    @classmethod
    async def spawn(cls, kind: str, cpu: int | None) -> ServerProcess:
        args = [sys.executable, str(BENCH_DIR / "ws_fanout.py"), "--serve", kind]
        args += ["--port", str(free_port())]
        if cpu is not None:
            args += ["--cpu", str(cpu)]
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        try:
            hello = await _read_json(proc.stdout, 30, f"{kind} server")
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return cls(kind, proc, hello)

    async def call(self, command: dict[str, Any], within: float = 120) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        return await _read_json(self.proc.stdout, within, f"{self.kind} server")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.call({"op": "stop"}, within=15)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


class LoadClient:
    """A running wsload process."""

    def __init__(self, proc: asyncio.subprocess.Process, args: list[str]):
        self.proc = proc
        self.args = args

    @classmethod
    async def spawn(
        cls,
        port: int,
        connections: int,
        *,
        channel: str | None = None,
        prefix: str | None = None,
        expect: int = 0,
        run_timeout: float = 120,
        idle_timeout: float = 5.0,
        hold: bool = False,
        cpu: int | None = None,
        window: int = 64,
        first_index: int = 0,
    ) -> LoadClient:
        args = [str(WSLOAD_BIN), "--host", HOST, "--port", str(port), "--path", WS_PATH]
        args += ["-n", str(connections), "--expect", str(expect), "--timeout", str(run_timeout)]
        args += ["--idle-timeout", str(idle_timeout), "--window", str(window), "--ready"]
        args += (
            ["--channel", channel] if channel is not None else ["--channel-prefix", prefix or ""]
        )
        if first_index:
            args += ["--first-index", str(first_index)]
        if hold:
            args.append("--stdin-stop")
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        if cpu is not None:
            os.sched_setaffinity(proc.pid, {cpu})
        return cls(proc, args)

    async def ready(self, within: float = 60) -> dict[str, Any]:
        assert self.proc.stdout is not None
        message = await _read_json(self.proc.stdout, within, "wsload")
        if not message.get("ready"):
            raise RuntimeError(f"wsload ended before it was ready: {message}")
        return message

    async def result(self, within: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        message = await _read_json(self.proc.stdout, within, "wsload")
        await asyncio.wait_for(self.proc.wait(), 10)
        return message

    async def stop(self, within: float = 30) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        return await self.result(within)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Row:
    scenario: str
    server: str
    messages: int = 0
    expected: int = 0
    msgs_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    opens_per_s: float = 0.0
    open_p99_ms: float = 0.0
    slow_opens: int = 0
    client_busy: float = 0.0  # wsload's own CPU time / delivery span
    server_busy: float = 0.0  # server process CPU time / delivery span
    server_core_busy: float = 0.0  # the server's core, softirq included
    kb_per_connection: float = 0.0
    busy_before: float = 0.0  # busiest core just before the run (other work on the machine)
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


def _row_from_load(
    scenario: str,
    kind: str,
    load: dict[str, Any],
    publish: dict[str, Any],
    server_cpu: float,
    cores: dict[int, float],
    cpus: tuple[int | None, int | None],
) -> Row:
    start = publish.get("publish_start_ns", load["first_msg_ns"])
    span = (load["last_msg_ns"] - start) / 1e9 if load["last_msg_ns"] > start else 0.0
    latency = load["latency_ms"]
    note = "" if load["messages"] >= load["expected_messages"] else "INCOMPLETE"
    if load["failed"]:
        note += f" {load['failed']} conns failed: {load['first_error']}"
    return Row(
        scenario=scenario,
        server=kind,
        messages=load["messages"],
        expected=load["expected_messages"],
        msgs_per_s=load["messages"] / span if span else 0.0,
        p50_ms=latency["p50"],
        p99_ms=latency["p99"],
        max_ms=latency["max"],
        opens_per_s=load["opens_per_s"],
        open_p99_ms=load["open_ms"]["p99"],
        slow_opens=load["slow_opens"],
        client_busy=load["busy_during_msgs"],
        server_busy=server_cpu / span if span else 0.0,
        server_core_busy=cores.get(cpus[0], 0.0) if cpus[0] is not None else 0.0,
        note=note.strip(),
        detail={"wsload": load, "publish": publish, "cores_busy": cores},
    )


def merge_loads(loads: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine the results of several wsload processes that split one run's connections.
    Latency percentiles cannot be merged exactly: the worst client's is kept (conservative)."""
    if len(loads) == 1:
        return loads[0]
    merged = dict(loads[0])
    for key in ("connections", "established", "subscribed", "failed", "complete", "messages"):
        merged[key] = sum(load[key] for load in loads)
    for key in ("expected_messages", "slow_opens", "latency_samples", "cpu_during_msgs_s"):
        merged[key] = sum(load[key] for load in loads)
    merged["first_msg_ns"] = min(load["first_msg_ns"] for load in loads if load["first_msg_ns"])
    merged["last_msg_ns"] = max(load["last_msg_ns"] for load in loads)
    merged["latency_ms"] = {
        q: max(load["latency_ms"][q] for load in loads) for q in loads[0]["latency_ms"]
    }
    merged["open_ms"] = {q: max(load["open_ms"][q] for load in loads) for q in loads[0]["open_ms"]}
    merged["opens_per_s"] = sum(load["opens_per_s"] for load in loads)
    span = (merged["last_msg_ns"] - merged["first_msg_ns"]) / 1e9
    merged["busy_during_msgs"] = merged["cpu_during_msgs_s"] / span if span > 0 else 0.0
    merged["first_error"] = next((load["first_error"] for load in loads if load["first_error"]), "")
    merged["clients"] = loads
    return merged


def _split(total: int, parts: int) -> list[tuple[int, int]]:
    """(first index, count) of each of ``parts`` near-equal slices of ``total``."""
    bounds = [total * i // parts for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(parts)]


async def run_delivery(
    kind: str, scenario: str, options: argparse.Namespace, cpus: tuple[int | None, int | None]
) -> Row:
    n = options.connections
    server = await ServerProcess.spawn(kind, cpus[0])
    clients: list[LoadClient] = []
    common = {"run_timeout": options.timeout, "cpu": cpus[1], "window": options.open_window}
    try:
        if scenario == "targeted":
            expect = options.targeted_rounds
            target: dict[str, Any] = {"prefix": "bench-"}
            command: dict[str, Any] = {
                "op": "targeted",
                "prefix": "bench-",
                "connections": n,
                "rounds": expect,
                "batch": options.targeted_batch,
                "size": options.size,
            }
        else:
            target = {"channel": "bench"}
            command = {"op": "broadcast", "channel": "bench", "size": options.size}
            if scenario == "latency":
                expect = options.latency_events
                command.update(events=expect, interval=options.latency_interval)
            else:
                expect = options.events
                batch = options.burst_batch if scenario == "burst" else 1
                command.update(events=expect, batch=batch)
        for first, count in _split(n, options.clients):
            clients.append(
                await LoadClient.spawn(
                    server.port, count, expect=expect, first_index=first, **target, **common
                )
            )
        subscribed = 0
        for client in clients:
            subscribed += (await client.ready(within=options.timeout))["subscribed"]
        if subscribed != n:
            raise RuntimeError(f"only {subscribed} of {n} connections subscribed")
        cpu_before = cpu_seconds(server.pid)
        cores_before = CoreSample()
        publish = await server.call(command, within=options.timeout)
        loads = [await client.result(within=options.timeout + 30) for client in clients]
        cores = CoreSample().busy_since(cores_before)
        cpu_after = cpu_seconds(server.pid)
        load = merge_loads(loads)
        return _row_from_load(scenario, kind, load, publish, cpu_after - cpu_before, cores, cpus)
    finally:
        for client in clients:
            await client.kill()
        await server.stop()


async def run_idle(
    kind: str, options: argparse.Namespace, cpus: tuple[int | None, int | None]
) -> Row:
    n = options.idle_connections
    server = await ServerProcess.spawn(kind, cpus[0])
    client: LoadClient | None = None
    try:
        before = await server.call({"op": "stats"})
        client = await LoadClient.spawn(
            server.port,
            n,
            prefix="idle-",
            hold=True,
            run_timeout=options.timeout,
            cpu=cpus[1],
            window=options.open_window,
        )
        ready = await client.ready(within=options.timeout)
        await asyncio.sleep(0.5)  # let the server finish writing subscription answers
        after = await server.call({"op": "stats", "channel": "idle-0"})
        load = await client.stop()
        subscribed = ready["subscribed"]
        per_kib = (after["rss_kb"] - before["rss_kb"]) / subscribed if subscribed else 0.0
        note = "" if subscribed == n else f"only {subscribed}/{n} subscribed"
        if after["connections"] not in (-1, n):
            note += f" server counts {after['connections']} connections"
        return Row(
            scenario="idle",
            server=kind,
            messages=subscribed,
            expected=n,
            opens_per_s=load["opens_per_s"],
            open_p99_ms=load["open_ms"]["p99"],
            slow_opens=load["slow_opens"],
            kb_per_connection=per_kib * 1.024,  # KiB -> kB
            note=note.strip(),
            detail={"before": before, "after": after, "wsload": load},
        )
    finally:
        if client is not None:
            await client.kill()
        await server.stop()


def reference_kind(scenario: str, kind: str) -> str:
    """What a server is compared with: raw, except that in bursts notiflow (which coalesces each
    connection's frames per loop tick) is compared with the coalescing raw server."""
    return "raw-coalesce" if scenario == "burst" and kind == "notiflow" else "raw"


def median_row(runs: list[Row]) -> Row:
    """The run with the median result (idle: memory; others: msgs/s)."""
    key = (
        (lambda r: r.kb_per_connection) if runs[0].scenario == "idle" else (lambda r: r.msgs_per_s)
    )
    ordered = sorted(runs, key=key)
    row = ordered[(len(ordered) - 1) // 2]
    if len(runs) > 1:
        row.detail["repeats"] = [key(r) for r in runs]
    return row


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else ""


def print_table(rows: list[Row]) -> None:
    by_key = {(row.scenario, row.server): row for row in rows}
    print()
    header = (
        f"{'scenario':<10} {'server':<13} {'msgs':>8} {'msgs/s':>9} {'x ref':>6} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'x ref':>6} {'max ms':>7} {'opens/s':>8} {'client':>6} {'server':>6} "
        f"{'core':>5} {'before':>6}"
    )
    print(header)
    print("-" * len(header))
    for scenario in SCENARIOS:
        for row in (r for r in rows if r.scenario == scenario):
            base = by_key.get((scenario, reference_kind(scenario, row.server)))
            is_ref = base is None or base is row
            if scenario == "idle":
                size = f"{row.kb_per_connection:.2f} kB/conn"
                ratio = "" if is_ref else _ratio(row.kb_per_connection, base.kb_per_connection)
                print(
                    f"{row.scenario:<10} {row.server:<13} {row.messages:>8} {size:>16} "
                    f"{ratio:>6} {'open p99':>15} {row.open_p99_ms:>6.1f} {'':>7} "
                    f"{row.opens_per_s:>8.0f} {'':>6} {'':>6} {'':>5} {row.busy_before:>6.0%} "
                    f"{row.note}"
                )
                continue
            rate = "-" if scenario == "latency" else f"{row.msgs_per_s:.0f}"
            rate_x = (
                "" if is_ref or scenario == "latency" else _ratio(row.msgs_per_s, base.msgs_per_s)
            )
            p99_x = "" if is_ref else _ratio(row.p99_ms, base.p99_ms)
            print(
                f"{row.scenario:<10} {row.server:<13} {row.messages:>8} {rate:>9} {rate_x:>6} "
                f"{row.p50_ms:>7.2f} {row.p99_ms:>7.2f} {p99_x:>6} {row.max_ms:>7.2f} "
                f"{row.opens_per_s:>8.0f} {row.client_busy:>6.0%} {row.server_busy:>6.0%} "
                f"{row.server_core_busy:>5.0%} {row.busy_before:>6.0%} {row.note}"
            )
    print(
        "\nmsgs/s = delivered / (last receipt - publish start); x ref = notiflow / raw "
        "(burst: / raw-coalesce).\nclient, server = process CPU / delivery span; core = the "
        "server's core incl. softirq; before = busiest core just before the run (others' load)."
    )


def print_targets(rows: list[Row]) -> None:
    """The targets, for the rows this run produced."""
    by_key = {(row.scenario, row.server): row for row in rows}

    def get(scenario: str, kind: str) -> Row | None:
        row = by_key.get((scenario, kind))
        return row if row is not None and "FAILED" not in row.note else None

    checks: list[tuple[str, float | None, str, float]] = []
    for scenario in ("broadcast", "targeted"):
        mine, raw = get(scenario, "notiflow"), get(scenario, "raw")
        if mine and raw and raw.msgs_per_s:
            checks.append((f"{scenario} vs raw", mine.msgs_per_s / raw.msgs_per_s, ">=", 0.85))
    if latency := get("latency", "notiflow"):
        checks.append(("one event to N, p99 ms", latency.p99_ms, "<=", 70.0))
    if burst := get("burst", "notiflow"):
        checks.append(("coalesced burst msgs/s", burst.msgs_per_s, ">=", 500_000))
    if idle := get("idle", "notiflow"):
        checks.append(("idle kB/connection", idle.kb_per_connection, "<=", 15.0))
        checks.append(("connection opens/s", idle.opens_per_s, ">=", 7_000))
    if not checks:
        return
    print("\ntargets (notiflow):")
    for name, value, op, target in checks:
        assert value is not None
        ok = value >= target if op == ">=" else value <= target
        print(f"  {name:<26} {value:>12,.2f}  {op} {target:,g}  {'ok' if ok else 'MISSED'}")


async def main(options: argparse.Namespace) -> int:
    build_wsload()
    cpus: tuple[int | None, int | None] = (None, None)
    if options.pin and len(os.sched_getaffinity(0)) >= 2:
        available = sorted(os.sched_getaffinity(0))
        cpus = (available[0], available[1])
    servers = [s for s in options.servers.split(",") if s]
    scenarios = [s for s in options.scenarios.split(",") if s]
    for name in servers:
        if name not in SERVER_KINDS:
            raise SystemExit(f"unknown server {name!r} (choose from {', '.join(SERVER_KINDS)})")
    for name in scenarios:
        if name not in SCENARIOS:
            raise SystemExit(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
    print(
        f"{options.connections} connections, {options.size}-byte events, server on CPU {cpus[0]}, "
        f"wsload on CPU {cpus[1]}, {options.repeat} repeat(s)"
    )
    rows: list[Row] = []
    for scenario in scenarios:
        kinds = list(servers)
        if scenario == "burst" and "raw" in kinds and "raw-coalesce" not in kinds:
            kinds.insert(kinds.index("raw") + 1, "raw-coalesce")
        elif scenario != "burst" and len(kinds) > 1:
            kinds = [k for k in kinds if k != "raw-coalesce"]
        runs: dict[str, list[Row]] = {kind: [] for kind in kinds}
        for repeat in range(options.repeat):
            for kind in kinds:  # interleaved, so slow drifts in the machine hit every kind
                busy_before = await wait_for_quiet(options.wait_quiet, options.quiet_threshold)
                label = f"{scenario} {kind}" + (f" #{repeat + 1}" if options.repeat > 1 else "")
                print(f"  {label:<28}", end=" ", flush=True)
                try:
                    if scenario == "idle":
                        row = await run_idle(kind, options, cpus)
                    else:
                        row = await run_delivery(kind, scenario, options, cpus)
                except Exception as exc:  # one failing server must not hide the others' figures
                    row = Row(scenario=scenario, server=kind, note=f"FAILED: {exc!r}"[:300])
                row.busy_before = busy_before
                runs[kind].append(row)
                shown = (
                    f"{row.kb_per_connection:.2f} kB/conn"
                    if scenario == "idle"
                    else (f"{row.msgs_per_s:,.0f} msg/s p99 {row.p99_ms:.1f} ms")
                )
                print(row.note or shown, flush=True)
        rows.extend(median_row(kind_runs) for kind_runs in runs.values())
    print_table(rows)
    print_targets(rows)
    if options.json:
        machine = {"cpus": os.cpu_count(), "pinned": cpus, "python": sys.version.split()[0]}
        payload = {"options": vars(options), "machine": machine, "rows": [r.__dict__ for r in rows]}
        await asyncio.to_thread(_write_json, Path(options.json), payload)
        print(f"wrote {options.json}")
    return 0 if all("FAILED" not in row.note for row in rows) else 1


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--servers", default="raw,notiflow", help="comma list of " + ", ".join(SERVER_KINDS))
    add("--scenarios", default=",".join(SCENARIOS), help="comma list")
    add("--connections", type=int, default=5000, help="N for broadcast/latency/targeted/burst")
    add("--events", type=int, default=100, help="events in broadcast and burst")
    add("--size", type=int, default=300, help="bytes of each event's JSON payload")
    add("--burst-batch", type=int, default=20, help="events per loop tick in burst")
    add("--latency-events", type=int, default=20)
    add("--latency-interval", type=float, default=0.1, help="seconds between latency events")
    add("--targeted-rounds", type=int, default=20, help="events per channel in targeted")
    add("--targeted-batch", type=int, default=100, help="publishes per loop tick in targeted")
    add("--idle-connections", type=int, default=10_000)
    add("--open-window", type=int, default=64, help="handshakes wsload keeps in flight")
    add("--clients", type=int, default=1, help="wsload processes sharing the connections")
    add("--repeat", type=int, default=1, help="runs per server and scenario (median shown)")
    add("--wait-quiet", type=float, default=30.0, help="max seconds to wait for an idle machine")
    add("--quiet-threshold", type=float, default=0.15, help="busiest-core fraction that is idle")
    add("--timeout", type=float, default=120.0, help="bound on every step, seconds")
    add("--no-pin", dest="pin", action="store_false", help="do not pin server and client CPUs")
    add("--json", help="also write every figure to this file")
    add("--serve", choices=SERVER_KINDS, help=argparse.SUPPRESS)
    add("--port", type=int, default=0, help=argparse.SUPPRESS)
    add("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        serve_main(arguments.serve, arguments.port, arguments.cpu)
    else:
        sys.exit(asyncio.run(main(arguments)))
