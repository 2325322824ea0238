"""PostgreSQL and Redis outages under load: `notiflow api` + `worker` + `scheduler`, real servers.

The test owns its PostgreSQL cluster and its redis-server (tests/fault_servers.py) and stops
each for a few seconds while a client keeps sending notifications (email, to a real SMTP
server), each with its own Idempotency-Key, retrying a refused send with the same key:

- PostgreSQL down: the API answers 503 ``database_unavailable`` with Retry-After, never 500;
  /health says degraded at once; after the restart every send went through, every email
  arrived exactly once, /health is ok again, and after a restart that no request noticed the
  first requests do not fail on the pool's dead connections;
- Redis down: the worker logs the outage once and its end once, does not spin (its CPU time
  stays a small fraction of the outage's length), every email still arrives exactly once;
- no process was restarted, and SIGTERM then stops each one with exit status 0.
"""

# ruff: noqa: ASYNC221 - the migration runs once, before any server of the test starts

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from notiflow.auth.service import issue_token
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.db import create_engine
from notiflow.kit.uow import create_sessionmaker
from notiflow.models import Notification, NotificationDelivery
from notiflow.models.tenancy import Role
from notiflow.tenancy.service import create_user
from tests.conftest import TEST_PUSHER_SECRET
from tests.delivery.conftest import SmtpServer
from tests.delivery.processes import (
    NOTIFLOW,
    eventually,
    free_port,
    notiflow_env,
    scale_out_env,
)
from tests.fault_servers import OwnPostgres, OwnRedis
from tests.realtime.test_backplane_faults import (
    APP_ID,
    KEY,
    SECRET,
    health,
    seen,
    subscribe_private,
    trigger,
)

# Compares latencies or CPU time with a baseline of its own: runs alone (scripts/run-tests.sh).
pytestmark = [pytest.mark.slow, pytest.mark.serial]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# SQLAlchemy's default wait for a pooled connection, which an outage must not make callers sit out.
POOL_TIMEOUT_SECONDS = 30.0


