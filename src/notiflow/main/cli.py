"""The ``notiflow`` command line: serve, migrate and bootstrap users and tokens (JSON output)."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import json
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import structlog
import typer
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.config import Settings, get_settings
from notiflow.kit.db import database_unavailable
from notiflow.kit.errors import NotiflowError
from notiflow.kit.logging import configure_logging
from notiflow.kit.migrate import ensure_sqlite_directory, upgrade
from notiflow.kit.tenant_scope import in_tenant
from notiflow.kit.uow import unit_of_work
from notiflow.models import Membership, Tenant, User
from notiflow.models.tenancy import Role

if TYPE_CHECKING:
    import uvicorn
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

    from notiflow.kit.queue import WorkspacePayload
    from notiflow.main.runtime import Runtime

T = TypeVar("T")

app = typer.Typer(help="notiflow: notifications and background jobs.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
users_app = typer.Typer(help="Users and tenants.", no_args_is_help=True)
tokens_app = typer.Typer(help="Personal access tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
invitations_app = typer.Typer(help="Invitations to join a tenant.", no_args_is_help=True)
app.add_typer(invitations_app, name="invitations")
schedule_app = typer.Typer(help="Periodic jobs.", no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
jobs_app = typer.Typer(
    help="Jobs that failed for good (the dead-letter table).", no_args_is_help=True
)
app.add_typer(jobs_app, name="jobs")
loadtest_app = typer.Typer(help="Load tests against a running notiflow.", no_args_is_help=True)
app.add_typer(loadtest_app, name="loadtest")


def _print_json(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, default=str))


def _fail(message: str, code: str = "error") -> NoReturn:
    typer.echo(json.dumps({"error": {"code": code, "message": message}}), err=True)
    raise typer.Exit(1)


_PORT_PROBLEMS = {
    errno.EADDRINUSE: "is taken (another program listens there)",
    errno.EACCES: "needs privileges this process lacks",
    errno.EADDRNOTAVAIL: "is on an address this machine does not have",
}


def _unavailable_port(
    error: OSError, what: str, host: str, port: int, flag: str, variable: str | None = None
) -> NoReturn:
    """One line saying which port could not be listened on and what changes it (exit 1)."""
    problem = _PORT_PROBLEMS.get(error.errno or 0, f"cannot be listened on ({error.strerror})")
    change = f"{flag} or {variable}" if variable else flag
    _fail(
        f"the {what} port {host}:{port} {problem}; choose another with {change}", "port_unavailable"
    )
    raise AssertionError  # unreachable: _fail exits


def listen_socket(
    host: str, port: int, what: str, flag: str, variable: str | None = None
) -> socket.socket:
    """A listening socket on ``host:port``, or one line about why not (exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=4096)
    except OSError as error:
        _unavailable_port(error, what, host, port, flag, variable)


def _text_option(value: str, label: str, max_length: int) -> str:
    """A stripped, non-empty option value that fits its column on every backend (SQLite does
    not enforce lengths, PostgreSQL refuses longer values and NUL characters)."""
    text = value.strip()
    if not text:
        _fail(f"{label} must not be empty", "validation_failed")
    if len(text) > max_length:
        _fail(f"{label} must be at most {max_length} characters", "validation_failed")
    if any(not character.isprintable() for character in text):
        _fail(f"{label} must not contain control characters", "validation_failed")
    return text


async def _upgrade_or_fail(engine: AsyncEngine) -> None:
    """Bring the schema up to date. Without the database nothing can start (its schema must
    be checked first): one clear line and exit 1 rather than a traceback. Redis, by contrast,
    may be away at start-up (Runtime.start)."""
    try:
        await upgrade(engine)
    except Exception as error:
        if not database_unavailable(error):
            raise
        await engine.dispose()
        cause: BaseException = error
        for _ in range(5):  # the driver's own error says what is wrong
            cause = cause.__cause__ or cause
        where = engine.url.render_as_string(hide_password=True)
        reason = f"{type(cause).__name__}: {cause}".splitlines()[0]
        # The code every command uses for a database it cannot work with (see _with_session).
        _fail(f"cannot reach the database at {where}: {reason}", "database_error")


def served_settings(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    ws_port: int | None = None,
) -> Settings:
    """The settings with the command line's address, and public URLs that follow it.

    Links in emails, export downloads and the authorization endpoint handed to Echo point at
    ``NOTIFLOW_PUBLIC_URL``; when it is not set, they point at the API as actually served
    (``--host`` / ``--port``), so ``serve --port 8080`` hands out ``:8080`` links, not ``:8000``.
    """
    update: dict[str, Any] = {}
    if host is not None:
        update["api_host"] = host
    if port is not None:
        update["api_port"] = port
    if ws_port is not None:
        update["ws_port"] = ws_port
    if "public_url" not in settings.model_fields_set:
        served_host = update.get("api_host", settings.api_host)
        if served_host in ("0.0.0.0", "::", ""):  # noqa: S104 - naming it, not binding it
            served_host = "127.0.0.1"
        elif ":" in served_host:
            served_host = f"[{served_host}]"
        update["public_url"] = f"http://{served_host}:{update.get('api_port', settings.api_port)}"
    return settings.model_copy(update=update) if update else settings


