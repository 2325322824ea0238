"""Pusher webhooks: the body and signature, the settings, the sender (order, batches, retries,
giving up, one POST per event), the cluster-wide events over a real Redis, and one process
(``notiflow serve`` without Redis) with pusher-js clients and a real receiver.

The processes end to end (two ``notiflow realtime`` nodes, ``notiflow scheduler``, a receiver
that is down for several retries) are in ``test_webhook_delivery.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pusher
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy import select, update

from notiflow.admin import failed_jobs
from notiflow.config import WEBHOOK_EVENTS, Environment, Settings
from notiflow.kit.ids import utcnow
from notiflow.kit.uow import unit_of_work
from notiflow.main.runtime import Runtime
from notiflow.models import FailedJob, WebhookEvent
from notiflow.models.webhooks import WebhookStatus
from notiflow.realtime.hub import Hub
from notiflow.realtime.protocol import ProtocolConfig
from notiflow.realtime.redis import PREFIX, Cluster, close_redis_hub, redis_hub
from notiflow.realtime.server import RealtimeServer
from notiflow.realtime.signing import channel_auth
from notiflow.realtime.webhooks import (
    ClusterWebhooks,
    LocalWebhooks,
    WebhookApp,
    WebhookOutbox,
    WebhookSender,
    WebhookTiming,
    signed_headers,
    verify_signature,
    webhook_apps,
    webhook_body,
)
from notiflow.realtime.webhooks.events import (
    Recorded,
    RecordedEvents,
    channel_occupied,
    now_ms,
)
from notiflow.realtime.webhooks.tracking import STREAM, _Op, reap_dead_nodes
from tests.admin.webhook_receiver import WebhookReceiver
from tests.conftest import TEST_PUSHER_APP_ID, MakeMember, make_settings
from tests.delivery.processes import eventually
from tests.realtime.conftest import LiveStack
from tests.realtime.node import NodeClient
from tests.realtime.wsclient import WsClient

KEY, SECRET = "hooks-key", "hooks-secret-0123456789"
ALL_EVENTS = frozenset(WEBHOOK_EVENTS)


def hooks_app(
    url: str = "http://receiver.test/pusher", app_id: str = TEST_PUSHER_APP_ID
) -> WebhookApp:
    return WebhookApp(app_id, KEY, SECRET, url, ALL_EVENTS)


# ---------------------------------------------------------------------------- body, signature


def test_a_webhook_is_signed_as_pusher_signs_it() -> None:
    """The vector computed with the npm ``pusher`` SDK (shared/reference)."""
    body = webhook_body([channel_occupied("private-notifications.42")], time_ms=1_700_000_000_000)
    assert body == (
        b'{"time_ms":1700000000000,"events":[{"name":"channel_occupied",'
        b'"channel":"private-notifications.42"}]}'
    )
    app = WebhookApp("1", "app-key", "app-secret", "https://hooks.example/", ALL_EVENTS)
    headers = signed_headers(app, body)
    assert headers == {
        "Content-Type": "application/json",
        "X-Pusher-Key": "app-key",
        "X-Pusher-Signature": "b3dd9e0521911139b3c0858a4af1c3dcf7370d1f9dfdc5773ec103f89ab3481f",
    }
    assert verify_signature("app-secret", body, headers["X-Pusher-Signature"])
    assert not verify_signature("another-secret", body, headers["X-Pusher-Signature"])


# ---------------------------------------------------------------------------- settings


def test_the_webhook_settings_refuse_what_could_not_work() -> None:
    assert webhook_apps(make_settings()) == ()
    [app] = webhook_apps(make_settings(webhook_url="https://hooks.example.com/pusher"))
    assert app.events == {
        "channel_occupied",
        "channel_vacated",
        "member_added",
        "member_removed",
    }, "client events and cache misses only when asked for"
    assert (app.app_id, app.key) == (TEST_PUSHER_APP_ID, "test-app-key")

    for url, reason in [
        ("ftp://hooks.example.com/x", "absolute http(s) URL"),
        ("/relative/path", "absolute http(s) URL"),
        ("https://user:password@hooks.example.com/x", "credentials"),
        ("http://hooks.example.com/x", "https outside development"),
    ]:
        with pytest.raises(ValidationError, match=re.escape(reason)):
            make_settings(webhook_url=url)
    with pytest.raises(ValidationError, match="unknown event member_joined"):
        make_settings(webhook_url="https://h.example/x", webhook_events="member_joined")

    # A receiver on this machine may be plain http; anything goes in development.
    make_settings(webhook_url="http://127.0.0.1:9000/pusher")
    make_settings(webhook_url="http://[::1]:9000/pusher")
    Settings(env=Environment.DEVELOPMENT, webhook_url="http://hooks.example.com/x")
    everything = make_settings(
        webhook_url="http://localhost/x", webhook_events=",".join(ALL_EVENTS)
    )
    assert webhook_apps(everything)[0].events == ALL_EVENTS


# ---------------------------------------------------------------------------- the sender


async def store(outbox: WebhookOutbox, *events: dict[str, Any], age: float = 0.0) -> None:
    at = now_ms() - int(age * 1000)
    await outbox.store([Recorded(TEST_PUSHER_APP_ID, event, at) for event in events])


def posted(request: httpx.Request) -> list[dict[str, Any]]:
    """The events of a request, after checking it is signed as Pusher signs."""
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-pusher-key"] == KEY
    assert verify_signature(SECRET, request.content, request.headers["x-pusher-signature"])
    body = json.loads(request.content)
    assert isinstance(body["time_ms"], int)
    events: list[dict[str, Any]] = body["events"]
    return events


async def rows(runtime: Runtime) -> list[WebhookEvent]:
    async with runtime.sessionmaker() as session:
        return list((await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))).all())


async def drain(sender: WebhookSender, rounds: int = 50) -> None:
    """Run the sender's rounds until nothing waits (sleeping out each backoff)."""
    for _ in range(rounds):
        outcome = await sender.send_due()
        if outcome.wait is None:
            return
        await asyncio.sleep(min(outcome.wait, 0.2))
    raise AssertionError(f"still sending after {rounds} rounds")