class LoggedProcess:
    """``notiflow <args>`` with its log in a file (a pipe nobody reads would fill and block)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - our own console script
                [NOTIFLOW, *self.args], env=self.env, stdout=subprocess.DEVNULL, stderr=log_file
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, text: str) -> int:
        return self.log().count(text)

    def cpu_seconds(self) -> float:
        """User + system CPU time so far, from /proc/<pid>/stat."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def terminate(self) -> int:
        """SIGTERM, then the exit status (killed after 20 s: a hang is a failure too)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -999

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@dataclass
class Answer:
    status: int | None  # None: no HTTP answer at all
    code: str | None
    retry_after: str | None
    at: float


@dataclass
class Load:
    """Sends one after another from a few loops, each with its own Idempotency-Key and title,
    retrying a refused send with the same key after its Retry-After."""

    client: httpx.AsyncClient
    recipient_id: str
    answers: list[Answer] = field(default_factory=list)
    delivered_keys: list[str] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=itertools.count)
    _running: bool = True

    async def send_until_accepted(self, key: str) -> None:
        while True:
            try:
                response = await self.client.post(
                    "/api/v1/notifications/send",
                    headers={"Idempotency-Key": key},
                    json={
                        "user_ids": [self.recipient_id],
                        "type": "payment_failed",
                        "title": key,
                        "message": "Update your card.",
                        "channels": ["email"],
                    },
                )
            except httpx.HTTPError:
                self.answers.append(Answer(None, None, None, time.monotonic()))
                await asyncio.sleep(0.5)
                continue
            code = response.json()["error"]["code"] if response.status_code >= 400 else None
            retry_after = response.headers.get("Retry-After")
            self.answers.append(Answer(response.status_code, code, retry_after, time.monotonic()))
            if response.status_code == 202:
                self.delivered_keys.append(key)
                return
            await asyncio.sleep(min(float(retry_after or 1), 2.0))

    async def loop(self) -> None:
        while self._running:
            await self.send_until_accepted(f"outage-{next(self._numbers)}")
            await asyncio.sleep(0.2)  # steady, a few sends a second: a backlog, not a flood

    def start(self, loops: int = 2) -> list[asyncio.Task[None]]:
        self._running = True
        return [asyncio.create_task(self.loop()) for _ in range(loops)]

    def restart(self) -> list[asyncio.Task[None]]:
        return self.start()

    def stop(self) -> None:
        self._running = False

    def accepted_since(self, moment: float) -> int:
        return sum(1 for answer in self.answers if answer.status == 202 and answer.at > moment)


@dataclass
class Stack:
    api: LoggedProcess
    worker: LoggedProcess
    scheduler: LoggedProcess
    postgres: OwnPostgres
    redis: OwnRedis
    smtp: SmtpServer
    database_url: str
    owner_token: str
    recipient_id: str

    @property
    def processes(self) -> list[LoggedProcess]:
        return [self.api, self.worker, self.scheduler]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    smtp = SmtpServer()
    smtp.start()
    with OwnPostgres() as postgres, OwnRedis() as redis:
        port = free_port()
        env = notiflow_env(
            env="test",
            secret_key="outage-test-secret-key-0123456789abcdef",
            pusher_app_secret=TEST_PUSHER_SECRET,
            database_url=postgres.url,
            redis_url=redis.url,
            smtp_host=smtp.host,
            smtp_port=str(smtp.port),
            public_url=f"http://127.0.0.1:{port}",
            sweep_interval_seconds="0.5",
            delivery_lease_seconds="5",
            delivery_backoff_seconds="0.3",
            log_level="INFO",
        )
        upgraded = subprocess.run(  # noqa: S603 - our own console script
            [NOTIFLOW, "db", "upgrade"], env=env, capture_output=True, text=True, check=False
        )
        assert upgraded.returncode == 0, upgraded.stderr[-2000:]
        engine = create_engine(postgres.url)
        async with create_sessionmaker(engine)() as session:
            owner = await create_user(
                session, tenant_name="acme", email="owner@acme.example", role=Role.OWNER
            )
            recipient = await create_user(session, tenant_name="acme", email="ops@acme.example")
            token = await issue_token(session, owner.user.id, owner.tenant.id)
            await commit_and_flush_effects(session)
        await engine.dispose()
        stack = Stack(
            api=LoggedProcess(["api", "--port", str(port)], env, tmp_path / "api.log"),
            worker=LoggedProcess(["worker", "--concurrency", "4"], env, tmp_path / "worker.log"),
            scheduler=LoggedProcess(["scheduler"], env, tmp_path / "scheduler.log"),
            postgres=postgres,
            redis=redis,
            smtp=smtp,
            database_url=postgres.url,
            owner_token=token,
            recipient_id=str(recipient.user.id),
        )
        for process in stack.processes:
            process.start()
        try:
            yield stack
        finally:
            for process in stack.processes:
                process.kill()
            smtp.stop()


async def _health(client: httpx.AsyncClient) -> dict[str, str]:
    try:
        response = await client.get("/health")
    except httpx.HTTPError:
        return {"status": "unreachable"}
    body: dict[str, str] = response.json()
    return body


async def _emails_per_key(stack: Stack) -> Counter[str]:
    return Counter(str(mail.message["Subject"]) for mail in stack.smtp.received)


async def _notifications_per_title(database_url: str) -> Counter[str]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await session.execute(
                select(Notification.title, func.count()).group_by(Notification.title)
            )
            return Counter({title: count for title, count in rows.all()})
    finally:
        await engine.dispose()


async def _deliveries_of(database_url: str, titles: set[str]) -> list[tuple[object, ...]]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            rows = await session.execute(
                select(
                    Notification.title,
                    NotificationDelivery.status,
                    NotificationDelivery.reason,
                    NotificationDelivery.attempts,
                    NotificationDelivery.last_error,
                )
                .join(Notification, Notification.id == NotificationDelivery.notification_id)
                .where(Notification.title.in_(titles), NotificationDelivery.channel == "email")
            )
            return [tuple(row) for row in rows.all()][:10]
    finally:
        await engine.dispose()


async def _assert_each_delivered_once(stack: Stack, load: Load) -> None:
    keys = set(load.delivered_keys)
    assert len(keys) == len(load.delivered_keys), "a key was accepted twice"

    async def all_arrived() -> bool:
        return set(await _emails_per_key(stack)) >= keys

    try:
        await eventually(all_arrived, timeout=60)
    except AssertionError:
        missing = keys - set(await _emails_per_key(stack))
        ledger = await _deliveries_of(stack.database_url, missing)
        raise AssertionError(f"{len(missing)} of {len(keys)} emails missing: {ledger}") from None
    await asyncio.sleep(1.5)  # time for a duplicate to show up, if there were one
    emails = await _emails_per_key(stack)
    assert {key: n for key, n in emails.items() if n > 1} == {}, "an email arrived twice"
    notifications = await _notifications_per_title(stack.database_url)
    assert {key for key in keys if notifications[key] != 1} == set(), "created twice or not"


async def test_database_and_redis_outages_under_load(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.owner_token}"}
    base_url = f"http://127.0.0.1:{stack.api.args[-1]}"
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def ready() -> bool:
            for process in stack.processes:
                assert process.alive, process.log()[-3000:]
            return (
                (await _health(client)).get("status") == "ok"
                and "worker_started" in stack.worker.log()
                and "scheduler_started" in stack.scheduler.log()
            )

        await eventually(ready, timeout=60)
        load = Load(client, stack.recipient_id)
        loops = load.start()
        try:
            await eventually(lambda: _true(len(load.delivered_keys) >= 10), timeout=30)

            # --- PostgreSQL stops under load ----------------------------------------------
            started = time.monotonic()
            stack.postgres.stop()
            stopped_at = time.monotonic()
            degraded, degraded_seconds = await _timed_health_body(client)
            assert degraded["status"] == "degraded", degraded
            assert degraded["database"] != "ok", degraded
            # A refused connection answers at once: not after the connection pool's 30 s timeout
            # (SQLAlchemy's default), whatever the load on the machine.
            assert degraded_seconds < POOL_TIMEOUT_SECONDS / 2, degraded_seconds
            await eventually(
                lambda: _true(any(answer.status == 503 for answer in load.answers)), timeout=20
            )
            await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - stopped_at)))
            stack.postgres.start()
            restarted_at = time.monotonic()
            await eventually(lambda: _true(load.accepted_since(restarted_at) >= 10), timeout=40)

            refused = [a for a in load.answers if a.at > started and a.status != 202]
            assert refused, "the outage was noticed by the client"
            assert all(a.status == 503 for a in refused), Counter(a.status for a in refused)
            assert all(a.code == "database_unavailable" for a in refused)
            assert all(a.retry_after is not None and int(a.retry_after) >= 1 for a in refused)

            async def healthy() -> bool:
                return (await _health(client)).get("status") == "ok"

            await eventually(healthy, timeout=30)

            # --- a restart no request noticed: the pool's connections are all dead --------
            load.stop()
            await asyncio.wait_for(asyncio.gather(*loops), 60)
            stack.postgres.stop()
            stack.postgres.start()
            burst_at = time.monotonic()
            await asyncio.wait_for(
                asyncio.gather(*(load.send_until_accepted(f"burst-{n}") for n in range(12))), 60
            )
            burst = [a for a in load.answers if a.at > burst_at]
            first_tries_failed = [a for a in burst if a.status != 202]
            assert first_tries_failed == [], Counter((a.status, a.code) for a in burst)
            loops = load.restart()

            # --- Redis stops under load ---------------------------------------------------
            window = 4.0
            cpu_before = stack.worker.cpu_seconds()
            await asyncio.sleep(3.0)
            cpu_baseline = stack.worker.cpu_seconds() - cpu_before
            listener_errors_before = stack.worker.count("Exception found while listening")
            stack.redis.stop()
            cpu_before = stack.worker.cpu_seconds()
            await asyncio.sleep(window)
            cpu_outage = stack.worker.cpu_seconds() - cpu_before
            stack.redis.start()

            async def worker_recovered() -> bool:
                return stack.worker.count('"event": "redis_recovered"') >= 1

            await eventually(worker_recovered, timeout=45)
            redis_back_at = time.monotonic()
            await eventually(lambda: _true(load.accepted_since(redis_back_at) >= 5), timeout=30)
        finally:
            load.stop()
            _, unfinished = await asyncio.wait(loops, timeout=30)
            for task in unfinished:  # a send that cannot succeed (the test failed)
                task.cancel()

        # Logged once, ended once, no traceback per try, and no busy loop.
        assert stack.worker.count("Exception found while listening") == listener_errors_before
        assert stack.worker.count('"event": "redis_unavailable"') == 1, stack.worker.log()[-3000:]
        assert stack.worker.count('"event": "redis_recovered"') == 1
        assert stack.scheduler.count('"event": "delivery_sweep_failed"') == 0
        assert cpu_outage < max(0.6, 0.15 * window), (cpu_outage, cpu_baseline)

        await _assert_each_delivered_once(stack, load)
        await eventually(healthy, timeout=30)
        for process in stack.processes:
            assert process.alive, f"{process.args[0]} was not restarted, it is still running"

    statuses = {process.args[0]: process.terminate() for process in stack.processes}
    assert statuses == {"api": 0, "worker": 0, "scheduler": 0}


async def _true(value: bool) -> bool:
    return value


async def _timed_health_body(client: httpx.AsyncClient) -> tuple[dict[str, str], float]:
    began = time.monotonic()
    body = await _health(client)
    return body, time.monotonic() - began


# --------------------------------------------------------------- one API process, Redis away


def _outage_lines(log_text: str) -> Counter[str]:
    """The events an API logged (level error or with a traceback counted as ``!<event>``)."""
    events: Counter[str] = Counter()
    for line in log_text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            events["<not a log record>"] += 1
            continue
        name = str(record.get("event"))
        failed = "exception" in record or record.get("level") == "error"
        events[f"!{name}" if failed else name] += 1
    return events


async def test_api_sends_and_counts_through_a_redis_outage_and_tells_it_once(
    tmp_path: Path,
) -> None:
    """Sends keep working while Redis is down (the database is the source of truth), the
    unread count comes from the database, and the outage is one log line, not a traceback
    per request."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'notiflow.db'}"
    with OwnRedis() as redis:
        port = free_port()
        env = notiflow_env(
            env="test",
            secret_key="outage-test-secret-key-0123456789abcdef",
            pusher_app_secret=TEST_PUSHER_SECRET,
            database_url=database_url,
            redis_url=redis.url,
            public_url=f"http://127.0.0.1:{port}",
            log_level="INFO",
        )
        upgraded = subprocess.run(  # noqa: S603 - our own console script
            [NOTIFLOW, "db", "upgrade"], env=env, capture_output=True, text=True, check=False
        )
        assert upgraded.returncode == 0, upgraded.stderr[-2000:]
        engine = create_engine(database_url)
        async with create_sessionmaker(engine)() as session:
            owner = await create_user(
                session, tenant_name="acme", email="owner@acme.example", role=Role.OWNER
            )
            token = await issue_token(session, owner.user.id, owner.tenant.id)
            await commit_and_flush_effects(session)
        await engine.dispose()
        api = LoggedProcess(["api", "--port", str(port)], env, tmp_path / "api.log")
        api.start()
        headers = {"Authorization": f"Bearer {token}"}
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
            ) as client:

                async def send(title: str) -> int:
                    response = await client.post(
                        "/api/v1/notifications/send",
                        json={
                            "user_ids": [str(owner.user.id)],
                            "type": "payment_failed",
                            "title": title,
                            "message": "Update your card.",
                            "channels": ["in_app", "email"],
                        },
                    )
                    return response.status_code

                async def unread() -> tuple[int, object]:
                    response = await client.get("/api/v1/notifications/unread-count")
                    return response.status_code, response.json().get("data")

                async def up() -> bool:
                    assert api.alive, api.log()[-3000:]
                    # An API alone: its own services, not the workers it has none of.
                    health = await _health(client)
                    return health.get("database") == health.get("redis") == "ok"

                await eventually(up, timeout=60)
                assert await send("before") == 202
                assert await unread() == (200, {"count": 1})  # now cached in Redis
                logged_before = len(api.log())

                redis.stop()
                assert [await send(f"during-{n}") for n in range(5)] == [202] * 5
                assert await unread() == (200, {"count": 6})
                assert (await client.post("/api/v1/notifications/read-all")).status_code == 200
                assert await unread() == (200, {"count": 0})
                during = _outage_lines(api.log()[logged_before:])
                assert during["redis_unavailable"] == 1, during
                assert [event for event in during if event.startswith(("!", "<"))] == [], during

                # Counted from before the start: a node may reconnect (and say so) before start()
                # has seen the port open.
                logged_after = len(api.log())
                redis.start()  # empty

                async def recovered() -> bool:
                    await send("after")
                    return "redis_recovered" in _outage_lines(api.log()[logged_after:])

                await eventually(recovered, timeout=30)
                assert (await unread())[0] == 200
        finally:
            status = api.terminate()
        events = _outage_lines(api.log())
        assert events["redis_unavailable"] == 1, events
        assert events["redis_recovered"] == 1, events
        assert [event for event in events if event.startswith(("!", "<"))] == [], events
        assert status == 0