async def _prepare(settings: Settings, *, join_cluster: bool = False) -> Runtime:
    """The whole runtime (queue, senders, realtime) over a migrated database. Imported here,
    not at the top: commands that only touch the database start without it."""
    from notiflow.main.runtime import create_runtime

    ensure_sqlite_directory(settings.database_url)
    runtime = create_runtime(settings)
    await _upgrade_or_fail(runtime.engine)
    if join_cluster:
        await runtime.start()
        # Everything loaded so far lives as long as the process: keep it out of the garbage
        # collector's scans (a large fan-out allocates enough to trigger several collections).
        gc.collect()
        gc.freeze()
    return runtime


async def _migrated_database(
    settings: Settings,
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """An engine and sessions over a migrated database, and nothing else (no queue, Redis or
    senders): what the commands that only read and write rows need."""
    from notiflow.kit.db import create_engine
    from notiflow.kit.uow import create_sessionmaker

    ensure_sqlite_directory(settings.database_url)
    engine = create_engine(settings.database_url, echo=settings.database_echo)
    await _upgrade_or_fail(engine)
    return engine, create_sessionmaker(engine)


def _with_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work against a migrated database, committing at the end. The work
    must not queue jobs or live events: there is no runtime to carry them out here."""

    async def run() -> T:
        engine, sessionmaker = await _migrated_database(get_settings())
        try:
            async with unit_of_work(sessionmaker) as session:
                result = await work(session)
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except NotiflowError as error:
        _fail(error.message, error.code)
        raise  # unreachable: _fail exits
    except (SQLAlchemyError, OSError) as error:
        # An unreachable or refusing database is an operational error, not a crash to dump.
        _fail(f"database error: {type(error).__name__}: {error}".splitlines()[0], "database_error")
        raise  # unreachable: _fail exits


def _serve_metrics(host: str, port: int) -> asyncio.Task[None]:
    """``/metrics`` on ``host:port`` (``--metrics-port`` of worker and scheduler), as a task."""
    import contextlib

    import uvicorn

    from notiflow.kit.metrics import metrics_app

    sock = listen_socket(host, port, "metrics", "--metrics-port")
    server = uvicorn.Server(
        uvicorn.Config(metrics_app(), access_log=False, log_config=None, lifespan="off")
    )
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # the command's own handlers
    return asyncio.create_task(server.serve(sockets=[sock]), name="metrics")


async def _until_signalled() -> None:
    """Return at SIGINT or SIGTERM (the process then shuts down cleanly and exits 0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


async def _shut_down(runtime: Runtime, tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Stop a process's loops and close its runtime.

    Stopping is not failing: a loop that had ended with an error, or a service that is down
    at this very moment (Redis in an outage: its keys cannot be cleaned up), is logged, and
    the process still exits 0 after SIGTERM.
    """
    log = structlog.get_logger("notiflow")
    for task in tasks:
        task.cancel()
    for task, outcome in zip(
        tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True
    ):
        if isinstance(outcome, Exception):
            log.warning("background_task_had_failed", task=task.get_name(), exc_info=outcome)
    try:
        await runtime.close()
    except Exception:
        log.warning("shutdown_incomplete", exc_info=True)


def _stop_uvicorn_on_signals(server: uvicorn.Server) -> None:
    """Let SIGTERM and SIGINT stop ``server`` and then let our cleanup run: exit 0.

    uvicorn handles the signal, shuts down, then raises it again against the handler it found
    installed; with the default one, that kills the process (exit -15) before the runtime is
    closed. Found installed here, the server's own handler just asks it to stop once more.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, server.handle_exit)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface for the HTTP API.")] = None,
    port: Annotated[int | None, typer.Option(help="Port for the HTTP API.")] = None,
    ws_port: Annotated[
        int | None, typer.Option("--ws-port", help="Port for the WebSocket server.")
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Seed a demo tenant, workspace, two users, a sandbox account and a post due "
            "in two minutes; print their tokens.",
        ),
    ] = False,
) -> None:
    """Apply migrations, then serve the API (default http://127.0.0.1:8000, docs at /docs) and
    the Pusher-protocol WebSocket server (default ws://127.0.0.1:6001) in one process."""
    import contextlib

    import uvicorn
    import uvloop

    from notiflow.delivery.mail_folder import describe_mail_transport
    from notiflow.kit import metrics
    from notiflow.main.app import create_app
    from notiflow.main.runtime import replay_source
    from notiflow.main.scheduler import (
        start_elected_scheduler,
        start_queue_sampler,
        start_worker,
    )
    from notiflow.realtime.node_stats import report_connections
    from notiflow.realtime.server import build_realtime_server

    settings = served_settings(get_settings(), host=host, port=port, ws_port=ws_port)
    if demo:
        # The demo's sandbox account has news every minute; its data never mixes with the
        # walk-through's (a database of its own unless NOTIFLOW_DATABASE_URL names one).
        demo_update: dict[str, Any] = {"inbox_sync_interval_minutes": 1}
        if "database_url" not in settings.model_fields_set:
            demo_update["database_url"] = DEMO_DATABASE_URL
        settings = settings.model_copy(update=demo_update)
    configure_logging(settings.log_level, json=settings.log_json)

    async def main() -> None:
        bind_host, bind_port = settings.api_host, settings.api_port
        api_socket = listen_socket(bind_host, bind_port, "API", "--port", "NOTIFLOW_API_PORT")
        runtime = await _prepare(settings, join_cluster=True)
        if demo:
            await _seed_demo(runtime, f"http://{bind_host}:{bind_port}")
        config = uvicorn.Config(
            create_app(runtime=runtime),
            host=bind_host,
            port=bind_port,
            access_log=False,
            log_config=None,
            http="httptools",
        )
        realtime = build_realtime_server(
            settings,
            runtime.hub,
            replay_source(settings, runtime.sessionmaker),
            runtime.app_hubs,
        )
        try:
            await realtime.start(settings.ws_host, settings.ws_port)
        except OSError as error:
            api_socket.close()
            await _shut_down(runtime, [])
            _unavailable_port(
                error, "WebSocket", settings.ws_host, settings.ws_port, "--ws-port",
                "NOTIFLOW_WS_PORT",
            )  # fmt: skip
        metrics.set_realtime_connections_source(lambda: realtime.connection_count)
        report_connections(runtime.hub, lambda: realtime.connection_count)
        # Everything a deployment needs runs here, whatever the configuration: jobs (with
        # Redis, a worker on the shared queue; without, in this process as they are queued)
        # and a candidate for the one scheduler (the sweeper hands out retries and anything a
        # restart left behind). `notiflow worker` / `notiflow scheduler` add more of each.
        background = start_elected_scheduler(runtime) + start_queue_sampler(runtime)
        if settings.redis_url:
            background += start_worker(runtime, SERVE_WORKER_CONCURRENCY)
        structlog.get_logger("notiflow").info(
            "api_listening",
            url=f"http://{bind_host}:{bind_port}",
            docs=f"http://{bind_host}:{bind_port}/docs",
            database=runtime.engine.url.render_as_string(hide_password=True),
            redis="enabled" if runtime.redis is not None else "disabled",
            **describe_mail_transport(settings),
        )
        server = uvicorn.Server(config)
        # SIGTERM and SIGINT are handled here, not by uvicorn: through uvicorn, the WebSocket
        # clients would hear of it only once every HTTP request still running had finished (a
        # slow upload, a large send). They are told at once (4200: pusher-js reconnects to
        # another node) and their presence ends cluster-wide, while uvicorn lets the running
        # requests finish.
        server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # our handlers below
        stopping: list[asyncio.Task[None]] = []

        def stop() -> None:
            server.should_exit = True
            if not stopping:
                stopping.append(asyncio.create_task(realtime.stop()))

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        try:
            await server.serve(sockets=[api_socket])
        finally:
            await realtime.stop()  # waits for the one a signal started
            await _shut_down(runtime, background)

    uvloop.run(main())


async def _seed_demo(runtime: Runtime, api_url: str) -> None:
    from notiflow.main.demo import seed_demo

    async with unit_of_work(runtime.sessionmaker) as session:
        seed = await seed_demo(
            session, runtime.token_cipher(), runtime.notification_service(session)
        )
    workspace = f"{api_url}/api/v1/workspaces/{seed.workspace_id}"
    typer.echo(
        json.dumps(
            {
                "demo": {
                    "database": runtime.engine.url.render_as_string(hide_password=True),
                    # Open it and paste a token ("Use a token instead").
                    "notification_center": f"{api_url}/",
                    # The tenant's operations: with the owner's token.
                    "admin": f"{api_url}/admin",
                    "owner_token": seed.owner_token,
                    "editor_token": seed.editor_token,
                    "workspace_id": seed.workspace_id,
                    "post_id": seed.post_id,
                    "post_scheduled_at": seed.scheduled_at,
                    "post_scheduled_at_local": seed.scheduled_at_local,
                    "try": [
                        f"curl -H 'Authorization: Bearer {seed.editor_token}' "
                        f"{api_url}/api/v1/notifications",
                        f"curl -H 'Authorization: Bearer {seed.editor_token}' "
                        f"{workspace}/posts/{seed.post_id}",
                        f"curl -H 'Authorization: Bearer {seed.owner_token}' {workspace}/inbox",
                    ],
                }
            },
            indent=2,
        )
    )


# `serve --demo`'s own database (the default one is ./var/notiflow.db).
DEMO_DATABASE_URL = "sqlite+aiosqlite:///./var/demo.db"
# Jobs a `serve` process runs at once from the Redis queue (next to the API and WebSocket).
SERVE_WORKER_CONCURRENCY = 10


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="Interface for the HTTP API.")] = None,
    port: Annotated[int | None, typer.Option(help="Port for the HTTP API.")] = None,
) -> None:
    """Run only the HTTP API (scale-out: with NOTIFLOW_REDIS_URL its live events reach every
    `notiflow realtime` node)."""
    import uvicorn
    import uvloop

    from notiflow.main.app import create_app
    from notiflow.main.scheduler import start_queue_sampler

    settings = served_settings(get_settings(), host=host, port=port)
    configure_logging(settings.log_level, json=settings.log_json)

    async def main() -> None:
        api_socket = listen_socket(
            settings.api_host, settings.api_port, "API", "--port", "NOTIFLOW_API_PORT"
        )
        runtime = await _prepare(settings, join_cluster=True)
        sampler = start_queue_sampler(runtime)
        config = uvicorn.Config(
            create_app(runtime=runtime),
            host=settings.api_host,
            port=settings.api_port,
            access_log=False,
            log_config=None,
            http="httptools",
        )
        server = uvicorn.Server(config)
        _stop_uvicorn_on_signals(server)
        try:
            await server.serve(sockets=[api_socket])
        finally:
            await _shut_down(runtime, sampler)

    uvloop.run(main())