async def test_events_go_out_in_order_in_batches_each_once_after_failures(
    runtime: Runtime,
) -> None:
    app = hooks_app()
    outbox = WebhookOutbox(runtime.sessionmaker, [app], retry_horizon_seconds=3600)
    await store(outbox, *(channel_occupied(f"room-{index}") for index in range(7)))
    answers = iter([503, 500, 200, 200, 200])
    requests: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(next(answers))

    timing = WebhookTiming(batch_size=3, backoff_seconds=0.05, backoff_cap_seconds=0.2)
    sender = WebhookSender(
        runtime.sessionmaker, app, timing, transport=httpx.MockTransport(receiver)
    )
    try:
        first = await sender.send_due()
        assert (first.posted, first.delivered) == (3, False)
        assert (await sender.send_due()).wait, "the head waits for its next try"
        await drain(sender)
        assert (await sender.send_due()).wait is None
    finally:
        await sender.close()

    batches = [[event["channel"] for event in posted(request)] for request in requests]
    names = [f"room-{index}" for index in range(7)]
    assert batches == [names[:3], names[:3], names[:3], names[3:6], names[6:]]
    stored = await rows(runtime)
    assert {row.status for row in stored} == {WebhookStatus.SENT}
    assert [row.attempts for row in stored] == [3, 3, 3, 1, 1, 1, 1]
    assert stored[0].last_error is None


async def test_retry_after_is_honoured(runtime: Runtime) -> None:
    app = hooks_app()
    outbox = WebhookOutbox(runtime.sessionmaker, [app], retry_horizon_seconds=3600)
    await store(outbox, channel_occupied("room"))

    def busy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "30"})

    timing = WebhookTiming(backoff_seconds=0.05, backoff_cap_seconds=60)
    sender = WebhookSender(runtime.sessionmaker, app, timing, transport=httpx.MockTransport(busy))
    before = utcnow()
    try:
        await sender.send_due()
    finally:
        await sender.close()
    [row] = await rows(runtime)
    assert row.status == WebhookStatus.PENDING
    assert row.last_error == "HTTP 429"
    assert row.next_attempt_at >= before + timedelta(seconds=30)


