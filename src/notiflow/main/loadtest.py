"""``notiflow loadtest ws``: a WebSocket load test against a running notiflow.

It uses the real paths end to end: N WebSocket connections subscribe to the caller's private
channel through ``/broadcasting/auth``, notifications are sent through
``POST /api/v1/notifications/send`` at a fixed rate, and every connection counts the
``NotificationCreated`` events it receives. The report gives delivered/expected, throughput and
send-to-receive latency percentiles. Run it from a machine near the deployment; the client is
Python, so for very large N run several copies.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from picows import WSListener, WSMsgType, WSTransport, ws_connect

MARK = "loadtest_sent_at"
PROGRESS_SECONDS = 1.0
DELETE_BATCH = 1000


class _Listener(WSListener):
    def __init__(self, report: LoadReport) -> None:
        self.report = report
        self.socket_id: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.subscribed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        message = json.loads(frame.get_payload_as_bytes())
        event = message.get("event")
        if event == "NotificationCreated":
            now = time.time()
            data = json.loads(message["data"])
            sent_at = (data.get("data") or {}).get(MARK)
            self.report.received += 1
            if isinstance(sent_at, int | float):
                self.report.latencies.append(now - sent_at)
        elif event == "pusher:connection_established" and not self.socket_id.done():
            self.socket_id.set_result(json.loads(message["data"])["socket_id"])
        elif event == "pusher_internal:subscription_succeeded" and not self.subscribed.done():
            self.subscribed.set_result(True)
        elif event == "pusher:subscription_error" and not self.subscribed.done():
            self.subscribed.set_result(False)


@dataclass
class LoadReport:
    connections: int = 0
    subscribed: int = 0
    connect_seconds: float = 0.0
    sent: int = 0
    send_errors: int = 0
    received: int = 0
    latencies: list[float] = field(default_factory=list)
    send_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        expected = self.sent * self.subscribed
        ordered = sorted(self.latencies)

        def percentile(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2)

        return {
            "connections": self.connections,
            "subscribed": self.subscribed,
            "connection_opens_per_second": round(self.connections / self.connect_seconds, 1)
            if self.connect_seconds
            else None,
            "notifications_sent": self.sent,
            "send_errors": self.send_errors,
            "expected_deliveries": expected,
            "delivered": self.received,
            "delivered_ratio": round(self.received / expected, 4) if expected else None,
            "deliveries_per_second": round(self.received / self.send_seconds, 1)
            if self.send_seconds
            else None,
            "latency_ms": {
                "p50": percentile(0.50),
                "p90": percentile(0.90),
                "p99": percentile(0.99),
                "max": round(ordered[-1] * 1000, 2) if ordered else None,
                "mean": round(statistics.fmean(ordered) * 1000, 2) if ordered else None,
            },
        }


async def run_ws_load(
    *,
    api_url: str,
    token: str,
    connections: int,
    rate: float,
    duration: float,
    ws_url: str | None = None,
    drain_seconds: float = 2.0,
    keep: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the load test; ``progress`` hears a line about once a second; the notifications
    sent are deleted at the end unless ``keep``."""
    report = LoadReport()
    tell = progress or (lambda _line: None)
    created: list[str] = []
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api:
        me = (await api.get("/api/v1/user")).raise_for_status().json()["data"]
        config = (await api.get("/api/v1/realtime/config")).raise_for_status().json()["data"]
        if ws_url is None:
            scheme = "wss" if config["force_tls"] else "ws"
            ws_url = f"{scheme}://{config['ws_host']}:{config['ws_port']}"
        channel = config["channel"]
        url = f"{ws_url.rstrip('/')}/app/{config['key']}?protocol=7&client=notiflow-loadtest"
        auth_path = urlsplit(config["auth_endpoint"]).path

        transports: list[WSTransport] = []
        started = time.perf_counter()
        limiter = asyncio.Semaphore(100)

        async def open_one() -> None:
            async with limiter:
                transport, base_listener = await ws_connect(lambda: _Listener(report), url)
                listener = cast(_Listener, base_listener)
                transports.append(transport)
                report.connections += 1
                socket_id = await asyncio.wait_for(listener.socket_id, 10)
                grant = await api.post(
                    auth_path, data={"socket_id": socket_id, "channel_name": channel}
                )
                grant.raise_for_status()
                transport.send(
                    WSMsgType.TEXT,
                    json.dumps(
                        {
                            "event": "pusher:subscribe",
                            "data": {"channel": channel, "auth": grant.json()["auth"]},
                        }
                    ).encode(),
                )
                if await asyncio.wait_for(listener.subscribed, 10):
                    report.subscribed += 1

        tell(f"opening {connections} connections on {url}")
        await asyncio.gather(*(open_one() for _ in range(connections)))
        report.connect_seconds = time.perf_counter() - started
        tell(
            f"{report.subscribed}/{connections} subscribed in {report.connect_seconds:.1f} s; "
            f"sending {max(1, int(rate * duration))} notifications at {rate}/s"
        )

        total = max(1, int(rate * duration))
        send_started = time.perf_counter()
        next_report = send_started + PROGRESS_SECONDS
        for index in range(total):
            target = send_started + index / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            response = await api.post(
                "/api/v1/notifications/send",
                json={
                    "user_ids": [me["id"]],
                    "type": "system_announcement",
                    "title": "Load test",
                    "message": f"load test message {index}",
                    "data": {MARK: time.time()},
                    "channels": ["in_app", "push"],
                },
            )
            if response.status_code == 202:
                report.sent += 1
                created.extend(item["id"] for item in response.json()["data"]["notifications"])
            else:
                report.send_errors += 1
            if time.perf_counter() >= next_report:
                next_report += PROGRESS_SECONDS
                tell(
                    f"sent {report.sent}/{total}, errors {report.send_errors}, "
                    f"received {report.received}/{report.sent * report.subscribed}"
                )
        deadline = time.perf_counter() + drain_seconds
        expected = report.sent * report.subscribed
        # polling a counter that frame callbacks feed
        while report.received < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        report.send_seconds = time.perf_counter() - send_started
        for transport in transports:
            transport.disconnect()
        tell(f"received {report.received}/{expected}")
        summary = report.summary()
        if keep:
            summary["notifications_kept"] = len(created)
        else:
            summary["notifications_deleted"] = await _delete(api, created)
            tell(f"deleted the {summary['notifications_deleted']} notifications it sent")
    return summary


async def _delete(api: httpx.AsyncClient, ids: list[str]) -> int:
    """Delete the load test's notifications from the caller's feed, 1,000 at a time."""
    deleted = 0
    for start in range(0, len(ids), DELETE_BATCH):
        response = await api.post(
            "/api/v1/notifications/delete-multiple", json={"ids": ids[start : start + DELETE_BATCH]}
        )
        response.raise_for_status()
        deleted += int(response.json()["data"]["updated"])
    return deleted