@app.command()
def realtime(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            "--http-port", help="Also serve /health and /metrics on this port (default: off)."
        ),
    ] = None,
) -> None:
    """Run only the Pusher-protocol WebSocket server (scale-out: one or more per machine). It
    reads NOTIFLOW_DATABASE_URL only to replay missed notifications to reconnecting clients."""
    import contextlib

    import uvicorn
    import uvloop

    from notiflow.kit import metrics
    from notiflow.kit.db import create_engine
    from notiflow.kit.uow import create_sessionmaker
    from notiflow.main.runtime import build_hubs, replay_source
    from notiflow.realtime.health import node_app
    from notiflow.realtime.node_stats import report_connections
    from notiflow.realtime.server import build_realtime_server

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)

    async def main() -> None:
        bind_host, bind_port = host or settings.ws_host, port or settings.ws_port
        http_socket = (
            listen_socket(bind_host, http_port, "health and metrics", "--http-port")
            if http_port is not None
            else None
        )
        hub, app_hubs, close_hub = await build_hubs(settings)
        # Only to read what a reconnecting client missed (no migrations: the API owns the
        # schema); connected on the first replay, so a node starts whatever the database does.
        engine = create_engine(settings.database_url, echo=settings.database_echo)
        replay = replay_source(settings, create_sessionmaker(engine))
        server = build_realtime_server(settings, hub, replay, app_hubs)
        try:
            await server.start(bind_host, bind_port)
        except OSError as error:
            await close_hub()
            await engine.dispose()
            _unavailable_port(
                error, "WebSocket", bind_host, bind_port, "--port", "NOTIFLOW_WS_PORT"
            )
        metrics.set_realtime_connections_source(lambda: server.connection_count)
        report_connections(hub, lambda: server.connection_count)
        http: uvicorn.Server | None = None
        http_task: asyncio.Task[None] | None = None
        if http_socket is not None and http_port is not None:
            http = uvicorn.Server(
                uvicorn.Config(
                    node_app(hub, lambda: server.connection_count),
                    host=bind_host,
                    port=http_port,
                    access_log=False,
                    log_config=None,
                    lifespan="off",
                )
            )
            # SIGTERM is handled below, for both servers.
            http.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # keep our handlers
            http_task = asyncio.create_task(http.serve(sockets=[http_socket]))
        try:
            await _until_signalled()
        finally:
            # The WebSocket clients first (4200, their presence ended cluster-wide), whatever
            # the health server is still answering.
            await server.stop()
            if http is not None and http_task is not None:
                http.should_exit = True
                await http_task
            await close_hub()
            await engine.dispose()

    uvloop.run(main())


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=1_000, help="Jobs run at once (<= the database pool).")
    ] = 20,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics on this port (on NOTIFLOW_API_HOST; default: off)."),
    ] = None,
) -> None:
    """Run jobs from the Redis queue (NOTIFLOW_REDIS_URL); start as many as needed."""
    import uvloop

    from notiflow.delivery.mail_folder import describe_mail_transport
    from notiflow.main.scheduler import start_queue_sampler, start_worker

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)
    if not settings.redis_url:
        _fail(
            "notiflow worker needs NOTIFLOW_REDIS_URL; without Redis, `notiflow serve` runs "
            "jobs in its own process",
            "configuration_error",
        )

    async def main() -> None:
        runtime = await _prepare(settings, join_cluster=True)
        tasks = start_worker(runtime, concurrency) + start_queue_sampler(runtime)
        if metrics_port is not None:
            tasks.append(_serve_metrics(settings.api_host, metrics_port))
        structlog.get_logger("notiflow").info(
            "worker_started", concurrency=concurrency, **describe_mail_transport(settings)
        )
        try:
            await _until_signalled()
        finally:
            await _shut_down(runtime, tasks)

    uvloop.run(main())


