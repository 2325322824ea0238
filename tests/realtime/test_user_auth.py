"""User authentication (protocol 7): ``pusher:signin`` through ``/broadcasting/user-auth``, the
SDKs' ``sendToUser`` and ``terminateUserConnections``, and the optional sign-in deadline.

The real clients: pusher-js 8.6 and Laravel Echo 2.5 (``pusher.signin()`` / ``signin()``), the
npm ``pusher`` SDK and the PyPI ``pusher`` SDK; real ``notiflow serve`` and ``notiflow realtime``
processes over Redis for the cluster.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pusher
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from notiflow.realtime.server import build_realtime_server
from notiflow.realtime.signing import user_auth
from tests.admin.webhook_receiver import WebhookReceiver
from tests.conftest import REDIS_URL, MakeMember, make_settings
from tests.delivery.processes import NotiflowProcess, eventually, free_port, scale_out_env
from tests.realtime.conftest import LiveStack
from tests.realtime.node import NodeClient, run_sdk
from tests.realtime.test_webhooks import local_hooks, received_events  # noqa: F401 - a fixture
from tests.realtime.wsclient import WsClient

# Generous bounds for a busy machine; none of them is a measurement.
EVENT_BOUND = 30.0


def browser(ws_port: int, key: str, api_url: str, token: str, **extra: Any) -> dict[str, Any]:
    """A front end that signs in through notiflow's own user-auth endpoint."""
    return {
        "wsHost": "127.0.0.1",
        "wsPort": ws_port,
        "key": key,
        "authEndpoint": f"{api_url}/broadcasting/auth",
        "userAuthEndpoint": f"{api_url}/broadcasting/user-auth",
        "token": token,
        "mode": "pusher",
        "signin": True,
        **extra,
    }


def sdk_config(app: tuple[str, str, str], api_port: int) -> dict[str, Any]:
    app_id, key, secret = app
    return {
        "appId": app_id,
        "key": key,
        "secret": secret,
        "host": "127.0.0.1",
        "port": api_port,
        "useTLS": False,
    }


def live_app(live: LiveStack) -> tuple[str, str, str]:
    return (live.runtime.settings.pusher_app_id, live.key, live.secret)


def python_sdk(app: tuple[str, str, str], api_port: int) -> pusher.Pusher:
    app_id, key, secret = app
    return pusher.Pusher(
        app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=api_port, ssl=False
    )


async def signed_in(tab: NodeClient, user_id: str) -> None:
    """pusher-js got ``pusher:signin_success`` for ``user_id``."""
    signed = await tab.wait_for({"type": "signed_in"}, timeout=EVENT_BOUND)
    assert json.loads(signed["user_data"])["id"] == user_id, tab.transcript()


# ---------------------------------------------------------------- one node (API in process)