async def test_events_are_given_up_at_their_horizon_and_can_be_retried(
    runtime: Runtime,
) -> None:
    app = hooks_app()
    outbox = WebhookOutbox(runtime.sessionmaker, [app], retry_horizon_seconds=60)
    await store(outbox, channel_occupied("old-1"), channel_occupied("old-2"), age=120)
    await store(outbox, channel_occupied("young"))
    alerts: list[str] = []

    class Alerter:
        async def job_failed(self, job_name: str, error: str, tenant_id: Any = None) -> bool:
            alerts.append(f"{job_name}: {error}")
            return True

    def refusing(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    timing = WebhookTiming(backoff_seconds=0.05, backoff_cap_seconds=0.1)
    sender = WebhookSender(
        runtime.sessionmaker,
        app,
        timing,
        alerter=Alerter(),
        transport=httpx.MockTransport(refusing),
    )
    try:
        await sender.send_due()
    finally:
        await sender.close()
    old_1, old_2, young = await rows(runtime)
    assert (old_1.status, old_2.status) == (WebhookStatus.FAILED, WebhookStatus.FAILED)
    assert young.status == WebhookStatus.PENDING, "its horizon is still ahead"
    async with runtime.sessionmaker() as session:
        [failure] = (await session.scalars(select(FailedJob))).all()
    assert failure.job_name == "realtime.webhook"
    assert failure.args == {"app_id": app.app_id, "event_ids": [old_1.id, old_2.id]}
    assert "ConnectError" in failure.exception
    assert len(alerts) == 1
    assert "2 webhook event(s)" in alerts[0]

    # `notiflow jobs retry`: back in the outbox, with a horizon as long as the first one
    async with unit_of_work(runtime.sessionmaker) as session:
        [(_, payload)] = await failed_jobs.retry(session, None)
    assert payload is None, "nothing to enqueue: the sender finds them"
    received: list[str] = []

    def taking(request: httpx.Request) -> httpx.Response:
        received.extend(event["channel"] for event in posted(request))
        return httpx.Response(200)

    sender = WebhookSender(runtime.sessionmaker, app, timing, transport=httpx.MockTransport(taking))
    try:
        await drain(sender)
    finally:
        await sender.close()
    assert received == ["old-1", "old-2", "young"]


async def test_a_webhook_retried_long_after_its_events_passes_the_pusher_sdk(
    runtime: Runtime,
) -> None:
    """The PyPI SDK refuses a webhook whose time_ms is over 5 minutes off its clock."""
    app = hooks_app()
    outbox = WebhookOutbox(runtime.sessionmaker, [app], retry_horizon_seconds=3600)
    await store(outbox, channel_occupied("ten-minutes-ago"), age=600)
    sdk = pusher.Pusher(app_id=app.app_id, key=KEY, secret=SECRET)
    validated: list[Any] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        validated.append(
            sdk.validate_webhook(
                key=request.headers["x-pusher-key"],
                signature=request.headers["x-pusher-signature"],
                body=request.content.decode(),
            )
        )
        return httpx.Response(200)

    sender = WebhookSender(
        runtime.sessionmaker, app, WebhookTiming(), transport=httpx.MockTransport(receiver)
    )
    try:
        await drain(sender)
    finally:
        await sender.close()
    [body] = validated
    assert body is not None, "refused by the SDK"
    assert body["events"] == [{"name": "channel_occupied", "channel": "ten-minutes-ago"}]


async def test_a_crashed_senders_events_are_taken_over_once_its_lease_ran_out(
    runtime: Runtime,
) -> None:
    app = hooks_app()
    outbox = WebhookOutbox(runtime.sessionmaker, [app], retry_horizon_seconds=3600)
    await store(outbox, channel_occupied("a"), channel_occupied("b"))
    received: list[str] = []

    def taking(request: httpx.Request) -> httpx.Response:
        received.extend(event["channel"] for event in posted(request))
        return httpx.Response(200)

    timing = WebhookTiming()
    crashed = WebhookSender(
        runtime.sessionmaker, app, timing, transport=httpx.MockTransport(taking)
    )
    other = WebhookSender(runtime.sessionmaker, app, timing, transport=httpx.MockTransport(taking))
    try:
        assert await crashed._claim()  # claimed, then the process died before posting
        assert (await other.send_due()).wait, "not while the lease holds"
        assert received == []
        # The lease runs out (moved into the past rather than waited for).
        async with runtime.sessionmaker() as session:
            await session.execute(
                update(WebhookEvent).values(lease_until=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        await drain(other)
    finally:
        await crashed.close()
        await other.close()
    assert received == ["a", "b"]
    assert [row.attempts for row in await rows(runtime)] == [2, 2]


async def test_two_senders_at_once_post_each_event_once(runtime: Runtime) -> None:
    app = hooks_app()
    outbox = WebhookOutbox(runtime.sessionmaker, [app], retry_horizon_seconds=3600)
    await store(outbox, *(channel_occupied(f"room-{index}") for index in range(40)))
    received: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.01)
        received.extend(event["channel"] for event in posted(request))
        return httpx.Response(200)

    timing = WebhookTiming(batch_size=5)
    senders = [
        WebhookSender(runtime.sessionmaker, app, timing, transport=httpx.MockTransport(slow))
        for _ in range(2)
    ]
    try:
        await asyncio.gather(*(drain(sender, rounds=100) for sender in senders))
    finally:
        for sender in senders:
            await sender.close()
    assert sorted(received) == sorted(f"room-{index}" for index in range(40))
    assert len(received) == 40, "no event twice"


async def test_the_outbox_keeps_what_the_app_wants_and_each_stream_entry_once(
    runtime: Runtime,
) -> None:
    app = WebhookApp(
        TEST_PUSHER_APP_ID, KEY, SECRET, "https://h.example/", frozenset({"member_added"})
    )
    outbox = WebhookOutbox(runtime.sessionmaker, [app], retry_horizon_seconds=3600)
    added = {"name": "member_added", "channel": "presence-a", "user_id": 7}
    kept = await outbox.store(
        [
            Recorded(app.app_id, added, now_ms(), source_id="1-0"),
            Recorded(app.app_id, channel_occupied("presence-a"), now_ms(), source_id="1-1"),
            Recorded("another-app", added, now_ms(), source_id="1-2"),
        ]
    )
    assert kept == 1
    await outbox.store([Recorded(app.app_id, added, now_ms(), source_id="1-0")])  # read again
    [row] = await rows(runtime)
    assert row.event == added, "the user id keeps its JSON type"


def test_client_events_and_cache_misses_are_recorded_as_pusher_sends_them() -> None:
    recorded = RecordedEvents()
    hooks = LocalWebhooks(hooks_app(), recorded)
    message = b'{"event":"client-typing","channel":"private-chat","data":{"text":"hi"}}'
    hooks.client_event("private-chat", message, "123.456")
    hooks.cache_miss("cache-prices")  # the cache channels call it when nothing is cached
    assert [record.event for record in recorded.peek(10)] == [
        {
            "name": "client_event",
            "channel": "private-chat",
            "event": "client-typing",
            "data": {"text": "hi"},
            "socket_id": "123.456",
        },
        {"name": "cache_miss", "channel": "cache-prices"},
    ], "user_id only on presence channels"


# ---------------------------------------------------------------------------- one process


@pytest.fixture
async def local_hooks(
    live: LiveStack,
) -> AsyncIterator[tuple[LiveStack, WebhookReceiver]]:
    """The live stack as ``notiflow serve`` runs it without Redis: its hub records into its
    own outbox, which posts to a real receiver."""
    receiver = await WebhookReceiver().start()
    runtime = live.runtime
    runtime.settings = runtime.settings.model_copy(
        update={"webhook_url": receiver.url, "webhook_events": ",".join(ALL_EVENTS)}
    )
    [app] = webhook_apps(runtime.settings)
    outbox = WebhookOutbox(runtime.sessionmaker, [app], retry_horizon_seconds=3600)
    live.realtime.hub.webhooks = LocalWebhooks(app, outbox.recorded)
    sender = WebhookSender(runtime.sessionmaker, app, WebhookTiming(backoff_seconds=0.05))
    tasks = [
        asyncio.create_task(outbox.write_forever()),
        asyncio.create_task(sender.run_forever(outbox.stored_event(app.app_id))),
    ]
    try:
        yield live, receiver
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()
        await receiver.stop()


def received_events(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for request in receiver.requests:
        events += json.loads(request.body)["events"]
    return events


async def test_pusher_js_presence_makes_each_webhook_once(
    local_hooks: tuple[LiveStack, WebhookReceiver], make_member: MakeMember
) -> None:
    live, receiver = local_hooks
    ada = await make_member("acme")
    bob = await make_member("acme")
    channel = f"presence-tenant.{ada.tenant_id}"
    entry = {"kind": "presence", "name": f"tenant.{ada.tenant_id}"}

    def browser(member: Any) -> dict[str, Any]:
        return {
            "wsHost": "127.0.0.1",
            "wsPort": live.ws_port,
            "key": live.key,
            "authEndpoint": f"{live.api_url}/broadcasting/auth",
            "token": member.token,
            "mode": "pusher",
            "subscribe": [entry],
        }

    async with NodeClient(browser(ada), name="ada") as ada_tab:
        await ada_tab.wait_for({"type": "subscribed", "channel": channel})
        async with NodeClient(browser(ada), name="ada-2") as ada_second_tab:
            await ada_second_tab.wait_for({"type": "subscribed", "channel": channel})
            async with NodeClient(browser(bob), name="bob") as bob_tab:
                bob_socket = await bob_tab.connected()
                await bob_tab.wait_for({"type": "subscribed", "channel": channel})
                await bob_tab.send(
                    {"cmd": "whisper", "channel": channel, "event": "typing", "data": {"n": 1}}
                )
                await ada_tab.wait_for({"type": "event", "event": "client-typing"})
            await ada_tab.wait_for({"type": "presence", "action": "leaving"})

    expected = [
        {"name": "channel_occupied", "channel": channel},
        {"name": "member_added", "channel": channel, "user_id": str(ada.id)},
        {"name": "member_added", "channel": channel, "user_id": str(bob.id)},
        {
            "name": "client_event",
            "channel": channel,
            "event": "client-typing",
            "data": {"n": 1},
            "socket_id": bob_socket,
            "user_id": str(bob.id),
        },
        {"name": "member_removed", "channel": channel, "user_id": str(bob.id)},
        {"name": "member_removed", "channel": channel, "user_id": str(ada.id)},
        {"name": "channel_vacated", "channel": channel},
    ]
    await eventually(lambda: _at_least(receiver, len(expected)))
    await asyncio.sleep(0.3)  # nothing more comes
    assert received_events(receiver) == expected, "in order, each once"
    for request in receiver.requests:
        assert request.headers["x-pusher-key"] == live.key
        assert verify_signature(live.secret, request.body, request.headers["x-pusher-signature"])


async def test_a_cache_channel_subscribed_with_nothing_cached_makes_a_cache_miss_webhook(
    local_hooks: tuple[LiveStack, WebhookReceiver],
) -> None:
    live, receiver = local_hooks
    client = await WsClient.open(live.ws_port, live.key)
    client.subscribe("cache-prices")
    await client.wait_for("pusher:cache_miss", channel="cache-prices")
    await client.close()
    expected = [
        {"name": "channel_occupied", "channel": "cache-prices"},
        {"name": "cache_miss", "channel": "cache-prices"},
        {"name": "channel_vacated", "channel": "cache-prices"},
    ]
    await eventually(lambda: _at_least(receiver, len(expected)))
    assert received_events(receiver) == expected


async def _at_least(receiver: WebhookReceiver, count: int) -> bool:
    return len(received_events(receiver)) >= count


# ---------------------------------------------------------------------------- the cluster


class Node:
    def __init__(
        self, hub: Hub, cluster: Cluster, server: RealtimeServer, webhooks: ClusterWebhooks
    ) -> None:
        self.hub = hub
        self.cluster = cluster
        self.server = server
        self.webhooks = webhooks

    async def client(self) -> WsClient:
        return await WsClient.open(self.server.port, KEY)

    async def settled(self) -> None:
        """Until this node's transitions have reached Redis."""
        await eventually(self._settled)

    async def _settled(self) -> bool:
        await asyncio.sleep(0.02)
        return self.webhooks.pending == 0 and not self.server._tasks

    def crash(self) -> None:
        """Stop recording (what it had not sent is lost with it)."""
        task = self.webhooks._task
        assert task is not None
        task.cancel()


@pytest.fixture
async def nodes(redis: Redis) -> AsyncIterator[list[Node]]:
    started: list[Node] = []
    app = hooks_app()
    for name in ("node-a", "node-b"):
        hub, cluster = await redis_hub(redis, name)
        webhooks = ClusterWebhooks(app, redis, cluster)
        hub.webhooks = webhooks
        webhooks.start()
        server = RealtimeServer(ProtocolConfig(KEY, SECRET), hub)
        await server.start("127.0.0.1", 0)
        started.append(Node(hub, cluster, server, webhooks))
    yield started
    for node in started:
        await node.server.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await node.webhooks.stop(wait=1.0)
        await close_redis_hub(node.hub, node.cluster)


async def stream(redis: Redis) -> list[dict[str, Any]]:
    """Every event the nodes decided, in the order they were decided."""
    events = []
    for _, fields in await redis.xrange(STREAM):
        assert fields[b"app"].decode() == TEST_PUSHER_APP_ID
        events.append(json.loads(fields[b"event"]))
    return events


async def subscribe(client: WsClient, channel: str, user_id: Any = None) -> None:
    channel_data = None
    if user_id is not None:
        channel_data = json.dumps({"user_id": user_id, "user_info": {"name": str(user_id)}})
    auth = None
    if not channel.startswith(("presence-", "private-")):
        client.subscribe(channel)
    else:
        auth = channel_auth(KEY, SECRET, client.socket_id, channel, channel_data)
        client.subscribe(channel, auth, channel_data)
    await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)


async def test_a_channel_is_occupied_and_vacated_once_for_the_cluster(
    nodes: list[Node], redis: Redis
) -> None:
    a, b = nodes
    # a crowd on both nodes arriving at once: one channel_occupied
    clients = [await node.client() for node in (a, b) for _ in range(5)]
    await asyncio.gather(*(subscribe(client, "private-orders") for client in clients))
    for node in nodes:
        await node.settled()
    assert await stream(redis) == [{"name": "channel_occupied", "channel": "private-orders"}]

    # all but the last leave, on either node: nothing; the last: one channel_vacated
    for client in clients[:-1]:
        await client.close()
    await asyncio.sleep(0.3)
    for node in nodes:
        await node.settled()
    assert len(await stream(redis)) == 1
    await clients[-1].close()
    await eventually(lambda: _stream_length(redis, 2))
    await asyncio.sleep(0.3)
    for node in nodes:
        await node.settled()
    assert await stream(redis) == [
        {"name": "channel_occupied", "channel": "private-orders"},
        {"name": "channel_vacated", "channel": "private-orders"},
    ]


async def _stream_length(redis: Redis, length: int) -> bool:
    return len(await stream(redis)) >= length


async def test_members_are_added_and_removed_once_per_user_across_nodes(
    nodes: list[Node], redis: Redis
) -> None:
    a, b = nodes
    channel = "presence-team"
    ada = await a.client()
    await subscribe(ada, channel, "ada")
    ada_other_tab = await b.client()
    await subscribe(ada_other_tab, channel, "ada")
    bob = await b.client()
    await subscribe(bob, channel, "bob")
    bob.send({"event": "client-typing", "channel": channel, "data": {"text": "hi"}})
    await ada.wait_for("client-typing", channel=channel)
    await ada.close()
    await asyncio.sleep(0.3)
    for node in nodes:
        await node.settled()
    assert Counter(event["name"] for event in await stream(redis)) == {
        "channel_occupied": 1,
        "member_added": 2,
        "client_event": 1,
    }, "ada's second tab, and her first tab leaving, are no news"
    await ada_other_tab.close()
    await bob.close()
    await eventually(lambda: _stream_length(redis, 7))
    await asyncio.sleep(0.3)
    for node in nodes:
        await node.settled()
    assert await stream(redis) == [
        {"name": "channel_occupied", "channel": channel},
        {"name": "member_added", "channel": channel, "user_id": "ada"},
        {"name": "member_added", "channel": channel, "user_id": "bob"},
        {
            "name": "client_event",
            "channel": channel,
            "event": "client-typing",
            "data": {"text": "hi"},
            "socket_id": bob.socket_id,
            "user_id": "bob",
        },
        {"name": "member_removed", "channel": channel, "user_id": "ada"},
        {"name": "member_removed", "channel": channel, "user_id": "bob"},
        {"name": "channel_vacated", "channel": channel},
    ]


async def test_a_member_is_added_and_removed_once_whatever_the_type_of_its_id(
    nodes: list[Node], redis: Redis
) -> None:
    """42 and "42" are one presence member (docs/realtime.md), for the webhooks too: the id the
    receiver gets is the first connection's, a number."""
    a, b = nodes
    channel = "presence-typed"
    as_number = await a.client()
    await subscribe(as_number, channel, 42)
    as_text = await b.client()
    await subscribe(as_text, channel, "42")
    await as_number.close()
    await asyncio.sleep(0.3)
    for node in nodes:
        await node.settled()
    assert [event["name"] for event in await stream(redis)] == [
        "channel_occupied",
        "member_added",
    ], "the second connection, and the first one leaving, are no news"
    await as_text.close()
    await eventually(lambda: _stream_length(redis, 4))
    events = await stream(redis)
    assert events[1] == {"name": "member_added", "channel": channel, "user_id": 42}
    assert [event["name"] for event in events[2:]] == ["member_removed", "channel_vacated"]
    assert str(events[2]["user_id"]) == "42"


async def test_a_dead_nodes_channels_end_unless_another_node_took_them_over(
    nodes: list[Node], redis: Redis
) -> None:
    a, b = nodes
    on_b = [await b.client() for _ in range(2)]
    await subscribe(on_b[0], "private-left-behind")
    await subscribe(on_b[1], "presence-room", "ada")
    await b.settled()
    assert len(await stream(redis)) == 3  # two channels occupied, ada added

    b.crash()
    await b.cluster.stop()  # its heartbeat is gone: b is dead for the cluster
    # ada reconnects to node a before anyone noticed: no news for the receiver
    ada_again = await a.client()
    await subscribe(ada_again, "presence-room", "ada")
    await a.settled()
    assert len(await stream(redis)) == 3

    ended = await reap_dead_nodes(redis, [hooks_app()])
    assert ended == 1
    assert (await stream(redis))[3:] == [
        {"name": "channel_vacated", "channel": "private-left-behind"}
    ]
    assert await reap_dead_nodes(redis, [hooks_app()]) == 0, "reaped once"
    await ada_again.close()
    await eventually(lambda: _stream_length(redis, 6))
    assert (await stream(redis))[4:] == [
        {"name": "member_removed", "channel": "presence-room", "user_id": "ada"},
        {"name": "channel_vacated", "channel": "presence-room"},
    ]


async def test_a_batch_sent_again_is_applied_once(nodes: list[Node], redis: Redis) -> None:
    """Redis may go away after running a batch but before answering: the node sends it again."""
    a, _ = nodes
    client = await a.client()
    await subscribe(client, "private-once")
    await a.settled()
    webhooks = a.webhooks
    # the join again, under the sequence number it was applied with
    event = json.dumps(channel_occupied("private-once"), separators=(",", ":"))
    replayed = _Op(webhooks._applied, "join", "ch:private-once", event, "", now_ms())
    webhooks._pending.append(replayed)
    webhooks._wake.set()
    await a.settled()
    assert await stream(redis) == [{"name": "channel_occupied", "channel": "private-once"}]


async def test_a_node_writes_its_holdings_again_when_redis_lost_them(
    nodes: list[Node], redis: Redis
) -> None:
    a, b = nodes
    on_a = await a.client()
    await subscribe(on_a, "private-kept")
    await a.settled()
    # Redis restarted empty: every webhook key and the stream are gone
    keys = [key async for key in redis.scan_iter(f"{PREFIX}:wh:*")]
    await redis.delete(*keys, STREAM)
    # the next change on node a writes its holdings first: its channel is announced again (the
    # receiver's view may have been lost with Redis), and b joining it is no news
    other = await a.client()
    await subscribe(other, "private-other")
    on_b = await b.client()
    await subscribe(on_b, "private-kept")
    for node in nodes:
        await node.settled()
    assert await stream(redis) == [
        {"name": "channel_occupied", "channel": "private-kept"},
        {"name": "channel_occupied", "channel": "private-other"},
    ]