@app.command()
def scheduler(
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve /metrics on this port (on NOTIFLOW_API_HOST; default: off)."),
    ] = None,
) -> None:
    """Run the scheduler of a scale-out deployment: the outbox sweeper, the due-post scanner and
    the periodic jobs (`notiflow schedule list`). Start as many as wanted (every `serve` is one
    too): they elect one, and another takes over within NOTIFLOW_SCHEDULER_LEASE_SECONDS when
    it dies."""
    import uvloop

    from notiflow.main.scheduler import start_elected_scheduler, start_queue_sampler

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)

    async def main() -> None:
        runtime = await _prepare(settings, join_cluster=True)
        tasks = start_elected_scheduler(runtime) + start_queue_sampler(runtime)
        if metrics_port is not None:
            tasks.append(_serve_metrics(settings.api_host, metrics_port))
        structlog.get_logger("notiflow").info("scheduler_started")
        try:
            await _until_signalled()
        finally:
            await _shut_down(runtime, tasks)

    uvloop.run(main())


@schedule_app.command("list")
def schedule_list() -> None:
    """The periodic jobs and when each runs next, one JSON object per line."""
    from notiflow.schedule import describe

    for row in describe(get_settings()):
        _print_json(row)


@jobs_app.command("failed")
def jobs_failed(
    all_: Annotated[bool, typer.Option("--all", help="Include jobs already retried.")] = False,
) -> None:
    """List failed jobs, one JSON object per line (newest first)."""
    from notiflow.admin import failed_jobs

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        jobs = await failed_jobs.list_failed(session, include_retried=all_)
        return [failed_jobs.describe(job) for job in jobs]

    rows = _with_session(work)
    for row in rows:
        _print_json(row)
    if not rows:
        typer.echo("no failed jobs" if not all_ else "no failed jobs, retried or not", err=True)


