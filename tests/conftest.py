"""Shared fixtures: every database test runs on SQLite AND PostgreSQL, against real servers.

PostgreSQL and Redis must be reachable (``.ci/run`` / ``make test`` start them); a test that needs
one that is down fails loudly instead of being skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from notiflow.auth.service import issue_token
from notiflow.config import Environment, Settings
from notiflow.kit import uow
from notiflow.kit.after_commit import commit_and_flush_effects, discard_effects
from notiflow.kit.db import Base, create_engine
from notiflow.kit.migrate import upgrade
from notiflow.kit.uow import create_sessionmaker
from notiflow.main.app import create_app
from notiflow.main.runtime import Runtime
from notiflow.models import Tenant, User
from notiflow.models.tenancy import Role
from notiflow.notifications.events import NotificationEvents
from notiflow.notifications.service import NotificationService
from notiflow.notifications.unread import MemoryUnreadCountCache
from notiflow.tenancy.service import create_user
from tests.delivery.processes import NotiflowProcess

# A session that ends with after-commit effects still queued (committed outside a unit of work,
# so its live events or jobs would never go out) fails the test that made it.
uow.STRICT_EFFECTS = True

# A database of this run's own (unless one is given), so concurrent runs never share tables.
POSTGRES_URL = os.environ.get(
    "NOTIFLOW_TEST_POSTGRES_URL",
    f"postgresql+asyncpg://postgres@127.0.0.1:5432/notiflow_test_{os.getpid()}",
)
_OWN_DATABASE = "NOTIFLOW_TEST_POSTGRES_URL" not in os.environ
# With pytest-xdist (scripts/run-tests.sh) each test process has Redis databases of its own:
# tests flush theirs, and a job stream shared by two processes' workers would lose jobs.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
# NOTIFLOW_TEST_REDIS_URL names the first process's database; the others take those below it.
_REDIS_SERVER, _, _REDIS_DB = os.environ.get(
    "NOTIFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"
).rpartition("/")
REDIS_URL = f"{_REDIS_SERVER}/{int(_REDIS_DB) - XDIST_WORKER}"
BACKENDS = os.environ.get("NOTIFLOW_TEST_BACKENDS", "sqlite,postgresql").split(",")


async def drop_postgres_database(url: str) -> None:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    base, _, name = dsn.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _create_postgres_database(url: str) -> None:
    """Create the test database if it is missing, then reset its schema."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    base, _, name = dsn.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await connection.close()


TEST_PUSHER_KEY = "test-app-key"
TEST_PUSHER_SECRET = "test-app-secret-0123456789"
TEST_PUSHER_APP_ID = "4242"


def make_settings(**overrides: Any) -> Settings:
    """Settings as the tests run them (test environment, real secrets, no Redis by default)."""
    values: dict[str, Any] = {
        "env": Environment.TEST,
        "secret_key": "test-secret-key-0123456789abcdef0123456789",
        "pusher_app_id": TEST_PUSHER_APP_ID,
        "pusher_app_key": TEST_PUSHER_KEY,
        "pusher_app_secret": TEST_PUSHER_SECRET,
        "redis_url": None,
        "push_rollout": "all",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session", params=BACKENDS)
async def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncEngine]:
    """A migrated database per backend, shared by the session (tables are emptied per test)."""
    if request.param == "postgresql":
        await _create_postgres_database(POSTGRES_URL)
        url = POSTGRES_URL
    else:
        path = Path(tmp_path_factory.mktemp("sqlite")) / "notiflow.db"
        url = f"sqlite+aiosqlite:///{path}"
    engine = create_engine(url)
    await upgrade(engine)
    yield engine
    await engine.dispose()
    if request.param == "postgresql" and _OWN_DATABASE:
        await drop_postgres_database(url)


@pytest.fixture
def backend(engine: AsyncEngine) -> str:
    return engine.dialect.name


@pytest.fixture
async def runtime(engine: AsyncEngine) -> AsyncIterator[Runtime]:
    settings = make_settings(database_url=engine.url.render_as_string(hide_password=False))
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessionmaker=create_sessionmaker(engine),
        cache=MemoryUnreadCountCache(),
        events=NotificationEvents(),
    )
    yield runtime
    await _empty_tables(engine)


async def _empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(table.name for table in Base.metadata.sorted_tables)
            await connection.execute(text(f"TRUNCATE {names} CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(table.delete())


@pytest.fixture
async def session(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """A test's own session; what the test did not commit is rolled back, effects included."""
    async with runtime.sessionmaker() as session:
        yield session
        discard_effects(session)


async def commit(session: AsyncSession) -> None:
    """Commit like an edge does: then run the after-commit effects."""
    await commit_and_flush_effects(session)


@pytest.fixture
def service(runtime: Runtime, session: AsyncSession) -> NotificationService:
    return runtime.notification_service(session)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://notiflow.test") as client:
        yield client


@dataclass
class Member:
    user: User
    tenant: Tenant
    role: Role
    token: str

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def tenant_id(self) -> uuid.UUID:
        return self.tenant.id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


MakeMember = Callable[..., Awaitable[Member]]


@pytest.fixture
def make_member(runtime: Runtime) -> MakeMember:
    """Create (and commit) a user in a tenant, with a token. Tenants are created by name."""
    counter = 0

    async def make(
        tenant: str = "acme",
        *,
        role: Role = Role.MEMBER,
        email: str | None = None,
        password: str | None = None,
        **user_fields: Any,
    ) -> Member:
        nonlocal counter
        counter += 1
        async with runtime.sessionmaker() as session:
            created = await create_user(
                session,
                tenant_name=tenant,
                email=email or f"user{counter}-{uuid.uuid4().hex[:6]}@{tenant}.example",
                role=role,
                password=password,
            )
            for field, value in user_fields.items():
                setattr(created.user, field, value)
            token = await issue_token(session, created.user.id, created.tenant.id)
            await commit_and_flush_effects(session)
        return Member(user=created.user, tenant=created.tenant, role=role, token=token)

    return make


@pytest.fixture
async def processes() -> AsyncIterator[list[NotiflowProcess]]:
    """The notiflow processes a test started (append each): stopped at its end."""
    started: list[NotiflowProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await client.ping()  # fails loudly when Redis is down
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()