async def test_pusher_js_signs_in_and_hears_send_to_user_from_the_npm_and_the_pypi_sdk(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme")
    bob = await make_member("acme")
    app = live_app(live)
    config = browser(live.ws_port, live.key, live.api_url, ada.token, trace=True)
    async with (
        NodeClient(config, name="ada") as ada_tab,
        NodeClient(browser(live.ws_port, live.key, live.api_url, bob.token), name="bob") as bob_tab,
    ):
        await signed_in(ada_tab, str(ada.id))
        await signed_in(bob_tab, str(bob.id))
        signed = ada_tab.received({"type": "signed_in"})[0]
        assert json.loads(signed["user_data"]) == {
            "id": str(ada.id),
            "user_info": {"name": ada.user.name},
        }
        # pusher-js subscribed to its server-to-user channel and was answered
        await ada_tab.wait_for(
            lambda m: (
                m.get("type") == "frame"
                and m["dir"] == "in"
                and "pusher_internal:subscription_succeeded" in m["data"]
                and f"#server-to-user-{ada.id}" in m["data"]
            ),
            timeout=EVENT_BOUND,
        )

        answer = await run_sdk(
            sdk_config(app, live.api_port),
            {"action": "sendToUser", "user_id": str(ada.id), "event": "Hello", "data": {"n": 1}},
        )
        assert answer["status"] == 200, answer
        hello = await ada_tab.wait_for({"type": "user_event", "event": "Hello"}, EVENT_BOUND)
        assert hello["data"] == {"n": 1}

        sdk = python_sdk(app, live.api_port)
        await asyncio.to_thread(sdk.send_to_user, str(ada.id), "Hello", {"n": 2})
        again = await ada_tab.wait_for({"type": "user_event", "event": "Hello"}, EVENT_BOUND)
        assert again["data"] == {"n": 2}

        # a batch may address users too
        batch = [{"channel": f"#server-to-user-{ada.id}", "name": "Batched", "data": {"n": 3}}]
        answer = await run_sdk(
            sdk_config(app, live.api_port), {"action": "triggerBatch", "batch": batch}
        )
        assert answer["status"] == 200, answer
        batched = await ada_tab.wait_for({"type": "user_event", "event": "Batched"}, EVENT_BOUND)
        assert batched["data"] == {"n": 3}

        # the events went to ada only
        await bob_tab.assert_silent({"type": "user_event"}, within=0.5)

        # the PyPI SDK ends ada's connections too (the npm SDK: the two-node test)
        await asyncio.to_thread(sdk.terminate_user_connections, str(ada.id))
        closed = await ada_tab.wait_for({"type": "closed"}, EVENT_BOUND)
        assert closed["code"] == 4009, ada_tab.transcript()
        await bob_tab.assert_silent({"type": "closed"}, within=0.5)


async def test_echo_signs_in_through_the_user_auth_endpoint(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme")
    config = browser(live.ws_port, live.key, live.api_url, ada.token, mode="echo")
    del config["userAuthEndpoint"]  # Echo's default: the auth endpoint's "user-auth" sibling
    async with NodeClient(config, name="echo") as tab:
        await signed_in(tab, str(ada.id))
        answer = await run_sdk(
            sdk_config(live_app(live), live.api_port),
            {"action": "sendToUser", "user_id": str(ada.id), "event": "Ping", "data": "x"},
        )
        assert answer["status"] == 200, answer
        event = await tab.wait_for({"type": "user_event", "event": "Ping"}, EVENT_BOUND)
        assert event["data"] == "x"


async def test_the_user_auth_endpoint_answers_like_laravel_and_refuses_like_channel_auth(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme")
    async with httpx.AsyncClient(base_url=live.api_url) as http:
        form = await http.post(
            "/broadcasting/user-auth", headers=ada.headers, data={"socket_id": "123.456"}
        )
        assert form.status_code == 200, form.text
        reply = form.json()
        assert set(reply) == {"auth", "user_data"}
        assert json.loads(reply["user_data"]) == {
            "id": str(ada.id),
            "user_info": {"name": ada.user.name},
        }
        assert reply["auth"] == user_auth(live.key, live.secret, "123.456", reply["user_data"])
        as_json = await http.post(
            "/broadcasting/user-auth", headers=ada.headers, json={"socket_id": "123.456"}
        )
        assert as_json.json() == reply

        no_token = await http.post("/broadcasting/user-auth", data={"socket_id": "123.456"})
        assert no_token.status_code == 401
        assert no_token.json()["error"]["code"] == "unauthenticated"
        bad_token = await http.post(
            "/broadcasting/user-auth",
            headers={"Authorization": "Bearer nope"},
            data={"socket_id": "123.456"},
        )
        assert bad_token.status_code == 401
        for socket_id in ("", "abc", "1.2.3", "1" * 60 + ".1"):
            bad = await http.post(
                "/broadcasting/user-auth", headers=ada.headers, data={"socket_id": socket_id}
            )
            assert bad.status_code == 422, bad.text
            assert bad.json()["error"]["code"] == "validation_failed"
        not_json = await http.post(
            "/broadcasting/user-auth",
            headers={**ada.headers, "Content-Type": "application/json"},
            content=b"{nope",
        )
        assert not_json.status_code == 422

        config = await http.get("/api/v1/realtime/config", headers=ada.headers)
        data = config.json()["data"]
        assert data["user_auth_endpoint"] == f"{live.api_url}/broadcasting/user-auth"
        assert data["echo"]["userAuthentication"] == {
            "endpoint": f"{live.api_url}/broadcasting/user-auth",
            "transport": "ajax",
            "headers": {},
        }


async def test_pusher_js_hears_a_refused_user_auth_request_as_signin_error(
    live: LiveStack,
) -> None:
    config = browser(live.ws_port, live.key, live.api_url, "not-a-token")
    async with NodeClient(config, name="stranger") as tab:
        refused = await tab.wait_for({"type": "signin_error"}, EVENT_BOUND)
        assert refused["error"]["type"] == "AuthError"
        assert refused["error"]["status"] == 401
        # the connection itself stays, unsigned
        await tab.send({"cmd": "state"})
        assert (await tab.wait_for({"type": "ack", "cmd": "state"}))["current"] == "connected"
        await tab.assert_silent({"type": "signed_in"}, within=0.3)


async def test_a_forged_signin_or_one_for_another_socket_is_refused_with_4009(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme")
    victim = await WsClient.open(live.ws_port, live.key)
    async with httpx.AsyncClient(base_url=live.api_url) as http:
        reply = (
            await http.post(
                "/broadcasting/user-auth",
                headers=ada.headers,
                data={"socket_id": victim.socket_id},
            )
        ).json()

    # the signature was made for another socket: replaying it elsewhere fails
    thief = await WsClient.open(live.ws_port, live.key)
    thief.send({"event": "pusher:signin", "data": reply})
    error = await thief.wait_for("pusher:error", timeout=EVENT_BOUND)
    assert error["data"]["code"] == 4009
    assert await thief.wait_closed(timeout=EVENT_BOUND) == 4009

    # user data changed after signing (someone else's id)
    forger = await WsClient.open(live.ws_port, live.key)
    forged = json.dumps({"id": str(uuid.uuid4()), "user_info": {"name": "Mallory"}})
    forger.send({"event": "pusher:signin", "data": {"auth": reply["auth"], "user_data": forged}})
    assert (await forger.wait_for("pusher:error", timeout=EVENT_BOUND))["data"]["code"] == 4009
    assert await forger.wait_closed(timeout=EVENT_BOUND) == 4009

    # neither got anything sent to ada; the socket it was made for signs in
    victim.send({"event": "pusher:signin", "data": reply})
    success = await victim.wait_for("pusher:signin_success", timeout=EVENT_BOUND)
    assert success["data"] == {"user_data": reply["user_data"]}
    await run_sdk(
        sdk_config(live_app(live), live.api_port),
        {"action": "sendToUser", "user_id": str(ada.id), "event": "Secret", "data": {}},
    )
    event = await victim.wait_for("Secret", timeout=EVENT_BOUND)
    assert event["channel"] == f"#server-to-user-{ada.id}"
    await victim.close()


async def test_a_numeric_id_from_a_backend_signs_in_as_its_string_form(live: LiveStack) -> None:
    """A backend returning its numeric primary key (as Soketi takes it): the connection stays
    and can be ended by that id."""
    client = await WsClient.open(live.ws_port, live.key)
    user_data = '{"id":4242,"name":"Ada"}'
    auth = user_auth(live.key, live.secret, client.socket_id, user_data)
    client.send({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})
    success = await client.wait_for("pusher:signin_success", timeout=EVENT_BOUND)
    assert success["data"] == {"user_data": user_data}
    config = sdk_config(live_app(live), live.api_port)
    await run_sdk(config, {"action": "sendToUser", "user_id": "4242", "event": "E", "data": 1})
    assert (await client.wait_for("E", timeout=EVENT_BOUND))["channel"] == "#server-to-user-4242"
    answer = await run_sdk(config, {"action": "terminateUserConnections", "user_id": "4242"})
    assert answer["status"] == 200, answer
    assert await client.wait_closed(timeout=EVENT_BOUND) == 4009


async def test_subscribing_to_someone_elses_server_to_user_channel_hears_nothing(
    live: LiveStack, make_member: MakeMember
) -> None:
    ada = await make_member("acme")
    snoop = await WsClient.open(live.ws_port, live.key)
    channel = f"#server-to-user-{ada.id}"
    snoop.subscribe(channel, "")
    await snoop.wait_for("pusher_internal:subscription_succeeded", channel=channel)
    answer = await run_sdk(
        sdk_config(live_app(live), live.api_port),
        {"action": "sendToUser", "user_id": str(ada.id), "event": "Secret", "data": {}},
    )
    assert answer["status"] == 200, answer
    assert [m for m in await snoop.quiet(0.5) if m.get("event") == "Secret"] == []
    await snoop.close()


async def test_the_sign_in_deadline_closes_unsigned_connections_with_4009_only(
    live: LiveStack, make_member: MakeMember
) -> None:
    """With NOTIFLOW_WS_USER_AUTH_TIMEOUT_SECONDS set, a connection that has not signed in by
    then is told 4009 and closed with 4009; one that signed in stays."""
    ada = await make_member("acme")
    # Long enough for pusher-js to sign in on a busy machine (its connection opens first).
    settings = live.runtime.settings.model_copy(update={"ws_user_auth_timeout_seconds": 8.0})
    strict = build_realtime_server(settings, live.runtime.hub)
    await strict.start("127.0.0.1", 0)
    try:
        config = browser(strict.port, live.key, live.api_url, ada.token)
        async with NodeClient(config, name="signed-in") as tab:
            await signed_in(tab, str(ada.id))
            unsigned = await WsClient.open(strict.port, live.key)
            error = await unsigned.wait_for("pusher:error", timeout=EVENT_BOUND)
            assert error["data"] == {
                "code": 4009,
                "message": "Connection not authorized within timeout",
            }
            assert await unsigned.wait_closed(timeout=EVENT_BOUND) == 4009
            # The sweep that closed it looked at the signed-in connection too, which opened
            # earlier: it is still open.
            await tab.assert_silent({"type": "closed"}, within=0.5)
            await tab.send({"cmd": "state"})
            state = await tab.wait_for({"type": "ack", "cmd": "state"})
            assert state["current"] == "connected"
    finally:
        await strict.stop()


async def test_a_signed_in_users_channel_is_occupied_and_vacated_in_webhooks(
    local_hooks: tuple[LiveStack, WebhookReceiver],  # noqa: F811 - the fixture imported above
    make_member: MakeMember,
) -> None:
    live, receiver = local_hooks
    ada = await make_member("acme")
    channel = f"#server-to-user-{ada.id}"
    async with NodeClient(browser(live.ws_port, live.key, live.api_url, ada.token)) as tab:
        await signed_in(tab, str(ada.id))
    expected = [
        {"name": "channel_occupied", "channel": channel},
        {"name": "channel_vacated", "channel": channel},
    ]

    async def both() -> bool:
        return len(received_events(receiver)) >= len(expected)

    await eventually(both)
    assert received_events(receiver) == expected


def test_the_sign_in_deadline_is_off_or_at_least_a_second() -> None:
    assert make_settings().ws_user_auth_timeout_seconds == 0
    assert make_settings(ws_user_auth_timeout_seconds="30").ws_user_auth_timeout_seconds == 30
    for bad in ("0.5", "-1", "3601", "soon"):
        with pytest.raises(ValidationError, match="ws_user_auth_timeout_seconds"):
            make_settings(ws_user_auth_timeout_seconds=bad)


# ---------------------------------------------------------------- two nodes (real processes)


@pytest.fixture
async def processes(redis: Redis) -> Any:
    """The notiflow processes a test starts (``redis`` empties the test database around it)."""
    started: list[NotiflowProcess] = []
    yield started
    for process in started:
        await asyncio.to_thread(process.stop)


async def create_user(node: NotiflowProcess, email: str) -> dict[str, str]:
    created = await asyncio.to_thread(
        node.run, "users", "create", "--tenant", "acme", "--email", email, "--with-token"
    )
    assert created.returncode == 0, created.stderr
    user: dict[str, str] = json.loads(created.stdout)
    return user


async def test_send_to_user_and_terminate_reach_the_users_connections_on_every_node(
    processes: list[NotiflowProcess], tmp_path: Path
) -> None:
    """``notiflow serve`` (node A: API and WebSockets) and ``notiflow realtime`` (node B) over
    Redis. Ada is signed in on both nodes, Bob on B: sendToUser (npm and PyPI SDKs) reaches
    both of Ada's tabs and not Bob; terminate_connections closes Ada's tabs on both nodes with
    4009 and leaves Bob's open."""
    app = ("4747", "userauth-key", "userauth-secret-0123456789abcdef")
    api_port, ws_a, ws_b, http_b = free_port(), free_port(), free_port(), free_port()
    env = scale_out_env(tmp_path, REDIS_URL, api_port, app)
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
    ada = await create_user(node_a, "ada@example.com")
    bob = await create_user(node_a, "bob@example.com")
    api_url = f"http://127.0.0.1:{api_port}"
    sdk = sdk_config(app, api_port)

    def tab(ws_port: int, user: dict[str, str]) -> dict[str, Any]:
        return browser(ws_port, app[1], api_url, user["token"])

    try:
        async with (
            NodeClient(tab(ws_a, ada), name="ada on a") as ada_a,
            NodeClient(tab(ws_b, ada), name="ada on b") as ada_b,
            NodeClient(tab(ws_b, bob), name="bob on b") as bob_b,
        ):
            for client, user in ((ada_a, ada), (ada_b, ada), (bob_b, bob)):
                await signed_in(client, user["user_id"])

            answer = await run_sdk(
                sdk,
                {"action": "sendToUser", "user_id": ada["user_id"], "event": "Hi", "data": 1},
            )
            assert answer["status"] == 200, answer
            await asyncio.to_thread(python_sdk(app, api_port).send_to_user, ada["user_id"], "Hi", 2)
            for client in (ada_a, ada_b):
                first = await client.wait_for({"type": "user_event", "event": "Hi"}, EVENT_BOUND)
                second = await client.wait_for({"type": "user_event", "event": "Hi"}, EVENT_BOUND)
                assert (first["data"], second["data"]) == (1, 2), client.transcript()
            await bob_b.assert_silent({"type": "user_event"}, within=0.5)

            answer = await run_sdk(
                sdk, {"action": "terminateUserConnections", "user_id": ada["user_id"]}
            )
            assert (answer["status"], answer["body"]) == (200, {}), answer
            for client in (ada_a, ada_b):
                closed = await client.wait_for({"type": "closed"}, EVENT_BOUND)
                assert closed["code"] == 4009, client.transcript()
                error = client.received({"type": "error"})
                assert any((e["error"].get("data") or {}).get("code") == 4009 for e in error), (
                    client.transcript()
                )
                # pusher-js does not come back by itself after 4009: no second socket
                await client.wait_for({"type": "socket"})  # the first one
                await client.assert_silent({"type": "socket"}, within=1.5)

            # Bob is untouched: still connected, still hears what is sent to him
            await bob_b.assert_silent({"type": "closed"}, within=0.5)
            answer = await run_sdk(
                sdk,
                {"action": "sendToUser", "user_id": bob["user_id"], "event": "Still", "data": 3},
            )
            assert answer["status"] == 200, answer
            await bob_b.wait_for({"type": "user_event", "event": "Still"}, EVENT_BOUND)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n{node_a.logs()}\n{node_b.logs()}") from None


async def test_the_http_api_refuses_bad_server_to_user_targets(
    live: LiveStack, make_member: MakeMember
) -> None:
    app = live_app(live)
    config = sdk_config(app, live.api_port)
    for channel in ("#server-to-user-", "#server-to-user-" + "x" * 201, "#other"):
        answer = await run_sdk(
            config,
            {
                "action": "post",
                "path": "/events",
                "body": {"name": "E", "data": "{}", "channels": [channel]},
            },
        )
        assert answer["status"] == 400, answer
    # an unknown user: nobody to close, still {}
    answer = await run_sdk(
        config, {"action": "terminateUserConnections", "user_id": str(uuid.uuid4())}
    )
    assert (answer["status"], answer["body"]) == (200, {}), answer
    unsigned = await run_sdk(
        {**config, "secret": "wrong-secret-0123456789"},
        {"action": "terminateUserConnections", "user_id": "42"},
    )
    assert unsigned["status"] == 401, unsigned
    # the PyPI SDK's path (no /apps/{id}) is signed like the rest
    async with httpx.AsyncClient(base_url=live.api_url) as http:
        forged = await http.post("/users/42/terminate_connections", json={})
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "unauthenticated"