@app.command()
def deliveries(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    user: Annotated[str | None, typer.Option(help="Only this user's (email address).")] = None,
    channel: Annotated[
        str | None, typer.Option(help="Only this channel: email, push or sms.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(help="pending, sending, sent, failed, suppressed or outcome_unknown."),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Only this reason, e.g. user_global_off.")
    ] = None,
    type_: Annotated[
        str | None, typer.Option("--type", help="Only this notification type.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after (ISO-8601 with a time zone).")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Created before (ISO-8601 with a time zone).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="At most this many rows.")] = 50,
) -> None:
    """The tenant's delivery ledger, newest first, one JSON object per line (the API's
    GET /api/v1/tenant/deliveries)."""
    from datetime import datetime

    from notiflow.notifications.ledger_search import LedgerFilters, LedgerStatus, search_ledger
    from notiflow.notifications.types import NotificationChannel, NotificationType

    def choice(value: str | None, kind: type[Any], label: str) -> Any:
        if value is None:
            return None
        try:
            return kind(value)
        except ValueError:
            known = ", ".join(item.value for item in kind)
            _fail(f"unknown {label} {value!r}; known: {known}", "validation_failed")

    def moment(value: str | None, label: str) -> datetime | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            _fail(f"--{label} must be ISO-8601 with a time zone, e.g. 2026-12-06T09:00:00Z",
                  "validation_failed")  # fmt: skip
        return parsed

    filters = LedgerFilters(
        channel=choice(channel, NotificationChannel, "channel"),
        status=choice(status, LedgerStatus, "status"),
        reason=reason,
        type=choice(type_, NotificationType, "type"),
        since=moment(since, "since"),
        until=moment(until, "until"),
    )

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        tenant_id = await session.scalar(select(Tenant.id).where(Tenant.name == tenant.strip()))
        if tenant_id is None:
            raise NotiflowError(f"no tenant named {tenant!r}", code="not_found")
        search = filters
        if user is not None:
            user_id = await session.scalar(
                select(User.id).where(User.email == user.strip().lower())
            )
            if user_id is None:
                raise NotiflowError(f"no user with email {user}", code="not_found")
            search = dataclasses.replace(filters, user_id=user_id)
        page = await search_ledger(session, tenant_id, search, per_page=limit)
        return [
            {
                "created_at": entry.delivery.created_at,
                "user_id": entry.delivery.user_id,
                "notification_id": entry.delivery.notification_id,
                "type": entry.notification_type,
                "title": entry.title,
                "channel": entry.delivery.channel,
                "status": entry.delivery.status,
                "reason": entry.delivery.reason,
                "attempts": entry.delivery.attempts,
                "last_error": entry.delivery.last_error,
            }
            for entry in page.items
        ]

    rows = _with_session(work)
    for row in rows:
        _print_json(row)
    if not rows:
        typer.echo("no deliveries match", err=True)


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[str | None, typer.Argument(help="A failed job's id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every failed job.")] = False,
) -> None:
    """Run a failed job (or all of them) again; deliveries go back to the outbox."""
    import uuid

    from notiflow.admin import failed_jobs

    if (job_id is None) == (not all_):
        _fail("give a job id or --all", "validation_failed")
    ids: list[uuid.UUID] | None = None
    if job_id is not None:
        try:
            ids = [uuid.UUID(job_id)]
        except ValueError:
            _fail(f"not a job id: {job_id}", "validation_failed")

    async def work(session: AsyncSession) -> list[tuple[str, str, dict[str, Any] | None]]:
        retried = await failed_jobs.retry(session, ids)
        return [(str(job.id), job.job_name, payload) for job, payload in retried]

    retried = _with_session(work)
    settings = get_settings()
    if settings.redis_url and retried:

        async def wake() -> None:
            from notiflow.main.runtime import create_runtime

            runtime = create_runtime(settings)
            try:
                assert runtime.queue is not None  # noqa: S101 - wire_jobs always sets it
                await runtime.queue.start(runtime)
                for _, name, payload in retried:
                    if payload is not None:  # None: back in its outbox, nothing to enqueue
                        await runtime.queue.enqueue(name, payload)
            finally:
                await runtime.close()

        asyncio.run(wake())
    _print_json({"retried": [{"id": job, "job": name} for job, name, _ in retried]})


