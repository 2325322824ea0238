"""The WebSocket load test a user runs against their deployment, here against a live stack."""

from __future__ import annotations

from notiflow.main.loadtest import run_ws_load
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember
from tests.realtime.conftest import LiveStack


async def test_loadtest_reports_every_delivery(live: LiveStack, make_member: MakeMember) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    report = await run_ws_load(
        api_url=live.api_url,
        token=owner.token,
        connections=40,
        rate=20,
        duration=0.5,
        ws_url=f"ws://127.0.0.1:{live.ws_port}",
    )
    assert report["connections"] == 40
    assert report["subscribed"] == 40
    assert report["notifications_sent"] == 10
    assert report["expected_deliveries"] == 400
    assert report["delivered"] == 400
    assert report["delivered_ratio"] == 1.0
    assert report["latency_ms"]["p99"] is not None
