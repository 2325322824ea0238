"""Several Pusher apps on one notiflow: each app's key, secret, limits and channels, apart.

The real clients: pusher-js 8.6 (a backend's authorizer signing with each app's secret), the npm
``pusher`` SDK and the PyPI ``pusher`` SDK; one process for the in-process tests, and a
``notiflow serve`` plus a ``notiflow realtime`` over Redis for the cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pusher
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from notiflow.kit.errors import TooManyRequests
from notiflow.main.runtime import (
    Runtime,
    app_hubs,
    channel_cache,
    create_runtime,
    replay_source,
    wire_realtime,
)
from notiflow.realtime.apps import ApiRateLimiter, PusherApp
from notiflow.realtime.hub import Hub
from notiflow.realtime.server import build_realtime_server
from notiflow.realtime.signing import channel_auth, request_signature, user_auth
from notiflow.realtime.webhooks import LocalWebhooks, verify_signature
from tests.admin.webhook_receiver import WebhookReceiver
from tests.conftest import REDIS_URL, MakeMember, make_settings
from tests.delivery.processes import (
    NOTIFLOW,
    NotiflowProcess,
    eventually,
    free_port,
    notiflow_env,
    scale_out_env,
)
from tests.realtime.conftest import LiveStack, start_api
from tests.realtime.node import NodeClient, run_sdk
from tests.realtime.wsclient import WsClient

# Generous bounds for a busy machine; none of them is a measurement.
EVENT_BOUND = 30.0

App = tuple[str, str, str]  # id, key, secret
SECOND: App = ("202", "second-key", "sEc0nd-app-Qx7Lp2Vz9Kd4Rw")
QUIET: App = ("303", "quiet-key", "qU1et-app-Mn5Bv8Cx3Zl6Pk")
METERED: App = ("404", "metered-key", "m3Tered-app-Hy4Gt7Fr2Ds9")
# A window long enough that the requests of a busy machine fall within it.
METERED_LIMIT = "3 per 10 seconds"
APPS = [
    {"id": SECOND[0], "key": SECOND[1], "secret": SECOND[2], "max_presence_members": 2},
    {
        "id": QUIET[0],
        "key": QUIET[1],
        "secret": QUIET[2],
        "client_events": False,
        "max_connections": 2,
    },
    {"id": METERED[0], "key": METERED[1], "secret": METERED[2], "api_rate_limit": METERED_LIMIT},
]


@pytest.fixture
async def apps_live(runtime: Runtime) -> AsyncIterator[LiveStack]:
    """The API and the WebSocket server of one process serving the default app and APPS."""
    settings = make_settings(
        database_url=runtime.settings.database_url, pusher_apps=json.dumps(APPS)
    )
    runtime.settings = settings
    runtime.hub = Hub(presence_limit=settings.ws_presence_limit, cache=channel_cache(settings))
    runtime.app_hubs = app_hubs(settings)
    wire_realtime(runtime)
    realtime = build_realtime_server(
        settings, runtime.hub, replay_source(settings, runtime.sessionmaker), runtime.app_hubs
    )
    await realtime.start("127.0.0.1", 0)
    server, task, port = await start_api(runtime)
    try:
        yield LiveStack(runtime=runtime, realtime=realtime, api_port=port)
    finally:
        server.should_exit = True
        await task
        await realtime.stop()


def default_app(live: LiveStack) -> App:
    return (live.runtime.settings.pusher_app_id, live.key, live.secret)


def sdk_config(app: App, api_port: int) -> dict[str, Any]:
    app_id, key, secret = app
    return {
        "appId": app_id,
        "key": key,
        "secret": secret,
        "host": "127.0.0.1",
        "port": api_port,
        "useTLS": False,
    }


def tab(
    ws_port: int,
    app: App,
    user_id: Any,
    subscribe: list[dict[str, Any]],
    *,
    secret: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A pusher-js front end of ``app`` whose backend signs its subscriptions as ``user_id``
    (with ``secret``, the app's own unless given)."""
    return {
        "wsHost": "127.0.0.1",
        "wsPort": ws_port,
        "key": app[1],
        "authEndpoint": "http://127.0.0.1:9/unused",
        "mode": "pusher",
        "signAs": {
            "secret": secret or app[2],
            "user_id": user_id,
            "user_info": {"app": app[0]},
        },
        "subscribe": subscribe,
        **extra,
    }