@jobs_app.command("forget")
def jobs_forget(job_id: Annotated[str, typer.Argument(help="A failed job's id.")]) -> None:
    """Delete a failed job from the list without running it."""
    import uuid

    from notiflow.admin import failed_jobs

    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        _fail(f"not a job id: {job_id}", "validation_failed")
        return

    async def work(session: AsyncSession) -> None:
        await failed_jobs.forget(session, parsed)

    _with_session(work)
    _print_json({"forgotten": job_id})


@loadtest_app.command("ws")
def loadtest_ws(
    token: Annotated[str, typer.Option(help="Bearer token of an owner or admin.")],
    api_url: Annotated[str, typer.Option(help="Base URL of the API.")] = "http://127.0.0.1:8000",
    ws_url: Annotated[
        str | None, typer.Option(help="WebSocket base URL (default: from /realtime/config).")
    ] = None,
    connections: Annotated[
        int, typer.Option(min=1, max=50_000, help="WebSocket connections to open.")
    ] = 100,
    rate: Annotated[float, typer.Option(min=0.1, help="Notifications per second.")] = 10.0,
    duration: Annotated[float, typer.Option(min=0.1, max=3600, help="Seconds of sending.")] = 10.0,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the notifications sent (default: deleted).")
    ] = False,
) -> None:
    """Open N connections on the caller's private channel, send notifications at RATE/s for
    DURATION s through the API, and report delivered/expected, throughput and latency. Progress
    goes to stderr, the report (one JSON object) to stdout; the notifications it sent are
    deleted from the caller's feed at the end unless --keep."""
    import uvloop

    from notiflow.main.loadtest import run_ws_load

    result = uvloop.run(
        run_ws_load(
            api_url=api_url,
            token=token,
            connections=connections,
            rate=rate,
            duration=duration,
            ws_url=ws_url,
            keep=keep,
            progress=lambda line: typer.echo(line, err=True),
        )
    )
    _print_json(result)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all pending migrations to NOTIFLOW_DATABASE_URL."""

    async def main() -> None:
        engine, _ = await _migrated_database(get_settings())
        await engine.dispose()

    asyncio.run(main())
    _print_json({"status": "ok"})


@users_app.command("create")
def users_create(
    tenant: Annotated[str, typer.Option(help="Tenant name; created if it does not exist.")],
    email: Annotated[str, typer.Option(help="The user's email address.")],
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    role: Annotated[Role, typer.Option(help="Role in the tenant.")] = Role.MEMBER,
    password: Annotated[str | None, typer.Option(help="Password for /api/v1/auth/login.")] = None,
    with_token: Annotated[bool, typer.Option("--with-token", help="Also issue a token.")] = False,
) -> None:
    """Create a user (and the tenant if needed); prints one JSON object."""
    from email_validator import EmailNotValidError, validate_email

    from notiflow.auth.service import issue_token
    from notiflow.tenancy.service import create_user

    try:
        normalized = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        _fail(f"invalid email: {error}", "validation_failed")
        return
    tenant_name = _text_option(tenant, "tenant name", 200)
    display_name = _text_option(name, "name", 200) if name is not None else None

    async def work(session: AsyncSession) -> dict[str, Any]:
        created = await create_user(
            session,
            tenant_name=tenant_name,
            email=normalized,
            name=display_name,
            role=role,
            password=password,
        )
        result: dict[str, Any] = {
            "user_id": str(created.user.id),
            "tenant_id": str(created.tenant.id),
            "email": created.user.email,
            "role": role.value,
            "tenant_created": created.tenant_created,
        }
        if with_token:
            result["token"] = await issue_token(session, created.user.id, created.tenant.id)
        return result

    _print_json(_with_session(work))


@tokens_app.command("create")
def tokens_create(
    email: Annotated[str, typer.Option(help="The user's email address.")],
    tenant: Annotated[
        str | None, typer.Option(help="Tenant name (default: the user's first tenant).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the token.")] = "cli",
) -> None:
    """Issue a new personal access token; prints one JSON object with ``token``."""
    from notiflow.auth.service import issue_token

    label = _text_option(name, "token name", 100)
    if tenant is not None:
        tenant = _text_option(tenant, "tenant name", 200)

    async def work(session: AsyncSession) -> dict[str, Any]:
        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise NotiflowError(f"no user with email {email}", code="not_found")
        query = (
            select(Membership.tenant_id)
            .join(Tenant, Tenant.id == Membership.tenant_id)
            .where(Membership.user_id == user.id)
            .order_by(Membership.created_at)
        )
        if tenant is not None:
            query = query.where(Tenant.name == tenant)
        tenant_id = await session.scalar(query.limit(1))
        if tenant_id is None:
            raise NotiflowError(f"{email} is not a member of that tenant", code="not_found")
        token = await issue_token(session, user.id, tenant_id, name=label)
        return {"token": token, "user_id": str(user.id), "tenant_id": str(tenant_id)}

    _print_json(_with_session(work))


async def _tenant_named(session: AsyncSession, name: str) -> Tenant:
    tenant = await session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotiflowError(f"no tenant named {name!r}", code="not_found")
    return tenant


def _print_lines(rows: list[dict[str, Any]], empty: str) -> None:
    """One JSON object per line; say so on stderr when there is none."""
    for row in rows:
        _print_json(row)
    if not rows:
        typer.echo(empty, err=True)


@users_app.command("list")
def users_list(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
) -> None:
    """The tenant's members, oldest first: one JSON object per line."""
    tenant_name = _text_option(tenant, "tenant name", 200)

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        found = await _tenant_named(session, tenant_name)
        rows = await session.execute(
            select(User, Membership.role, Membership.created_at)
            .join(Membership, Membership.user_id == User.id)
            .where(in_tenant(Membership, found.id))
            .order_by(Membership.created_at, Membership.id)
        )
        return [
            {
                "user_id": str(user.id),
                "email": user.email,
                "name": user.name,
                "role": role,
                "tenant_id": str(found.id),
                "joined_at": joined.isoformat(),
            }
            for user, role, joined in rows.all()
        ]

    _print_lines(_with_session(work), f"no members in {tenant_name}")


