"""Cache channels with the real clients: pusher-js and Laravel Echo subscribing, the npm and PyPI
``pusher`` SDKs triggering and reading channel info; in one process, and across a ``notiflow
serve`` and a ``notiflow realtime`` node over Redis."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pusher

from notiflow.realtime.cache import ChannelCache
from tests.conftest import MakeMember
from tests.delivery.processes import NotiflowProcess, eventually, free_port, scale_out_env
from tests.fault_servers import OwnRedis
from tests.realtime.conftest import LiveStack
from tests.realtime.node import NodeClient, run_sdk
from tests.realtime.wsclient import WsClient

MASTER_KEY = base64.b64encode(b"cache-channels-master-key-32byte").decode()
KINDS = ("public", "private", "presence", "encrypted")


def cache_channels(tenant: object) -> dict[str, str]:
    """One cache channel of each kind that a member of ``tenant`` may subscribe to."""
    return {
        "public": f"cache-scores.{tenant}",
        "private": f"private-cache-tenant.{tenant}",
        "presence": f"presence-cache-tenant.{tenant}",
        "encrypted": f"private-encrypted-cache-tenant.{tenant}",
    }


def sdk_config(port: int, app: tuple[str, str, str]) -> dict[str, Any]:
    app_id, key, secret = app
    return {
        "appId": app_id,
        "key": key,
        "secret": secret,
        "host": "127.0.0.1",
        "port": port,
        "useTLS": False,
        "encryptionMasterKeyBase64": MASTER_KEY,
    }


def browser(ws_port: int, key: str, auth_endpoint: str, token: str, **extra: Any) -> dict[str, Any]:
    return {
        "wsHost": "127.0.0.1",
        "wsPort": ws_port,
        "key": key,
        "authEndpoint": auth_endpoint,
        "token": token,
        "mode": "pusher",
        **extra,
    }


def entry(kind: str, channel: str) -> dict[str, Any]:
    # "*" reports every event but pusher:* ones; the miss is bound by name.
    return {"kind": kind, "name": channel, "listen": ["*", "pusher:cache_miss"]}


async def assert_replayed(tab: NodeClient, channel: str, data: dict[str, Any]) -> None:
    """``channel``'s first event is the cached one, right after the subscription, and only it."""
    await tab.wait_for({"type": "subscribed", "channel": channel}, timeout=10)
    replay = await tab.wait_for({"type": "event", "channel": channel}, timeout=10)
    assert (replay["event"], replay["data"]) == ("ScoreChanged", data), tab.transcript()
    lines = [
        message
        for message in tab.messages
        if message.get("channel") == channel and message["type"] in ("subscribed", "event")
    ]
    assert [line["type"] for line in lines] == ["subscribed", "event"], tab.transcript()


def live_app(live: LiveStack) -> tuple[str, str, str]:
    settings = live.runtime.settings
    return settings.pusher_app_id, settings.pusher_app_key, settings.pusher_app_secret


def use_master_key(live: LiveStack) -> None:
    live.runtime.settings = live.runtime.settings.model_copy(
        update={"pusher_encryption_master_key": MASTER_KEY}
    )