ROOM = {"kind": "presence", "name": "presence-room"}
LOBBY = {"kind": "public", "name": "lobby"}
CHAT = {"kind": "private", "name": "private-chat"}


async def subscribed(client: NodeClient, *channels: str) -> None:
    for channel in channels:
        await client.wait_for({"type": "subscribed", "channel": channel}, EVENT_BOUND)


def signed_params(
    app: App, method: str, path: str, body: bytes = b"", **query: str
) -> dict[str, str]:
    """Query parameters of a Pusher HTTP API request signed as the SDKs sign it."""
    _, key, secret = app
    params = {
        "auth_key": key,
        "auth_timestamp": str(int(time.time())),
        "auth_version": "1.0",
        **query,
    }
    if body:
        params["body_md5"] = hashlib.md5(body).hexdigest()  # noqa: S324 - Pusher's scheme
    params["auth_signature"] = request_signature(secret, method, path, params)
    return params


async def api_get(http: httpx.AsyncClient, app: App, path: str, **query: str) -> httpx.Response:
    full = f"/apps/{app[0]}{path}"
    return await http.get(full, params=signed_params(app, "GET", full, **query))


async def open_presence(port: int, app: App, channel: str, user_id: Any) -> WsClient:
    """A raw connection of ``app`` that subscribes to a presence channel as ``user_id``."""
    client = await WsClient.open(port, app[1])
    channel_data = json.dumps({"user_id": user_id, "user_info": {}})
    auth = channel_auth(app[1], app[2], client.socket_id, channel, channel_data)
    client.subscribe(channel, auth, channel_data)
    return client


async def first_message(client: WsClient) -> dict[str, Any]:
    """What the server said first: connection_established, or the refusal."""
    deadline = time.monotonic() + EVENT_BOUND
    while not client.messages:
        assert time.monotonic() < deadline, "the server said nothing"
        await asyncio.sleep(0.05)
    return client.messages[0]


# ---------------------------------------------------------------- one process


async def test_two_apps_on_one_server_never_see_each_others_events_members_or_channels(
    apps_live: LiveStack,
) -> None:
    live = apps_live
    port = live.ws_port
    home = default_app(live)
    # The same user id and the same channel names in both apps.
    async with (
        NodeClient(tab(port, home, 1, [ROOM, LOBBY, CHAT]), name="home 1") as home_1,
        NodeClient(tab(port, SECOND, 1, [ROOM, LOBBY, CHAT]), name="second 1") as second_1,
    ):
        for client in (home_1, second_1):
            await subscribed(client, "presence-room", "lobby", "private-chat")
            here = await client.wait_for({"type": "presence", "action": "here"}, EVENT_BOUND)
            assert here["count"] == 1, client.transcript()
        async with NodeClient(tab(port, SECOND, 2, [ROOM, LOBBY, CHAT]), name="second 2") as two:
            await subscribed(two, "presence-room", "lobby", "private-chat")
            joining = await second_1.wait_for(
                {"type": "presence", "action": "joining"}, EVENT_BOUND
            )
            assert joining["member"]["id"] == 2
            here = await two.wait_for({"type": "presence", "action": "here"}, EVENT_BOUND)
            # pusher-js keys its member list by the ids' string form
            assert sorted(m["id"] for m in here["members"]) == ["1", "2"], two.transcript()

            # the HTTP API of each app publishes to its own subscribers only
            answer = await run_sdk(
                sdk_config(SECOND, live.api_port),
                {"action": "trigger", "channel": "lobby", "event": "ForSecond", "data": {"n": 2}},
            )
            assert answer["status"] == 200, answer
            for client in (second_1, two):
                event = await client.wait_for({"type": "event", "event": "ForSecond"}, EVENT_BOUND)
                assert event["data"] == {"n": 2}
            answer = await run_sdk(
                sdk_config(home, live.api_port),
                {"action": "trigger", "channel": "lobby", "event": "ForHome", "data": {"n": 1}},
            )
            assert answer["status"] == 200, answer
            await home_1.wait_for({"type": "event", "event": "ForHome"}, EVENT_BOUND)

            # client events stay in their app too
            await home_1.send(
                {"cmd": "whisper", "channel": "private-chat", "event": "typing", "data": {"a": 0}}
            )
            await second_1.send(
                {"cmd": "whisper", "channel": "private-chat", "event": "typing", "data": {"a": 1}}
            )
            whisper = await two.wait_for({"type": "event", "event": "client-typing"}, EVENT_BOUND)
            assert whisper["data"] == {"a": 1}

            # counts and members per app
            async with httpx.AsyncClient(base_url=live.api_url) as http:
                second_channels = (await api_get(http, SECOND, "/channels")).json()
                home_channels = (await api_get(http, home, "/channels")).json()
                lobby = await api_get(http, SECOND, "/channels/lobby", info="subscription_count")
                second_users = (await api_get(http, SECOND, "/channels/presence-room/users")).json()
                home_users = (await api_get(http, home, "/channels/presence-room/users")).json()
            assert set(second_channels["channels"]) == {"presence-room", "lobby", "private-chat"}
            assert set(home_channels["channels"]) == {"presence-room", "lobby", "private-chat"}
            assert lobby.json() == {"occupied": True, "subscription_count": 2}, lobby.text
            assert sorted(user["id"] for user in second_users["users"]) == [1, 2]
            assert home_users == {"users": [{"id": 1}]}

            for silent in ("ForSecond", "client-typing"):
                await home_1.assert_silent({"type": "event", "event": silent}, within=0.5)
            await second_1.assert_silent({"type": "event", "event": "ForHome"}, within=0.3)
            await two.assert_silent({"type": "event", "event": "ForHome"}, within=0.3)
        await home_1.assert_silent({"type": "presence", "action": "joining"}, within=0.3)
        await home_1.assert_silent({"type": "presence", "action": "leaving"}, within=0.3)