@tokens_app.command("list")
def tokens_list(
    email: Annotated[str, typer.Option(help="The user's email address.")],
) -> None:
    """The user's tokens in every tenant, newest first, never the secret: one JSON object per
    line."""
    from notiflow.auth.tokens import list_tokens

    async def work(session: AsyncSession) -> list[dict[str, Any]]:
        user = await session.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None:
            raise NotiflowError(f"no user with email {email}", code="not_found")
        return [
            {
                "id": str(token.id),
                "name": token.name,
                "tenant_id": str(token.tenant_id),
                "created_at": token.created_at.isoformat(),
                "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
                "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            }
            for token in await list_tokens(session, user.id)
        ]

    _print_lines(_with_session(work), f"no tokens for {email}")


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (the part before '|').")],
) -> None:
    """Revoke a token: it gets 401 at once (audited). Prints one JSON object."""
    import uuid

    from notiflow.auth.actor import Actor
    from notiflow.auth.tokens import revoke_token

    try:
        parsed = uuid.UUID(token_id.partition("|")[0].strip())
    except ValueError:
        _fail(f"not a token id: {token_id!r}", "validation_failed")

    async def work(session: AsyncSession) -> dict[str, Any]:
        token = await revoke_token(session, None, parsed, Actor(user_id=None, tenant_id=None))
        return {"id": str(token.id), "user_id": str(token.user_id), "revoked": True}

    _print_json(_with_session(work))


