"""The WebSocket load test a user runs against their deployment, here against a live stack."""

from __future__ import annotations

import httpx

from notiflow.main.loadtest import run_ws_load
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember
from tests.realtime.conftest import LiveStack


async def test_loadtest_reports_every_delivery_and_cleans_up(
    live: LiveStack, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    lines: list[str] = []
    report = await run_ws_load(
        api_url=live.api_url,
        token=owner.token,
        connections=40,
        rate=20,
        duration=0.5,
        ws_url=f"ws://127.0.0.1:{live.ws_port}",
        progress=lines.append,
    )
    assert report["connections"] == 40
    assert report["subscribed"] == 40
    assert report["notifications_sent"] == 10
    assert report["expected_deliveries"] == 400
    assert report["delivered"] == 400
    assert report["delivered_ratio"] == 1.0
    assert report["latency_ms"]["p99"] is not None
    # It said what it was doing, and left the owner's feed as it found it.
    assert any("40/40 subscribed" in line for line in lines), lines
    assert any("sent 10/10" in line or "received 400/400" in line for line in lines), lines
    assert report["notifications_deleted"] == 10
    async with httpx.AsyncClient(base_url=live.api_url, headers=owner.headers) as client:
        feed = (await client.get("/api/v1/notifications")).json()
    assert feed["data"] == []


async def test_loadtest_keeps_what_it_sent_when_asked(
    live: LiveStack, make_member: MakeMember
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    report = await run_ws_load(
        api_url=live.api_url,
        token=owner.token,
        connections=2,
        rate=20,
        duration=0.2,
        ws_url=f"ws://127.0.0.1:{live.ws_port}",
        keep=True,
    )
    assert report["notifications_kept"] == 4
    async with httpx.AsyncClient(base_url=live.api_url, headers=owner.headers) as client:
        feed = (await client.get("/api/v1/notifications")).json()
    assert len(feed["data"]) == 4