async def test_each_app_signs_with_its_own_secret_only(apps_live: LiveStack) -> None:
    live = apps_live
    home = default_app(live)
    # a subscription of the second app signed with the default app's secret
    wrong = tab(live.ws_port, SECOND, 1, [CHAT], secret=home[2])
    async with NodeClient(wrong, name="wrong secret") as client:
        refused = await client.wait_for({"type": "subscription_error"}, EVENT_BOUND)
        assert refused["channel"] == "private-chat"
        assert refused["error"]["status"] == 401, client.transcript()

    # the HTTP API: another app's secret, another app's key, an unknown app
    config = sdk_config(SECOND, live.api_port)
    trigger = {"action": "trigger", "channel": "lobby", "event": "E", "data": {}}
    foreign_secret = await run_sdk({**config, "secret": home[2]}, trigger)
    assert foreign_secret["status"] == 401, foreign_secret
    foreign_key = await run_sdk({**config, "key": home[1], "secret": home[2]}, trigger)
    assert foreign_key["status"] == 401, foreign_key
    unknown = await run_sdk({**config, "appId": "999"}, trigger)
    assert unknown["status"] == 404, unknown

    # a sign-in is checked with the connection's app's secret
    client = await WsClient.open(live.ws_port, SECOND[1])
    user_data = json.dumps({"id": "ada"})
    forged = user_auth(SECOND[1], home[2], client.socket_id, user_data)
    client.send({"event": "pusher:signin", "data": {"auth": forged, "user_data": user_data}})
    assert (await client.wait_for("pusher:error", timeout=EVENT_BOUND))["data"]["code"] == 4009
    assert await client.wait_closed(timeout=EVENT_BOUND) == 4009


async def test_terminate_connections_ends_the_users_connections_of_its_app_only(
    apps_live: LiveStack,
) -> None:
    """The same user id signed in on two apps: the PyPI SDK's terminate (which finds the app by
    its key) closes the second app's connection; the default app's stays."""
    live = apps_live
    home = default_app(live)
    user_data = json.dumps({"id": "ada"})
    clients: dict[str, WsClient] = {}
    for app in (home, SECOND):
        client = await WsClient.open(live.ws_port, app[1])
        auth = user_auth(app[1], app[2], client.socket_id, user_data)
        client.send({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})
        await client.wait_for("pusher:signin_success", timeout=EVENT_BOUND)
        clients[app[0]] = client
    sdk = pusher.Pusher(
        app_id=SECOND[0], key=SECOND[1], secret=SECOND[2], host="127.0.0.1",
        port=live.api_port, ssl=False,
    )  # fmt: skip
    await asyncio.to_thread(sdk.send_to_user, "ada", "Hello", {"app": "second"})
    hello = await clients[SECOND[0]].wait_for("Hello", timeout=EVENT_BOUND)
    assert json.loads(hello["data"]) == {"app": "second"}
    await asyncio.to_thread(sdk.terminate_user_connections, "ada")
    assert await clients[SECOND[0]].wait_closed(timeout=EVENT_BOUND) == 4009
    others = await clients[home[0]].quiet(0.5)
    assert [m for m in others if m.get("event") in ("Hello", "pusher:error")] == []
    assert not clients[home[0]].transport.is_disconnected
    await clients[home[0]].close()