# ------------------------------------------------------- processes started while Redis is down


async def test_processes_started_while_redis_is_down_start_degraded_and_join_it(
    tmp_path: Path,
) -> None:
    """api, realtime, worker and scheduler start with Redis unreachable (they used to exit 1),
    say degraded on /health, and join by themselves once Redis comes up: an event sent
    through the API reaches a client of the realtime node, with no process restarted."""
    with OwnRedis() as redis:
        redis.stop()  # the port is the test's; nothing listens on it yet
        api_port, ws_port, node_http_port = free_port(), free_port(), free_port()
        env = scale_out_env(tmp_path, redis.url, api_port, (APP_ID, KEY, SECRET))
        upgraded = subprocess.run(  # noqa: S603 - our own console script
            [NOTIFLOW, "db", "upgrade"], env=env, capture_output=True, text=True, check=False
        )
        assert upgraded.returncode == 0, upgraded.stderr[-2000:]
        processes = {
            "api": ["api", "--port", str(api_port)],
            "realtime": ["realtime", "--port", str(ws_port), "--http-port", str(node_http_port)],
            "worker": ["worker", "--concurrency", "2"],
            "scheduler": ["scheduler"],
        }
        started = {
            name: LoggedProcess(args, env, tmp_path / f"{name}.log")
            for name, args in processes.items()
        }
        for process in started.values():
            process.start()
        api, node = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{node_http_port}"
        client = None
        try:

            async def degraded() -> bool:
                for name, process in started.items():
                    assert process.alive, f"{name} exited: {process.log()[-2000:]}"
                return (
                    await health(api) == 503
                    and await health(node) == 503
                    and "worker_started" in started["worker"].log()
                    and "scheduler_started" in started["scheduler"].log()
                )

            await eventually(degraded, timeout=60)
            redis.start()

            async def joined() -> bool:
                return await health(api) == 200 and await health(node) == 200

            await eventually(joined, timeout=20)
            client = await subscribe_private(ws_port, "private-orders")
            mark = 0

            async def hears() -> bool:
                nonlocal mark
                mark += 1
                assert await trigger(api, "private-orders", "OrderShipped", {"mark": mark}) == 200
                await asyncio.sleep(0.2)
                return seen(client, "OrderShipped", mark)

            await eventually(hears, timeout=10)

            async def all_recovered() -> bool:
                return all(p.count('"event": "redis_recovered"') == 1 for p in started.values())

            await eventually(all_recovered, timeout=30)
        finally:
            if client is not None:
                await client.close()
            statuses = {name: process.terminate() for name, process in started.items()}
        for name, process in started.items():
            log_text = process.log()
            assert log_text.count('"event": "redis_unavailable"') == 1, (name, log_text[-2000:])
            assert "Traceback" not in log_text, (name, log_text[-3000:])
        assert statuses == dict.fromkeys(processes, 0)


def test_a_process_that_cannot_reach_the_database_at_start_says_so_in_one_line() -> None:
    """The database must answer before anything starts (its schema is checked first): the
    process exits 1 with one clear line, not a traceback."""
    env = notiflow_env(
        env="test",
        secret_key="outage-test-secret-key-0123456789abcdef",
        pusher_app_secret=TEST_PUSHER_SECRET,
        database_url=f"postgresql+asyncpg://postgres:secret@127.0.0.1:{free_port()}/notiflow",
    )
    result = subprocess.run(  # noqa: S603 - our own console script
        [NOTIFLOW, "api", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    error = json.loads(lines[0])["error"]
    assert error["code"] == "database_error"
    assert error["message"].startswith("cannot reach the database"), error
    assert "secret" not in error["message"], "the password is not shown"
