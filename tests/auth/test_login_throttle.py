"""Failed logins are throttled per account and per address (429 with Retry-After, audited once per
window), passwords are checked off the event loop, and a login flood does not freeze the API."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.auth.service import LoginGuard, PasswordChecker
from notiflow.auth.throttle import LoginThrottle, account_key, address_key
from notiflow.main.app import create_app
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog
from tests.conftest import REDIS_URL, TEST_PUSHER_SECRET, MakeMember, make_settings
from tests.delivery.processes import NotiflowProcess, free_port, notiflow_env
from tests.fault_servers import OwnRedis

# Compares latencies or CPU time with a baseline of its own: runs alone (scripts/run-tests.sh).
pytestmark = pytest.mark.serial

LOGIN = "/api/v1/auth/login"
ATTACKER = "203.0.113.5"
ELSEWHERE = "198.51.100.7"


class CountingChecker(PasswordChecker):
    """The real checker, counting the argon2 checks it runs."""

    def __init__(self, concurrency: int) -> None:
        super().__init__(concurrency)
        self.checked = 0

    async def verify(self, password_hash: str | None, password: str) -> bool:
        self.checked += 1
        return await super().verify(password_hash, password)


class LoginApp:
    """The API in process, with clients at chosen addresses and the argon2 checks counted."""

    def __init__(self, runtime: Runtime, **limits: int) -> None:
        runtime.settings = runtime.settings.model_copy(update=limits)
        self.app = create_app(runtime=runtime)
        self.checker = CountingChecker(2)
        self.app.state.login_guard = LoginGuard(
            throttle=LoginThrottle.from_settings(runtime.settings, None), checker=self.checker
        )

    async def login(self, address: str, email: str, password: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://notiflow.test") as c:
            return await c.post(LOGIN, json={"email": email, "password": password})


async def audit_rows(session: AsyncSession, action: str) -> list[AuditLog]:
    rows = list(await session.scalars(select(AuditLog).where(AuditLog.action == action)))
    session.expunge_all()  # kept readable after the rollback that ends this snapshot
    await session.rollback()
    return rows


def assert_throttled(response: httpx.Response, limit: str, window: int) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "too_many_requests"
    assert error["details"]["limit"] == limit
    assert 1 <= int(response.headers["Retry-After"]) <= window


# ---------------------------------------------------------------------------- in process


async def test_an_account_is_throttled_after_its_failures_without_checking_more_passwords(
    runtime: Runtime, make_member: MakeMember, session: AsyncSession
) -> None:
    api = LoginApp(runtime, login_max_failures_per_account=3)
    victim = await make_member(email="victim@acme.example", password="the-right-one")

    failures = [await api.login(ATTACKER, "victim@acme.example", f"guess-{n}") for n in range(3)]
    # Over the limit even the right password is refused: the attacker learns nothing more.
    refused = [
        await api.login(address, "victim@acme.example", password)
        for address, password in [
            (ATTACKER, "guess-3"),
            (ATTACKER, "the-right-one"),
            (ELSEWHERE, "guess-4"),
            (ATTACKER, "guess-5"),
        ]
    ]

    assert [response.status_code for response in failures] == [401, 401, 401]
    for response in refused:
        assert_throttled(response, "account", 900)
    assert api.checker.checked == 3  # the refused attempts ran no argon2 at all
    failed = await audit_rows(session, "auth.login_failed")
    assert len(failed) == 3
    assert {(row.subject_type, row.subject_id) for row in failed} == {("user", str(victim.id))}
    assert {row.ip_address for row in failed} == {ATTACKER}
    throttled = await audit_rows(session, "auth.login_throttled")
    assert len(throttled) == 1  # once per window, however many attempts follow
    assert throttled[0].subject_id == str(victim.id)
    assert throttled[0].after == {"limit": "account", "max_failures": 3, "window_seconds": 900}
    stored = json.dumps([[row.before, row.after] for row in [*failed, *throttled]])
    assert "guess" not in stored
    assert "the-right-one" not in stored


async def test_a_successful_login_clears_the_accounts_failures(
    runtime: Runtime, make_member: MakeMember
) -> None:
    api = LoginApp(runtime, login_max_failures_per_account=2)
    await make_member(email="ann@acme.example", password="pw-of-ann")

    statuses = [
        (await api.login(ATTACKER, "ann@acme.example", password)).status_code
        for password in ["typo", "pw-of-ann", "typo", "typo", "typo"]
    ]

    # Without the reset the second typo would already be the third attempt, refused.
    assert statuses == [401, 200, 401, 401, 429]


async def test_an_address_is_throttled_across_accounts_and_others_still_log_in(
    runtime: Runtime, make_member: MakeMember, session: AsyncSession
) -> None:
    api = LoginApp(runtime, login_max_failures_per_address=4)
    await make_member(email="real@acme.example", password="real-pw")

    stuffed = [
        await api.login(ATTACKER, f"nobody-{n}@acme.example", "stuffed-pw") for n in range(4)
    ]
    refused = await api.login(ATTACKER, "real@acme.example", "real-pw")
    elsewhere = await api.login(ELSEWHERE, "real@acme.example", "real-pw")

    assert [response.status_code for response in stuffed] == [401, 401, 401, 401]
    # Unknown emails are checked against a dummy hash: they cost what a known one costs.
    assert api.checker.checked == 5
    assert_throttled(refused, "address", 60)
    assert elsewhere.status_code == 200, elsewhere.text
    failed = await audit_rows(session, "auth.login_failed")
    assert len(failed) == 4
    assert {row.after["reason"] for row in failed if row.after} == {"unknown_email"}
    assert "nobody-0@acme.example" not in json.dumps([row.after for row in failed])
    (throttled,) = await audit_rows(session, "auth.login_throttled")
    assert throttled.after is not None
    assert throttled.after["address"] == ATTACKER
    assert throttled.ip_address == ATTACKER


async def test_processes_share_counters_in_redis_and_count_alone_when_it_is_unreachable() -> None:
    settings = make_settings(login_max_failures_per_account=3, login_max_failures_per_address=100)
    email, address = f"{uuid.uuid4().hex}@acme.example", f"10.9.{uuid.uuid4().int % 250}.1"
    first, second = Redis.from_url(REDIS_URL), Redis.from_url(REDIS_URL)
    try:
        one = LoginThrottle.from_settings(settings, first)
        other = LoginThrottle.from_settings(settings, second)
        assert [await throttle.begin(email, address) for throttle in (one, other, one)] == [
            None
        ] * 3
        refusal = await other.begin(email, address)
        assert refusal is not None
        assert refusal.limit.kind == "account"
        assert refusal.first
        assert 899 < refusal.retry_after <= 900
    finally:
        await first.delete(account_key(email), address_key(address))
        await first.aclose()
        await second.aclose()

    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        alone = LoginThrottle.from_settings(settings, unreachable)
        started = time.monotonic()
        outcomes = [await alone.begin(email, address) for _ in range(4)]
        assert outcomes[:3] == [None] * 3
        assert outcomes[3] is not None
        assert outcomes[3].limit.kind == "account"
        assert time.monotonic() - started < 5  # one bounded try, then memory until it is back
    finally:
        await unreachable.aclose()


# ---------------------------------------------------------------------------- real processes

# The flood: 8 loops of wrong-password logins (credential stuffing: a new unknown email each
# time) from 2 addresses, each loop waiting for its answer and 50 ms more before the next try,
# like a script: up to ~150 attempts/s in all. (A raw HTTP flood slows any endpoint; limiting
# request rates in general is the reverse proxy's job, see docs/decisions.md.) The bound on GET
# /api/v1/user's p99 during the flood is relative to the p99 measured just before it, with a
# floor for the machine's noise: max(100 ms, 3 x baseline), the baseline being the worse of the
# p99s measured just before and just after the flood (other work on the machine comes and goes).
# Before the fix each argon2 check (~0.15 s) ran on the event loop, and the flood was never
# throttled.
FLOOD_LOOPS = 8
FLOOD_PAUSE_SECONDS = 0.05
FLOOD_ADDRESSES = ["203.0.113.1", "203.0.113.2"]
BASELINE_SAMPLES = 200
MIN_FLOOD_SAMPLES = 200
FLOOD_CAP_SECONDS = 50.0
REFUSED_SECONDS = 2.0
LATENCY_FLOOR = 0.100
ACCOUNT_LIMIT, ACCOUNT_WINDOW = 5, 900  # the documented defaults
ADDRESS_LIMIT, ADDRESS_WINDOW = 20, 60


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


def process_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    return notiflow_env(
        env="test",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'notiflow.db'}",
        secret_key="throttle-test-secret-key-0123456789abcdef",
        pusher_app_secret=TEST_PUSHER_SECRET,
        log_level="WARNING",
        **settings,
    )


async def create_user(cli: NotiflowProcess, email: str, password: str) -> dict[str, Any]:
    result = await asyncio.to_thread(
        cli.run,
        *("users", "create", "--tenant", "Acme", "--email", email, "--password", password),
        "--with-token",
    )
    assert result.returncode == 0, result.stderr
    created: dict[str, Any] = json.loads(result.stdout)
    return created


async def login(
    client: httpx.AsyncClient, email: str, password: str, address: str
) -> httpx.Response:
    return await client.post(
        LOGIN, json={"email": email, "password": password}, headers={"X-Forwarded-For": address}
    )


def audit_actions(database: Path) -> Counter[str]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT action, before, after FROM audit_logs").fetchall()
    for _, before, after in rows:
        assert "wrong-pw" not in f"{before}{after}"
    return Counter(action for action, _, _ in rows)


@pytest.mark.slow
async def test_a_login_flood_neither_freezes_the_api_nor_goes_unthrottled(
    tmp_path: Path,
) -> None:
    port = free_port()
    server = NotiflowProcess(
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--ws-port", str(free_port())],
        process_env(tmp_path),
        ready_url=f"http://127.0.0.1:{port}/health",
    )
    reader = await create_user(server, "reader@acme.example", "reader-pw")
    await create_user(server, "victim@acme.example", "victim-pw")
    await server.start()
    base_url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {reader['token']}"}
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

            async def timed_user() -> float:
                started = time.perf_counter()
                response = await client.get("/api/v1/user", headers=headers)
                assert response.status_code == 200, response.text
                return time.perf_counter() - started

            # The documented number of attempts for one account, then 429.
            attempts = [
                await login(client, "victim@acme.example", "wrong-pw", "198.51.100.9")
                for _ in range(ACCOUNT_LIMIT + 1)
            ]
            assert [r.status_code for r in attempts] == [401] * ACCOUNT_LIMIT + [429]
            assert_throttled(attempts[-1], "account", ACCOUNT_WINDOW)

            for _ in range(20):  # warm up
                await timed_user()
            baseline = [await timed_user() for _ in range(BASELINE_SAMPLES)]

            stop = asyncio.Event()
            statuses: dict[str, Counter[int]] = {address: Counter() for address in FLOOD_ADDRESSES}

            async def flood(loop: int) -> None:
                address = FLOOD_ADDRESSES[loop % len(FLOOD_ADDRESSES)]
                async with httpx.AsyncClient(base_url=base_url, timeout=60) as attacker:
                    for attempt in range(1_000_000):
                        if stop.is_set():
                            return
                        email = f"stuffed-{loop}-{attempt}@acme.example"
                        response = await login(attacker, email, "wrong-pw", address)
                        statuses[address][response.status_code] += 1
                        if response.status_code == 429:
                            assert 1 <= int(response.headers["Retry-After"]) <= ADDRESS_WINDOW
                        await asyncio.sleep(FLOOD_PAUSE_SECONDS)

            flooders = [asyncio.create_task(flood(loop)) for loop in range(FLOOD_LOOPS)]
            started = time.monotonic()
            await asyncio.sleep(0.3)
            # Someone else logs in, from elsewhere, in the middle of the flood.
            good_login = asyncio.create_task(
                login(client, "reader@acme.example", "reader-pw", "198.51.100.20")
            )
            flooded: list[float] = []
            closed_at: float | None = None  # when every address had its first 429
            while time.monotonic() - started < FLOOD_CAP_SECONDS:
                flooded.append(await timed_user())
                if closed_at is None and all(s[429] > 0 for s in statuses.values()):
                    closed_at = time.monotonic()
                # The flood goes on against the closed door for a while, measured too.
                refused_long_enough = (
                    closed_at is not None and time.monotonic() - closed_at > REFUSED_SECONDS
                )
                if refused_long_enough and len(flooded) >= MIN_FLOOD_SAMPLES:
                    break
                await asyncio.sleep(0.01)
            flood_seconds = time.monotonic() - started
            stop.set()
            await asyncio.gather(*flooders)
            good = await good_login
            after = [await timed_user() for _ in range(BASELINE_SAMPLES)]
    finally:
        server.stop()

    quiet = max(p99(baseline), p99(after))
    bound = max(LATENCY_FLOOR, 3 * quiet)
    figures = (
        f"baseline p99 {p99(baseline) * 1000:.1f} ms before, {p99(after) * 1000:.1f} ms after; "
        f"flooded p99 {p99(flooded) * 1000:.1f} ms "
        f"(max {max(flooded) * 1000:.0f} ms, {len(flooded)} samples over {flood_seconds:.1f} s), "
        f"bound {bound * 1000:.0f} ms; responses per address: {statuses}"
    )
    print(figures)
    assert p99(flooded) < bound, figures
    assert good.status_code == 200, good.text
    for address, counts in statuses.items():
        assert counts[429] > 0, figures
        if flood_seconds < ADDRESS_WINDOW:  # one window: exactly the documented failures
            assert counts[401] == ADDRESS_LIMIT, (address, figures)
        assert set(counts) <= {401, 429}, figures
    actions = audit_actions(tmp_path / "notiflow.db")
    windows = 1 if flood_seconds < ADDRESS_WINDOW else 2
    assert actions["auth.login_failed"] == sum(c[401] for c in statuses.values()) + ACCOUNT_LIMIT
    # One entry per throttled key and window (the victim's account, each address), not one
    # per refused attempt.
    assert actions["auth.login_throttled"] <= 1 + len(FLOOD_ADDRESSES) * windows
    assert actions["auth.login_throttled"] >= 1 + len(FLOOD_ADDRESSES)
    assert sum(c[429] for c in statuses.values()) > 10 * actions["auth.login_throttled"]


@pytest.mark.slow
async def test_two_api_processes_share_the_account_count_over_redis(tmp_path: Path) -> None:
    with OwnRedis() as redis:
        env = process_env(tmp_path, redis_url=redis.url)
        ports = [free_port(), free_port()]
        apis = [
            NotiflowProcess(
                ["api", "--host", "127.0.0.1", "--port", str(port)],
                env,
                ready_url=f"http://127.0.0.1:{port}/health",
            )
            for port in ports
        ]
        await create_user(apis[0], "victim@acme.example", "victim-pw")
        await asyncio.gather(*(api.start() for api in apis))
        try:
            clients = [
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) for port in ports
            ]
            statuses = [
                (
                    await login(clients[n % 2], "victim@acme.example", "wrong-pw", f"192.0.2.{n}")
                ).status_code
                for n in range(ACCOUNT_LIMIT + 2)
            ]
            # Redis gone: each process counts alone (from zero, a weaker limit for the outage);
            # logins still answer, never 500.
            redis.stop()
            during_outage = [
                await login(clients[0], "victim@acme.example", "wrong-pw", "192.0.2.50"),
                await login(clients[1], "victim@acme.example", "victim-pw", "192.0.2.51"),
            ]
            redis.start()
            for client in clients:
                await client.aclose()
        finally:
            for api in apis:
                api.stop()

    # Alternating between the two processes, the 6th attempt is refused: one count.
    assert statuses == [401] * ACCOUNT_LIMIT + [429, 429]
    assert [response.status_code for response in during_outage] == [401, 200]
