"""Webhooks end to end through real processes: two ``notiflow realtime`` nodes over Redis,
``notiflow scheduler`` (the outbox and its sender), clients on both nodes (pusher-js and raw
WebSocket clients), and a receiver that is down for several retries, then up.

The receiver must get every webhook exactly once, each validly signed (checked with the app
secret here and by the npm ``pusher`` SDK), the channels occupied and vacated once for the
cluster, each presence member added and removed once whatever its number of tabs and nodes.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pusher
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.config import WEBHOOK_EVENTS
from notiflow.kit.db import create_engine
from notiflow.kit.uow import create_sessionmaker
from notiflow.models import WebhookEvent
from notiflow.models.webhooks import WebhookStatus
from notiflow.realtime.signing import channel_auth
from notiflow.realtime.webhooks import verify_signature
from notiflow.realtime.webhooks.tracking import STREAM
from tests.admin.webhook_receiver import WebhookReceiver
from tests.conftest import REDIS_URL
from tests.delivery.processes import NotiflowProcess, eventually, free_port, scale_out_env
from tests.realtime.node import NodeClient, run_sdk
from tests.realtime.wsclient import WsClient

APP = ("4343", "delivery-key", "delivery-secret-0123456789")
_, KEY, SECRET = APP


class Deployment:
    def __init__(self, folder: Path, receiver: WebhookReceiver) -> None:
        self.receiver = receiver
        self.env = scale_out_env(
            folder,
            REDIS_URL,
            free_port(),
            APP,
            webhook_url=receiver.url,
            webhook_events=",".join(WEBHOOK_EVENTS),
            # Scaled down so that several retries fit in a few seconds.
            webhook_backoff_seconds="0.2",
            webhook_backoff_cap_seconds="0.6",
            webhook_batch_size="4",
        )
        self.database = create_engine(f"sqlite+aiosqlite:///{folder / 'notiflow.db'}")
        self.scheduler = NotiflowProcess(["scheduler"], self.env)
        self.nodes: list[tuple[int, NotiflowProcess]] = []
        for _ in range(2):
            ws_port, http_port = free_port(), free_port()
            args = ["realtime", "--port", str(ws_port), "--http-port", str(http_port)]
            ready = f"http://127.0.0.1:{http_port}/health"
            self.nodes.append((ws_port, NotiflowProcess(args, self.env, ready_url=ready)))

    @property
    def processes(self) -> list[NotiflowProcess]:
        return [self.scheduler, *(process for _, process in self.nodes)]

    def logs(self) -> str:
        return "\n".join(process.logs(3000) for process in self.processes)


@pytest.fixture
async def deployment(tmp_path: Path, redis: Redis) -> AsyncIterator[Deployment]:
    receiver = WebhookReceiver(port=free_port())  # not started: the receiver is down
    deployment = Deployment(tmp_path, receiver)
    try:
        await deployment.scheduler.start()
        # Ready once it reads the nodes' stream (its consumer group exists).
        await eventually(lambda: _has_group(redis), timeout=60)
        for _, node in deployment.nodes:
            await node.start()
        yield deployment
    finally:
        for process in deployment.processes:
            process.stop()
        await receiver.stop()
        await deployment.database.dispose()


async def _has_group(redis: Redis) -> bool:
    try:
        return bool(await redis.xinfo_groups(STREAM))
    except Exception:  # no stream yet
        return False


async def outbox(database: AsyncEngine) -> list[WebhookEvent]:
    async with create_sessionmaker(database)() as session:
        return list((await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))).all())


async def presence(client: WsClient, channel: str, user_id: str) -> None:
    channel_data = json.dumps({"user_id": user_id, "user_info": {"name": user_id}})
    client.subscribe(
        channel, channel_auth(KEY, SECRET, client.socket_id, channel, channel_data), channel_data
    )
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)


def pusher_js(ws_port: int, name: str) -> NodeClient:
    config: dict[str, Any] = {
        "wsHost": "127.0.0.1",
        "wsPort": ws_port,
        "key": KEY,
        "authEndpoint": "http://127.0.0.1:9/unused",
        "mode": "pusher",
        "subscribe": [{"kind": "public", "name": "lobby"}],
    }
    return NodeClient(config, name=name)


async def test_a_receiver_down_for_several_retries_then_up_gets_every_webhook_once(
    deployment: Deployment,
) -> None:
    (port_a, _), (port_b, _) = deployment.nodes
    receiver = deployment.receiver
    room = "presence-room"

    # pusher-js on both nodes in a public lobby; ada (two tabs, one per node) and bob in a
    # presence room; bob whispers to the room.
    async with pusher_js(port_a, "lobby-a") as lobby_a, pusher_js(port_b, "lobby-b") as lobby_b:
        for browser in (lobby_a, lobby_b):
            await browser.wait_for({"type": "subscribed", "channel": "lobby"}, timeout=20)
        ada = await WsClient.open(port_a, KEY)
        await presence(ada, room, "ada")
        ada_other_tab = await WsClient.open(port_b, KEY)
        await presence(ada_other_tab, room, "ada")
        bob = await WsClient.open(port_b, KEY)
        await presence(bob, room, "bob")
        bob.send({"event": "client-typing", "channel": room, "data": {"text": "hi"}})
        await ada.wait_for("client-typing", channel=room)
        for client in (ada, ada_other_tab, bob):
            await client.close()
    expected = Counter(
        {
            ("channel_occupied", "lobby", None): 1,
            ("channel_vacated", "lobby", None): 1,
            ("channel_occupied", room, None): 1,
            ("member_added", room, "ada"): 1,
            ("member_added", room, "bob"): 1,
            ("client_event", room, "bob"): 1,
            ("member_removed", room, "ada"): 1,
            ("member_removed", room, "bob"): 1,
            ("channel_vacated", room, None): 1,
        }
    )

    async def all_recorded_and_retried() -> bool:
        events = await outbox(deployment.database)
        return len(events) >= expected.total() and events[0].attempts >= 4

    try:
        # The webhooks wait in the outbox while their head is tried again and again.
        await eventually(all_recorded_and_retried, timeout=60)
        assert receiver.requests == []
        await receiver.start()
        await eventually(lambda: _received(receiver, expected.total()), timeout=60)
        await asyncio.sleep(1.5)  # time for a duplicate to show up, if one were sent
    except AssertionError as error:
        raise AssertionError(f"{error}\n{deployment.logs()}") from error

    events = [event for request in receiver.requests for event in _body(request.body)["events"]]
    assert Counter(_identity(event) for event in events) == expected, deployment.logs()
    for channel in ("lobby", room):
        names = [event["name"] for event in events if event["channel"] == channel]
        assert names[0] == "channel_occupied"
        assert names[-1] == "channel_vacated"
    [whisper] = [event for event in events if event["name"] == "client_event"]
    assert whisper["event"] == "client-typing"
    assert whisper["data"] == {"text": "hi"}
    assert whisper["socket_id"] == bob.socket_id

    assert len(receiver.requests) >= 3, "batched by at most 4 events"
    python_sdk = pusher.Pusher(app_id=APP[0], key=KEY, secret=SECRET)
    for request in receiver.requests:
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-pusher-key"] == KEY
        assert verify_signature(SECRET, request.body, request.headers["x-pusher-signature"])
        assert len(_body(request.body)["events"]) <= 4
        # as a receiver built on the PyPI pusher SDK checks them
        assert python_sdk.validate_webhook(
            key=request.headers["x-pusher-key"],
            signature=request.headers["x-pusher-signature"],
            body=request.body.decode(),
        ) == _body(request.body)
    # and one built on the npm pusher SDK
    answer = await run_sdk(
        {"appId": APP[0], "key": KEY, "secret": SECRET, "host": "127.0.0.1", "port": 9},
        {
            "action": "webhook",
            "headers": receiver.requests[0].headers,
            "body": receiver.requests[0].body.decode(),
        },
    )
    assert answer["result"]["valid"] is True, answer
    assert answer["result"]["events"] == _body(receiver.requests[0].body)["events"]

    rows = await outbox(deployment.database)
    assert {row.status for row in rows} == {WebhookStatus.SENT}
    assert len(rows) == expected.total(), "each event stored once"


async def _received(receiver: WebhookReceiver, count: int) -> bool:
    return sum(len(_body(request.body)["events"]) for request in receiver.requests) >= count


def _body(raw: bytes) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(raw)
    return body


def _identity(event: dict[str, Any]) -> tuple[str, str, str | None]:
    return event["name"], event["channel"], event.get("user_id")