async def test_an_app_over_its_connection_limit_refuses_with_4100_and_client_events_off_4301(
    apps_live: LiveStack,
) -> None:
    live = apps_live
    port = live.ws_port
    async with NodeClient(tab(port, QUIET, 7, [CHAT]), name="quiet") as quiet:
        await subscribed(quiet, "private-chat")
        await quiet.send(
            {"cmd": "whisper", "channel": "private-chat", "event": "typing", "data": {}}
        )
        refused = await quiet.wait_for({"type": "channel_error"}, EVENT_BOUND)
        assert refused["channel"] == "private-chat"
        assert refused["error"]["code"] == 4301, quiet.transcript()

        second = await WsClient.open(port, QUIET[1])  # the app's 2nd connection: its limit
        third = await WsClient.connect(f"ws://127.0.0.1:{port}/app/{QUIET[1]}?protocol=7")
        error = await third.wait_for("pusher:error", timeout=EVENT_BOUND)
        assert error["data"]["code"] == 4100, error
        assert await third.wait_closed(timeout=EVENT_BOUND) == 4100
        # other apps are not limited by it
        for app_key in (live.key, SECOND[1]):
            other = await WsClient.open(port, app_key)
            await other.close()
        await second.close()

        async def room_again() -> bool:
            again = await WsClient.connect(f"ws://127.0.0.1:{port}/app/{QUIET[1]}?protocol=7")
            try:
                established = await again.wait_for(
                    "pusher:connection_established", timeout=EVENT_BOUND
                )
            except AssertionError:
                return False
            finally:
                await again.close()
            return bool(established)

        await eventually(room_again, timeout=EVENT_BOUND)


async def test_each_app_has_its_own_presence_member_limit(apps_live: LiveStack) -> None:
    live = apps_live
    port = live.ws_port
    home = default_app(live)
    channel = "presence-full"
    opened: list[WsClient] = []
    try:
        for user_id in (1, 2):
            client = await open_presence(port, SECOND, channel, user_id)
            opened.append(client)
            await client.wait_for("pusher_internal:subscription_succeeded", timeout=EVENT_BOUND)
        third = await open_presence(port, SECOND, channel, 3)
        opened.append(third)
        refused = await third.wait_for("pusher:subscription_error", timeout=EVENT_BOUND)
        assert refused["data"]["type"] == "LimitReached"
        assert refused["data"]["status"] == 4100
        # the default app (NOTIFLOW_WS_PRESENCE_LIMIT, 100) takes three in a channel of that name
        for user_id in (1, 2, 3):
            client = await open_presence(port, home, channel, user_id)
            opened.append(client)
            await client.wait_for("pusher_internal:subscription_succeeded", timeout=EVENT_BOUND)
    finally:
        for client in opened:
            await client.close()