@invitations_app.command("create")
def invitations_create(
    tenant: Annotated[str, typer.Option(help="Tenant name.")],
    email: Annotated[str, typer.Option(help="The invitee's email address.")],
    role: Annotated[Role, typer.Option(help="Role in the tenant once accepted.")] = Role.MEMBER,
) -> None:
    """Invite someone to a tenant and print the accept link (built from NOTIFLOW_PUBLIC_URL)
    to pass on: the CLI sends no email. Prints one JSON object."""
    from email_validator import EmailNotValidError, validate_email

    from notiflow.auth.actor import Actor
    from notiflow.tenancy.invitations import accept_link, create_invitation

    try:
        normalized = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        _fail(f"invalid email: {error}", "validation_failed")
    tenant_name = _text_option(tenant, "tenant name", 200)
    settings = get_settings()

    async def work(session: AsyncSession) -> dict[str, Any]:
        found = await _tenant_named(session, tenant_name)
        invitation = await create_invitation(
            session,
            settings,
            Actor(user_id=None, tenant_id=found.id),
            found.id,
            email=normalized,
            role=role,
            notifications=None,
            send_email=False,
        )
        return {
            "invitation_id": str(invitation.id),
            "tenant_id": str(found.id),
            "email": invitation.email,
            "role": invitation.role,
            "expires_at": invitation.expires_at.isoformat(),
            "accept_url": accept_link(settings, invitation.id),
        }

    _print_json(_with_session(work))


webpush_app = typer.Typer(help="Web Push (VAPID keys).", no_args_is_help=True)
app.add_typer(webpush_app, name="webpush")


@webpush_app.command("keys")
def webpush_keys() -> None:
    """Generate a VAPID key pair for Web Push; prints one JSON object with ``public_key`` (what
    browsers take as applicationServerKey), ``private_key`` and the ``env`` lines for .env."""
    from notiflow.delivery.webpush import generate_vapid_keys

    keys = generate_vapid_keys()
    _print_json({"public_key": keys.public_key, "private_key": keys.private_key, "env": keys.env})


inbox_app = typer.Typer(help="The inbox of comments and mentions.", no_args_is_help=True)
app.add_typer(inbox_app, name="inbox")
analytics_app = typer.Typer(help="Post metrics.", no_args_is_help=True)
app.add_typer(analytics_app, name="analytics")


def _dispatch_per_workspace(
    job_name: str, find: Callable[[AsyncSession], Awaitable[list[WorkspacePayload]]]
) -> None:
    """Dispatch ``job_name`` for every workspace ``find`` lists: enqueued for the workers with
    NOTIFLOW_REDIS_URL, otherwise run right here, one workspace after the other."""
    from notiflow.kit.queue import payload_json, run_job

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)

    async def main() -> list[WorkspacePayload]:
        runtime = await _prepare(settings)
        try:
            async with runtime.sessionmaker() as session:
                payloads = await find(session)
            assert runtime.queue is not None  # noqa: S101 - wire_jobs always sets it
            if settings.redis_url:
                await runtime.queue.start(runtime)
                for payload in payloads:
                    await runtime.queue.enqueue(job_name, payload)
            else:
                for payload in payloads:
                    await run_job(runtime, runtime.queue.jobs[job_name], payload_json(payload))
            return payloads
        finally:
            await runtime.close()

    try:
        payloads = asyncio.run(main())
    except (SQLAlchemyError, OSError) as error:
        _fail(f"database error: {type(error).__name__}: {error}".splitlines()[0], "database_error")
        return
    _print_json(
        {
            "dispatched": len(payloads),
            "workspaces": [str(payload.workspace_id) for payload in payloads],
            "mode": "queued" if settings.redis_url else "ran",
        }
    )


@inbox_app.command("sync-all")
def inbox_sync_all() -> None:
    """Sync the inbox of every workspace with connected active accounts."""
    from notiflow.inbox.jobs import workspaces_to_sync

    _dispatch_per_workspace("inbox.sync", workspaces_to_sync)


@analytics_app.command("fetch-metrics")
def analytics_fetch_metrics() -> None:
    """Snapshot post metrics of every workspace with recently published posts."""
    from notiflow.analytics.service import workspaces_with_published_posts

    _dispatch_per_workspace("analytics.fetch_metrics", workspaces_with_published_posts)


def main() -> None:
    from pydantic import ValidationError

    from notiflow.kit.emails import accept_test_domains

    try:
        accept_test_domains(get_settings())
    except ValidationError as error:
        problems = "; ".join(str(item["msg"]) for item in error.errors())
        typer.echo(
            json.dumps({"error": {"code": "configuration_error", "message": problems}}), err=True
        )
        sys.exit(2)
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive stop
        sys.exit(130)
