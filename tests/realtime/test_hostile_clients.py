"""The WebSocket server against hostile clients: floods of fragments, reserved bits, deep JSON,
too many channels, and clients that stop reading."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from picows import WSMsgType

from notiflow.realtime.protocol import ProtocolConfig
from notiflow.realtime.server import RealtimeServer
from notiflow.realtime.signing import channel_auth
from tests.delivery.processes import NotiflowProcess, eventually, free_port, notiflow_env
from tests.realtime.wsclient import WsClient

# Compares latencies or CPU time with a baseline of its own: runs alone (scripts/run-tests.sh).
pytestmark = pytest.mark.serial

KEY, SECRET = "hostile-key", "hostile-secret-0123456789"
TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8  # linux/tcp_states.h


# ---------------------------------------------------------------------------- raw frames


def client_frame(
    payload: bytes, *, opcode: int = 0x1, fin: bool = True, rsv1: bool = False
) -> bytes:
    """A client frame; masked with a zero key (valid, and the payload stays as it is)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((first, 0x80 | length))
    elif length < 65_536:
        header = bytes((first, 0x80 | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + length.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def fragmented(message: bytes) -> bytes:
    """``message`` as one-byte fragments, all in one buffer."""
    frames = [client_frame(message[:1], fin=False)]
    frames += [
        client_frame(message[i : i + 1], opcode=0x0, fin=False) for i in range(1, len(message) - 1)
    ]
    frames.append(client_frame(message[-1:], opcode=0x0))
    return b"".join(frames)


class RawSocketClient:
    """A WebSocket client on a plain socket that reads only when told to (a slow consumer)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.socket_id = ""

    @classmethod
    async def open(cls, port: int, key: str, *, receive_buffer: int = 4096) -> RawSocketClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        # Set before connecting, so the window the client announces stays this small.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        nonce = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /app/{key}?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        client = cls(sock)
        while b"\r\n\r\n" not in client.buffer:
            await client._read()
        head, _, client.buffer = client.buffer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        established = await client.next_message()
        client.socket_id = json.loads(established["data"])["socket_id"]
        return client

    async def _read(self) -> None:
        chunk = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.sock, 65_536), 5)
        assert chunk, "the server closed the connection"
        self.buffer += chunk

    async def next_message(self) -> dict[str, object]:
        """The next text frame the server sent (unmasked, unfragmented), parsed."""
        while True:
            if len(self.buffer) >= 2:
                length, start = self.buffer[1] & 0x7F, 2
                if length == 126 and len(self.buffer) >= 4:
                    length, start = int.from_bytes(self.buffer[2:4], "big"), 4
                if length < 127 and len(self.buffer) >= start + length:
                    payload = self.buffer[start : start + length]
                    self.buffer = self.buffer[start + length :]
                    message: dict[str, object] = json.loads(payload)
                    return message
            await self._read()

    async def send(self, message: dict[str, object]) -> None:
        frame = client_frame(json.dumps(message).encode())
        await asyncio.get_running_loop().sock_sendall(self.sock, frame)

    async def subscribe_private(self, channel: str) -> None:
        auth = channel_auth(KEY, SECRET, self.socket_id, channel)
        await self.send({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}})
        while (await self.next_message())["event"] != "pusher_internal:subscription_succeeded":
            pass

    def closed_by_server(self) -> bool:
        """The server's side is gone (RST or FIN arrived), seen without reading a byte."""
        state = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        return state in (TCP_CLOSE, TCP_CLOSE_WAIT)

    def close(self) -> None:
        self.sock.close()


async def subscribed(port: int, channel: str) -> WsClient:
    client = await WsClient.open(port, KEY)
    client.subscribe(channel, channel_auth(KEY, SECRET, client.socket_id, channel))
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)
    return client


# ---------------------------------------------------------------------------- servers


@pytest.fixture
async def server() -> AsyncIterator[RealtimeServer]:
    realtime = RealtimeServer(ProtocolConfig(KEY, SECRET))
    await realtime.start("127.0.0.1", 0)
    try:
        yield realtime
    finally:
        await realtime.stop()


class RealtimeNode:
    """``notiflow realtime`` as a process of its own (its event loop is not the test's)."""

    def __init__(self, **settings: str) -> None:
        self.port = free_port()
        env = notiflow_env(
            pusher_app_key=KEY,
            pusher_app_secret=SECRET,
            log_level="WARNING",
            **settings,
        )
        self.process = NotiflowProcess(
            ["realtime", "--host", "127.0.0.1", "--port", str(self.port)], env
        )

    async def start(self) -> RealtimeNode:
        await self.process.start()

        async def accepting() -> bool:
            try:
                client = await WsClient.open(self.port, KEY)
            except OSError:
                return False
            await client.close()
            return True

        await eventually(accepting, timeout=30)
        return self

    @property
    def pid(self) -> int:
        assert self.process.process is not None
        return self.process.process.pid

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def open_sockets(self) -> int:
        fds = Path(f"/proc/{self.pid}/fd")
        count = 0
        for fd in fds.iterdir():
            try:
                count += os.readlink(fd).startswith("socket:")
            except OSError:
                continue  # closed meanwhile
        return count


@pytest.fixture
async def node_factory() -> AsyncIterator[list[RealtimeNode]]:
    nodes: list[RealtimeNode] = []
    yield nodes
    for node in nodes:
        node.process.stop()


# ---------------------------------------------------------------------------- fragments


async def probe_latency(publisher: WsClient, observer: WsClient, channel: str, n: int) -> float:
    """Seconds from a client event leaving ``publisher`` to its arrival at ``observer``."""
    mark = len(observer.messages)
    sent_at = time.perf_counter()
    publisher.send({"event": "client-probe", "channel": channel, "data": {"n": n}})
    try:
        await observer.wait_for("client-probe", after=mark, timeout=10)
    except AssertionError:
        raise AssertionError(
            "a client event took over 10 s: the server's loop is stalled"
        ) from None
    return time.perf_counter() - sent_at


async def probe_for(
    seconds: float, publisher: WsClient, observer: WsClient, channel: str
) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        latencies.append(await probe_latency(publisher, observer, channel, len(latencies)))
        await asyncio.sleep(0.005)
    return latencies


async def test_a_message_in_30000_fragments_does_not_stall_other_clients(
    node_factory: list[RealtimeNode],
) -> None:
    node = await RealtimeNode(ws_client_event_rate="10000").start()
    node_factory.append(node)
    channel = "private-latency"
    publisher = await subscribed(node.port, channel)
    observer = await subscribed(node.port, channel)
    padding = 30_000 - len(b'{"event":"pusher:ping","data":{"pad":""}}')
    message = json.dumps(
        {"event": "pusher:ping", "data": {"pad": "x" * padding}}, separators=(",", ":")
    ).encode()
    assert len(message) == 30_000
    blob = fragmented(message)  # ~210 KB

    # Rounds of (quiet, hostile): a stall the hostile client causes shows in every round, a
    # scheduling hiccup of a busy machine in one at most.
    rounds: list[tuple[float, float, float]] = []
    for _ in range(3):
        baseline = await probe_for(0.4, publisher, observer, channel)
        hostile = await WsClient.open(node.port, KEY)
        hostile.transport.underlying_transport.write(blob)
        during = await probe_for(0.4, publisher, observer, channel)
        assert await hostile.wait_closed(timeout=10) == 1009  # Message too big
        rounds.append((statistics.median(baseline), max(baseline), max(during)))

    print(  # the figures, for the record (pytest -s)
        "median / worst without, worst with the hostile client (ms):",
        [tuple(round(value * 1000, 1) for value in figures) for figures in rounds],
    )
    delays = [worst_during - median for median, _, worst_during in rounds]
    bounds = [max(0.1, 10 * worst_quiet) for _, worst_quiet, _ in rounds]
    assert any(delay <= bound for delay, bound in zip(delays, bounds, strict=True)), (
        f"another client's events were delayed {[round(d * 1000) for d in delays]} ms "
        f"(bounds {[round(b * 1000) for b in bounds]} ms)"
    )
    assert observer.close_code is None
    assert publisher.close_code is None


async def test_fragments_of_an_ordinary_message_are_joined(server: RealtimeServer) -> None:
    client = await WsClient.open(server.port, KEY)
    message = b'{"event":"pusher:ping","data":{}}'
    client.transport.underlying_transport.write(fragmented(message))
    await client.wait_for("pusher:pong")
    assert client.close_code is None


# ---------------------------------------------------------------------------- frame rules


async def test_reserved_bit_without_an_extension_closes_with_1002(
    server: RealtimeServer,
) -> None:
    client = await WsClient.open(server.port, KEY)
    client.transport.send(WSMsgType.TEXT, b'{"event":"pusher:ping","data":{}}', rsv1=True)
    assert await client.wait_closed() == 1002
    assert not any(m["event"] == "pusher:pong" for m in client.messages)


async def test_deeply_nested_json_is_answered_and_the_connection_kept(
    server: RealtimeServer,
) -> None:
    client = await WsClient.open(server.port, KEY)
    for junk in ("[" * 5000, '{"event":"pusher:ping","data":' + "[" * 9000):
        mark = len(client.messages)
        client.send(junk)
        error = await client.wait_for("pusher:error", after=mark)
        assert 4200 <= error["data"]["code"] < 4300
        assert "nested" in error["data"]["message"]
    client.send({"event": "pusher:ping", "data": {}})
    await client.wait_for("pusher:pong")
    client.subscribe("news")
    await client.wait_for("pusher_internal:subscription_succeeded", channel="news")
    assert client.close_code is None


async def test_a_connection_subscribes_to_at_most_100_channels(server: RealtimeServer) -> None:
    client = await WsClient.open(server.port, KEY)
    for index in range(100):
        client.subscribe(f"news-{index}")
    for index in range(100):
        await client.wait_for("pusher_internal:subscription_succeeded", channel=f"news-{index}")
    client.subscribe("news-100")
    error = await client.wait_for("pusher:subscription_error", channel="news-100")
    assert error["data"]["type"] == "LimitReached"
    assert "100" in error["data"]["error"]
    assert "news-100" not in server.hub.channels
    assert client.close_code is None

    # the channels up to the cap still deliver; leaving one makes room for another
    await server.hub.publish("news-0", "first", "{}")
    await server.hub.publish("news-99", "last", "{}")
    await client.wait_for("first", channel="news-0")
    await client.wait_for("last", channel="news-99")
    client.send({"event": "pusher:unsubscribe", "data": {"channel": "news-0"}})
    client.subscribe("news-100")
    await client.wait_for("pusher_internal:subscription_succeeded", channel="news-100")


# ---------------------------------------------------------------------------- slow consumers


async def test_a_client_that_stops_reading_is_cut_off_after_the_grace_period() -> None:
    grace = 0.5
    server = RealtimeServer(
        ProtocolConfig(KEY, SECRET, client_event_rate=10_000, max_message_bytes=100_000),
        max_buffered_bytes=256 * 1024,
        close_grace=grace,
    )
    await server.start("127.0.0.1", 0)
    try:
        channel = "private-firehose"
        publisher = await subscribed(server.port, channel)
        slow = await RawSocketClient.open(server.port, KEY)
        await slow.subscribe_private(channel)
        connection = server.connections[slow.socket_id]

        data = "x" * 50_000
        for _ in range(400):  # 20 MB: far more than the kernel's buffers and the cap
            publisher.send({"event": "client-fill", "channel": channel, "data": data})
            await asyncio.sleep(0)
            if connection.closing:
                break
        await eventually(_true_when(lambda: connection.closing), timeout=20)
        closed_at = time.monotonic()
        await eventually(_true_when(lambda: slow.socket_id not in server.connections), timeout=10)
        assert time.monotonic() - closed_at < grace + 2.0
        await eventually(_true_when(slow.closed_by_server), timeout=5)
        await asyncio.sleep(0.1)
        assert set(server.connections) == {publisher.socket_id}
        assert set(server.hub.channels[channel]) == {publisher.socket_id}
        assert connection.pending == []
        assert publisher.close_code is None
        slow.close()
    finally:
        await server.stop()


def _true_when(condition):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return bool(condition())

    return check


async def test_slow_consumers_are_disconnected_and_their_memory_freed(
    node_factory: list[RealtimeNode],
) -> None:
    node = await RealtimeNode(
        ws_client_event_rate="100000", ws_max_message_bytes="100000", ws_close_grace_seconds="1"
    ).start()
    node_factory.append(node)
    channel = "private-firehose"
    publisher = await subscribed(node.port, channel)
    consumers = [await RawSocketClient.open(node.port, KEY) for _ in range(20)]
    for consumer in consumers:
        await consumer.subscribe_private(channel)
    await asyncio.sleep(0.5)
    rss_before, sockets_before = node.rss_bytes(), node.open_sockets()

    data = "x" * 60_000
    peak = rss_before
    started = time.monotonic()
    sent = 0
    # Keep the stream going until every consumer is cut off (or far past the 4 MiB cap).
    while not all(c.closed_by_server() for c in consumers) and sent < 700:
        for _ in range(10):
            publisher.send({"event": "client-fill", "channel": channel, "data": data})
        sent += 10
        await asyncio.sleep(0.05)
        peak = max(peak, node.rss_bytes())
    elapsed = time.monotonic() - started

    async def all_cut_off() -> bool:
        return all(c.closed_by_server() for c in consumers)

    assert sent * len(data) > 4 * 1024 * 1024  # more than the cap, whatever the kernel took
    try:
        await eventually(all_cut_off, timeout=15)
    except AssertionError:
        states = [c.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] for c in consumers]
        raise AssertionError(f"not cut off; TCP states {states}") from None

    last: dict[str, float] = {}

    async def released() -> bool:
        last["sockets"] = node.open_sockets()
        last["rss_growth_mib"] = (node.rss_bytes() - rss_before) / 2**20
        return last["sockets"] <= sockets_before - 20 and last["rss_growth_mib"] < 20

    try:
        await eventually(released, timeout=15)
    except AssertionError:
        raise AssertionError(f"not released: {last}, {sockets_before} sockets before") from None
    rss_after = node.rss_bytes()
    print(  # the figures, for the record (pytest -s)
        f"RSS before {rss_before / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, after "
        f"{rss_after / 2**20:.1f} MiB; {sent} x 60 KB sent; all cut off after {elapsed:.1f} s"
    )
    assert publisher.close_code is None
    for consumer in consumers:
        consumer.close()