async def test_an_app_over_its_api_rate_limit_gets_429_then_ok_after_the_window(
    apps_live: LiveStack,
) -> None:
    live = apps_live
    home = default_app(live)
    async with httpx.AsyncClient(base_url=live.api_url) as http:
        limited: httpx.Response | None = None
        for _ in range(20):  # 3 per 10 s: the 4th within the window, on any machine
            answer = await api_get(http, METERED, "/channels")
            if answer.status_code == 429:
                limited = answer
                break
            assert answer.status_code == 200, answer.text
        assert limited is not None, "never limited"
        assert limited.json()["error"]["code"] == "too_many_requests", limited.text
        assert "404" in limited.json()["error"]["message"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 11
        # the other apps are not limited by it
        assert (await api_get(http, home, "/channels")).status_code == 200
        assert (await api_get(http, SECOND, "/channels")).status_code == 200

        async def allowed_again() -> bool:
            return (await api_get(http, METERED, "/channels")).status_code == 200

        await eventually(allowed_again, timeout=60)


# ---------------------------------------------------------------- configuration


def test_apps_come_from_json_or_a_file_and_must_be_unique(tmp_path: Path) -> None:
    settings = make_settings(pusher_apps=json.dumps(APPS))
    assert [app.key for app in settings.pusher_apps] == [SECOND[1], QUIET[1], METERED[1]]
    assert settings.pusher_apps[1].client_events is False
    apps_file = tmp_path / "apps.json"
    apps_file.write_text(json.dumps(APPS[:1]))
    from_file = make_settings(pusher_apps_file=str(apps_file))
    assert [app.id for app in from_file.pusher_apps] == [SECOND[0]]
    assert make_settings().pusher_apps == []

    cases = {
        "app key 'second-key' is used by more than one app": [
            APPS[0],
            {**APPS[1], "key": "second-key"},
        ],
        "app id '202' is used by more than one app": [APPS[0], {**APPS[1], "id": "202"}],
        "NOTIFLOW_PUSHER_APPS[0].api_rate_limit": [{**APPS[0], "api_rate_limit": "often"}],
        "NOTIFLOW_PUSHER_APPS[0].max_conections: Extra inputs": [{**APPS[0], "max_conections": 1}],
        "must be a random value of at least 16": [{**APPS[0], "secret": "short"}],
        "looks typed rather than random": [{**APPS[0], "secret": "aaaaaaaaaaaaaaaaaaaaaaa"}],
        "webhook_url must be an absolute http(s) URL": [{**APPS[0], "webhook_url": "nope"}],
    }
    for message, apps in cases.items():
        with pytest.raises(ValidationError, match=re.escape(message)):
            make_settings(pusher_apps=json.dumps(apps))
    # the default app's key is taken too
    with pytest.raises(ValidationError, match="used by more than one app"):
        make_settings(pusher_apps=json.dumps([{**APPS[0], "key": make_settings().pusher_app_key}]))
    with pytest.raises(ValidationError, match="not valid JSON"):
        make_settings(pusher_apps="[{")
    with pytest.raises(ValidationError, match="not both"):
        make_settings(pusher_apps=json.dumps(APPS), pusher_apps_file=str(apps_file))
    with pytest.raises(ValidationError, match="cannot be read"):
        make_settings(pusher_apps_file=str(tmp_path / "missing.json"))
    # in development a weak secret is accepted, as the default app's is
    assert make_settings(env="development", pusher_apps=json.dumps([{**APPS[0], "secret": "x"}]))


def test_a_bad_apps_configuration_stops_the_server_with_one_clear_line(tmp_path: Path) -> None:
    duplicate = [APPS[0], {**APPS[1], "key": SECOND[1]}]
    weak = [{**APPS[0], "secret": "password"}]
    production = {
        "env": "production",
        "secret_key": "Zt8qLr3vNw6yBx1cKe9mPj4sHa7uGd2f",
        "pusher_app_secret": "Vn4kPx9rTz2wMb6qLs8c",
        "mail_driver": "file",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
    }
    for apps, extra, expected in (
        (duplicate, {}, "app key 'second-key' is used by more than one app"),
        (weak, production, "the secret of app 202 must be a random value"),
    ):
        env = notiflow_env(pusher_apps=json.dumps(apps), ws_port=str(free_port()), **extra)
        result = subprocess.run(  # noqa: S603 - our own console script
            [NOTIFLOW, "realtime"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        error = json.loads(lines[0])["error"]
        assert error["code"] == "configuration_error"
        assert expected in error["message"], error


# ---------------------------------------------------------------- two nodes (real processes)


async def test_two_nodes_over_redis_keep_apps_apart_count_connections_and_send_each_apps_webhooks(
    processes: list[NotiflowProcess],
    redis: Redis,  # empties the test database around the test
    tmp_path: Path,
) -> None:
    """``notiflow serve`` (node A) and ``notiflow realtime`` (node B) over Redis, the apps read
    from a file. Presence and events of the second app cross the nodes and reach none of the
    default app's clients on the same channel names; the quiet app's connection limit counts
    both nodes; the second app's webhooks go to its own receiver, signed with its secret."""
    receiver = await WebhookReceiver().start()
    home: App = ("4848", "home-key", "h0me-app-Wq3Er6Ty9Ui2Op")
    apps = [
        {**APPS[0], "webhook_url": receiver.url},
        APPS[1],
    ]
    apps_file = tmp_path / "apps.json"
    apps_file.write_text(json.dumps(apps))
    api_port, ws_a, ws_b, http_b = free_port(), free_port(), free_port(), free_port()
    env = scale_out_env(
        tmp_path,
        REDIS_URL,
        api_port,
        home,
        pusher_apps_file=str(apps_file),
        webhook_backoff_seconds="0.2",
    )
    try:
        node_a = await NotiflowProcess(
            ["serve", "--port", str(api_port), "--ws-port", str(ws_a)],
            env,
            ready_url=f"http://127.0.0.1:{api_port}/health",
        ).start()
        processes.append(node_a)
        node_b = await NotiflowProcess(
            ["realtime", "--port", str(ws_b), "--http-port", str(http_b)],
            env,
            ready_url=f"http://127.0.0.1:{http_b}/health",
        ).start()
        processes.append(node_b)
        try:
            await _apps_across_nodes(home, api_port, ws_a, ws_b, receiver)
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{node_a.logs()}\n{node_b.logs()}") from None
    finally:
        await receiver.stop()


async def _apps_across_nodes(
    home: App, api_port: int, ws_a: int, ws_b: int, receiver: WebhookReceiver
) -> None:
    async with (
        NodeClient(tab(ws_a, SECOND, 1, [ROOM]), name="second 1 on a") as second_a,
        NodeClient(tab(ws_b, SECOND, 2, [ROOM]), name="second 2 on b") as second_b,
        NodeClient(tab(ws_b, home, 3, [ROOM]), name="home 3 on b") as home_b,
    ):
        for client in (second_a, second_b, home_b):
            await subscribed(client, "presence-room")

        async def both_members() -> bool:
            answer = await run_sdk(
                sdk_config(SECOND, api_port), {"action": "users", "channel": "presence-room"}
            )
            return sorted(user["id"] for user in answer["body"]["users"]) == [1, 2]

        await eventually(both_members, timeout=EVENT_BOUND)
        home_users = await run_sdk(
            sdk_config(home, api_port), {"action": "users", "channel": "presence-room"}
        )
        assert home_users["body"] == {"users": [{"id": 3}]}, home_users

        answer = await run_sdk(
            sdk_config(SECOND, api_port),
            {"action": "trigger", "channel": "presence-room", "event": "Both", "data": {"n": 1}},
        )
        assert answer["status"] == 200, answer
        for client in (second_a, second_b):
            event = await client.wait_for({"type": "event", "event": "Both"}, EVENT_BOUND)
            assert event["data"] == {"n": 1}
        await home_b.assert_silent({"type": "event", "event": "Both"}, within=0.5)
        await home_b.assert_silent({"type": "presence", "action": "joining"}, within=0.3)

        # the quiet app's limit of 2 holds across the nodes
        on_a = await WsClient.open(ws_a, QUIET[1])
        on_b = await WsClient.open(ws_b, QUIET[1])

        async def refused_on_a() -> bool:
            third = await WsClient.connect(f"ws://127.0.0.1:{ws_a}/app/{QUIET[1]}?protocol=7")
            try:
                first = await first_message(third)
            finally:
                await third.close()
            return first.get("event") == "pusher:error" and first["data"]["code"] == 4100

        await eventually(refused_on_a, timeout=EVENT_BOUND)
        await on_a.close()
        await on_b.close()

    # the second app's webhooks, signed with its secret; nothing of the default app's channels
    def occupied() -> list[dict[str, Any]]:
        return [
            event
            for request in receiver.requests
            for event in json.loads(request.body)["events"]
            if event["name"] == "channel_occupied"
        ]

    async def heard() -> bool:
        return bool(occupied())

    await eventually(heard, timeout=EVENT_BOUND)
    assert occupied() == [{"name": "channel_occupied", "channel": "presence-room"}]
    for request in receiver.requests:
        assert request.headers["x-pusher-key"] == SECOND[1]
        assert verify_signature(SECOND[2], request.body, request.headers["x-pusher-signature"])


async def test_the_rate_limit_is_shared_through_redis_and_let_through_without_it(
    redis: Redis,
) -> None:
    """Two API processes count one app's requests together; a Redis that cannot be reached
    limits nothing (the HTTP API keeps answering)."""
    app = PusherApp(*METERED, api_rate_limit="2 per 30 seconds")
    other_process = Redis.from_url(REDIS_URL)
    first, second = ApiRateLimiter(redis), ApiRateLimiter(other_process)
    await first.check(app)
    await second.check(app)
    with pytest.raises(TooManyRequests):
        await first.check(app)
    with pytest.raises(TooManyRequests):
        await second.check(app)
    await first.check(PusherApp(*SECOND, api_rate_limit="2 per 30 seconds"))  # its own count
    await other_process.aclose()
    nowhere = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    unreachable = ApiRateLimiter(nowhere)
    for _ in range(3):
        await unreachable.check(app)
    await nowhere.aclose()


async def test_each_apps_hub_records_its_own_webhooks(engine: AsyncEngine) -> None:
    apps = [{**APPS[0], "webhook_url": "http://127.0.0.1:9/second"}, APPS[1]]
    settings = make_settings(
        database_url=engine.url.render_as_string(hide_password=False),
        webhook_url="http://127.0.0.1:9/home",
        pusher_apps=json.dumps(apps),
    )
    runtime = create_runtime(settings)
    try:
        assert isinstance(runtime.hub.webhooks, LocalWebhooks)
        assert runtime.hub.webhooks.app.url == "http://127.0.0.1:9/home"
        second = runtime.app_hubs[SECOND[0]].webhooks
        assert isinstance(second, LocalWebhooks)
        assert (second.app.app_id, second.app.key, second.app.secret) == SECOND
        assert runtime.app_hubs[QUIET[0]].webhooks is None
        assert runtime.app_hubs[SECOND[0]].presence_limit == 2
        assert runtime.app_hubs[QUIET[0]].presence_limit == settings.ws_presence_limit
    finally:
        await runtime.close()


async def test_cache_channels_keep_each_apps_last_event(apps_live: LiveStack) -> None:
    live = apps_live
    answer = await run_sdk(
        sdk_config(SECOND, live.api_port),
        {"action": "trigger", "channel": "cache-score", "event": "Score", "data": {"home": 2}},
    )
    assert answer["status"] == 200, answer
    second = await WsClient.open(live.ws_port, SECOND[1])
    second.subscribe("cache-score")
    cached = await second.wait_for("Score", channel="cache-score", timeout=EVENT_BOUND)
    assert json.loads(cached["data"]) == {"home": 2}
    home = await WsClient.open(live.ws_port, live.key)
    home.subscribe("cache-score")
    await home.wait_for("pusher:cache_miss", channel="cache-score", timeout=EVENT_BOUND)
    assert [m for m in await home.quiet(0.3) if m.get("event") == "Score"] == []
    for client in (second, home):
        await client.close()


async def test_notiflows_own_replay_stays_on_the_default_app(
    apps_live: LiveStack, make_member: MakeMember
) -> None:
    """Another app's backend can sign any channel name: its private-notifications.{userId} is an
    ordinary channel, never a replay of that notiflow user's notifications or unread count."""
    live = apps_live
    ada = await make_member("acme")
    channel = f"private-notifications.{ada.id}"
    snapshots: dict[str, list[dict[str, Any]]] = {}
    for app in (default_app(live), SECOND):
        client = await WsClient.open(live.ws_port, app[1])
        client.subscribe(channel, channel_auth(app[1], app[2], client.socket_id, channel))
        await client.wait_for("pusher_internal:subscription_succeeded", channel=channel)
        if app == SECOND:
            await client.quiet(0.5)
        else:
            await client.wait_for("UnreadCountChanged", channel=channel, timeout=EVENT_BOUND)
        snapshots[app[0]] = [m for m in client.messages if m.get("event") == "UnreadCountChanged"]
        await client.close()
    assert len(snapshots[default_app(live)[0]]) == 1
    assert snapshots[SECOND[0]] == []
