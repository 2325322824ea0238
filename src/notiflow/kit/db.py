"""Database plumbing: the declarative base, portable column types, engine and session factories."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import JSON, DateTime, MetaData, Uuid, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from notiflow.kit.ids import new_id, utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no timezone type, so values are stored as naive
    UTC (which keeps them sortable as text) and given back their UTC tzinfo when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSONType,
    }


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def create_engine(database_url: str, *, echo: bool = False) -> AsyncEngine:
    """An engine tuned per backend: WAL, foreign keys and a busy timeout on SQLite."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    # No pre-ping: it costs a round trip on every checkout (~0.4 ms of every request). A
    # connection the server closed (a restart, an outage) is found without one instead, see
    # _discard_closed_connections; stale ones are recycled.
    # asyncpg waits 60 s for a server that does not answer; a request should not.
    connect_args = (
        {"timeout": CONNECT_TIMEOUT_SECONDS}
        if make_url(database_url).get_driver_name() == "asyncpg"
        else {}
    )
    engine = create_async_engine(
        database_url,
        echo=echo,
        pool_size=10,
        max_overflow=20,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "do_connect", _connect_or_operational_error)
    event.listen(engine.sync_engine.pool, "checkout", _discard_closed_connections)
    return engine


# Seconds to wait for PostgreSQL to accept a new connection.
CONNECT_TIMEOUT_SECONDS = 10.0
# What a client is told to wait (Retry-After) while the database is unreachable.
DATABASE_RETRY_AFTER_SECONDS = 2.0


def _connect_or_operational_error(
    dialect: Dialect, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    """Connect, turning a refused or timed-out connection into the driver's OperationalError.

    asyncpg raises ``ConnectionRefusedError``/``TimeoutError`` (OSError) from connect, which
    SQLAlchemy passes through unwrapped; wrapped, every "database unreachable" error is a
    :class:`sqlalchemy.exc.DBAPIError` that :func:`database_unavailable` recognises.
    """
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as error:
        raise dialect.loaded_dbapi.OperationalError(
            f"cannot connect to the database: {type(error).__name__}: {error}", error
        ) from error


def _discard_closed_connections(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """On checkout, refuse a connection whose socket the server already closed.

    A local check, not a round trip: asyncpg notices the closed socket as soon as PostgreSQL
    goes away. Raising DisconnectionError makes the pool connect afresh (and forget every
    connection older than this one), so after an outage the first requests do not each fail
    on a dead connection.
    """
    driver = getattr(dbapi_connection, "driver_connection", None)
    if isinstance(driver, asyncpg.Connection) and driver.is_closed():
        raise sa_exc.InvalidatePoolError("connection closed by the server")


# Raised by asyncpg when the server is gone, going away or not accepting connections yet
# (raw when code uses the driver connection itself, e.g. COPY for bulk inserts).
DRIVER_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,  # connection does not exist, failure, rejection
    asyncpg.exceptions.OperatorInterventionError,  # admin or crash shutdown, starting up
)
_UNAVAILABLE_CAUSES: tuple[type[BaseException], ...] = (OSError, *DRIVER_UNAVAILABLE_ERRORS)


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached now (a 503 and a retry), rather
    than a bug or a bad query: a refused or lost connection, a server shutting down or
    starting up, a pool with no connection to give within its timeout."""
    if isinstance(error, sa_exc.TimeoutError | sa_exc.DisconnectionError):
        return True
    if isinstance(error, DRIVER_UNAVAILABLE_ERRORS):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    cause: BaseException | None = error.orig
    seen = 0
    while cause is not None and seen < 5:  # the driver's error sits under the adapter's
        if isinstance(cause, _UNAVAILABLE_CAUSES):
            return True
        cause = getattr(cause, "orig", None) or cause.__cause__
        seen += 1
    return False