async def test_pusher_js_gets_the_last_event_of_each_kind_of_cache_channel(
    live: LiveStack, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    use_master_key(live)
    channels = cache_channels(member.tenant_id)
    batch = [
        {"channel": channels[kind], "name": "ScoreChanged", "data": {"home": home, "kind": kind}}
        for home in (1, 2)
        for kind in KINDS
    ]
    answer = await run_sdk(
        sdk_config(live.api_port, live_app(live)), {"action": "triggerBatch", "batch": batch}
    )
    assert answer["status"] == 200, answer

    empty = f"cache-empty.{member.tenant_id}"
    subscribe = [entry(kind, channels[kind]) for kind in KINDS] + [entry("public", empty)]
    config = browser(
        live.ws_port,
        live.key,
        f"{live.api_url}/broadcasting/auth",
        member.token,
        subscribe=subscribe,
    )
    async with NodeClient(config, name="tab") as tab:
        await tab.connected()
        for kind in KINDS:
            await assert_replayed(tab, channels[kind], {"home": 2, "kind": kind})
        await tab.wait_for({"type": "subscribed", "channel": empty})
        miss = await tab.wait_for({"type": "event", "channel": empty})
        assert miss["event"] == "pusher:cache_miss", tab.transcript()
        await tab.assert_silent({"type": "event"})


async def test_echo_replays_on_its_private_channel_and_reports_a_miss_on_join(
    live: LiveStack, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    channels = cache_channels(member.tenant_id)
    answer = await run_sdk(
        sdk_config(live.api_port, live_app(live)),
        {
            "action": "trigger",
            "channel": channels["private"],
            "event": "ScoreChanged",
            "data": {"home": 3},
        },
    )
    assert answer["status"] == 200, answer
    subscribe = [
        # Echo.private("cache-tenant.…") and Echo.join("cache-tenant.…")
        {"kind": "private", "name": channels["private"], "listen": [".ScoreChanged"]},
        {"kind": "presence", "name": channels["presence"], "listen": [".pusher:cache_miss"]},
    ]
    config = browser(
        live.ws_port,
        live.key,
        f"{live.api_url}/broadcasting/auth",
        member.token,
        mode="echo",
        subscribe=subscribe,
    )
    async with NodeClient(config, name="echo") as tab:
        await tab.connected()
        replay = await tab.wait_for({"type": "event", "channel": channels["private"]})
        assert (replay["listen"], replay["data"]) == (".ScoreChanged", {"home": 3})
        miss = await tab.wait_for({"type": "event", "channel": channels["presence"]})
        assert miss["listen"] == ".pusher:cache_miss"


async def test_channel_info_shows_the_cached_event_and_its_ttl(live: LiveStack) -> None:
    app_id, key, secret = live_app(live)
    sdk = pusher.Pusher(
        app_id=app_id, key=key, secret=secret, host="127.0.0.1", port=live.api_port, ssl=False
    )
    channel = "cache-scores.1"
    await asyncio.to_thread(sdk.trigger, channel, "ScoreChanged", {"home": 2})

    info = await asyncio.to_thread(sdk.channel_info, channel, ["cache"])
    assert info["occupied"] is False, "kept without a subscriber"
    value = json.loads(info["cache"]["value"])
    assert (value["event"], value["channel"]) == ("ScoreChanged", channel)
    assert json.loads(value["data"]) == {"home": 2}
    assert 0 < info["cache"]["ttl"] <= live.runtime.settings.ws_cache_ttl_seconds

    for nothing_cached in ("cache-scores.2", "news"):
        assert await asyncio.to_thread(sdk.channel_info, nothing_cached, ["cache"]) == {
            "occupied": False
        }

    listener = await WsClient.open(live.ws_port, key)
    listener.subscribe(channel)
    await listener.wait_for("ScoreChanged", channel=channel)
    listed = await asyncio.to_thread(sdk.channels_info, "cache-", ["cache"])
    assert listed["channels"][channel]["cache"]["value"] == info["cache"]["value"]

    # the TTL is a setting; once it has passed, the channel has nothing cached
    cache = live.runtime.hub.cache
    assert isinstance(cache, ChannelCache)
    cache.ttl = 1.0
    await asyncio.to_thread(sdk.trigger, channel, "ScoreChanged", {"home": 3})

    async def expired() -> bool:
        answer = await asyncio.to_thread(sdk.channel_info, channel, ["cache"])
        return "cache" not in answer

    await eventually(expired, timeout=15)
    await listener.close()


async def test_a_node_replays_what_was_triggered_through_another_nodes_api(
    tmp_path: Path,
) -> None:
    """``notiflow serve`` (node A: the HTTP API and WebSockets) and ``notiflow realtime``
    (node B) over Redis: events triggered through A's API are replayed by B, for every kind."""
    app = ("5151", "cache-node-key", "cache-node-secret-0123456789")
    with OwnRedis() as redis_server:
        api_port, ws_a, ws_b, http_b = free_port(), free_port(), free_port(), free_port()
        env = scale_out_env(
            tmp_path, redis_server.url, api_port, app, pusher_encryption_master_key=MASTER_KEY
        )
        node_a = NotiflowProcess(
            ["serve", "--port", str(api_port), "--ws-port", str(ws_a)],
            env,
            ready_url=f"http://127.0.0.1:{api_port}/health",
        )
        node_b = NotiflowProcess(
            ["realtime", "--port", str(ws_b), "--http-port", str(http_b)],
            env,
            ready_url=f"http://127.0.0.1:{http_b}/health",
        )
        try:
            await node_a.start()
            await node_b.start()
            created = node_a.run(
                "users", "create", "--tenant", "acme", "--email", "ada@example.com", "--with-token"
            )
            assert created.returncode == 0, created.stderr
            user = json.loads(created.stdout)
            channels = cache_channels(user["tenant_id"])
            sdk = pusher.Pusher(
                app_id=app[0],
                key=app[1],
                secret=app[2],
                host="127.0.0.1",
                port=api_port,
                ssl=False,
                encryption_master_key_base64=MASTER_KEY,
            )
            for kind in KINDS:  # one channel per call: the SDK encrypts for one channel only
                data = {"home": 4, "kind": kind}
                await asyncio.to_thread(sdk.trigger, channels[kind], "ScoreChanged", data)

            empty = f"cache-empty.{user['tenant_id']}"
            subscribe = [entry(kind, channels[kind]) for kind in KINDS] + [entry("public", empty)]
            config = browser(
                ws_b,
                app[1],
                f"http://127.0.0.1:{api_port}/broadcasting/auth",
                user["token"],
                subscribe=subscribe,
            )
            async with NodeClient(config, name="tab-on-b") as tab:
                await tab.connected(timeout=10)
                for kind in KINDS:
                    await assert_replayed(tab, channels[kind], {"home": 4, "kind": kind})
                miss = await tab.wait_for({"type": "event", "channel": empty}, timeout=10)
                assert miss["event"] == "pusher:cache_miss", tab.transcript()

            info = await asyncio.to_thread(sdk.channel_info, channels["public"], ["cache"])
            assert json.loads(json.loads(info["cache"]["value"])["data"]) == {
                "home": 4,
                "kind": "public",
            }
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{node_a.logs()}\n{node_b.logs()}") from None
        finally:
            node_b.stop()
            node_a.stop()
