"""The FastAPI application: routers, the one error shape, request limits and health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from notiflow import __version__
from notiflow.admin.failed_jobs_api import router as failed_jobs_router
from notiflow.admin.jobs_api import router as admin_jobs_router
from notiflow.analytics.api import router as analytics_router
from notiflow.audit.api import router as audit_router
from notiflow.auth.api import router as auth_router
from notiflow.auth.tokens_api import router as tokens_router
from notiflow.config import Settings, get_settings
from notiflow.content.api import router as posts_router
from notiflow.content.lag_api import router as publish_lag_router
from notiflow.delivery.mail_api import router as mail_router
from notiflow.delivery.push_api import router as push_router
from notiflow.delivery.unsubscribe_api import router as unsubscribe_router
from notiflow.inbox.api import router as inbox_router
from notiflow.kit.db import (
    DATABASE_RETRY_AFTER_SECONDS,
    DRIVER_UNAVAILABLE_ERRORS,
    database_unavailable,
)
from notiflow.kit.errors import NotiflowError, ServiceUnavailable, error_body
from notiflow.kit.metrics import router as metrics_router
from notiflow.kit.openapi import document_errors
from notiflow.kit.outages import DATABASE
from notiflow.main.runtime import Runtime, create_runtime
from notiflow.main.scheduler import jobs_health
from notiflow.notifications.api import router as notifications_router
from notiflow.notifications.api import tenant_router
from notiflow.notifications.ledger_api import router as ledger_router
from notiflow.notifications.outcomes_api import router as outcomes_router
from notiflow.pages.api import STATIC_PATH, static_files
from notiflow.pages.api import router as pages_router
from notiflow.privacy.api import router as privacy_router
from notiflow.realtime.api import auth_router as realtime_router
from notiflow.realtime.api import pusher_router, pusher_users_router
from notiflow.realtime.nodes_api import router as realtime_nodes_router
from notiflow.realtime.redis import backplane_status
from notiflow.social.api import router as social_router
from notiflow.tenancy.api import router as user_router
from notiflow.tenancy.invitations_api import accept_router as invitation_accept_router
from notiflow.tenancy.invitations_api import router as invitations_router
from notiflow.tenancy.members_api import router as members_router
from notiflow.tenancy.workspace_api import router as workspace_router

log = structlog.get_logger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
}


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """Build the API. Pass a ``runtime`` to share one (tests, the embedded server); otherwise
    one is created from ``settings`` at startup and closed at shutdown."""
    settings = runtime.settings if runtime is not None else (settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = runtime or create_runtime(settings)
        if owned:
            await app.state.runtime.start()
        try:
            yield
        finally:
            if owned:
                await app.state.runtime.close()

    # /docs and /redoc load Swagger UI and ReDoc from notiflow itself: they work offline.
    app = FastAPIOffline(
        title="notiflow",
        version=__version__,
        description="Notifications and background jobs for a multi-tenant social-media platform.",
        lifespan=lifespan,
        static_url="/docs-assets",
    )
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # Built once, with the error answers every operation shares (kit/openapi.py).
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    if runtime is not None:
        app.state.runtime = runtime
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_body_bytes)
    _install_error_handlers(app)
    app.include_router(auth_router)
    app.include_router(user_router)
    app.include_router(tokens_router)
    app.include_router(members_router)
    app.include_router(invitations_router)
    app.include_router(invitation_accept_router)
    app.include_router(workspace_router)
    app.include_router(social_router)
    app.include_router(posts_router)
    app.include_router(inbox_router)
    app.include_router(analytics_router)
    app.include_router(notifications_router)
    app.include_router(tenant_router)
    app.include_router(ledger_router)
    app.include_router(realtime_router)
    app.include_router(pusher_router)
    app.include_router(pusher_users_router)
    app.include_router(push_router)
    app.include_router(unsubscribe_router)
    app.include_router(privacy_router)
    app.include_router(failed_jobs_router)
    app.include_router(admin_jobs_router)
    app.include_router(audit_router)
    app.include_router(outcomes_router)
    app.include_router(publish_lag_router)
    app.include_router(realtime_nodes_router)
    app.include_router(mail_router)
    app.include_router(metrics_router)
    app.include_router(pages_router)
    app.mount(STATIC_PATH, static_files(), name="static")

    @app.get("/health", tags=["health"])
    async def health(request: Request) -> JSONResponse:
        current: Runtime = request.app.state.runtime
        checks: dict[str, str] = {}
        try:
            async with current.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:  # the point of a health check is to report, not raise
            checks["database"] = f"error: {type(error).__name__}"
        if current.redis is None:
            checks["redis"] = "disabled"
        else:
            try:
                await current.redis.ping()
                checks["redis"] = "ok"
            except Exception as error:
                checks["redis"] = f"error: {type(error).__name__}"
        if current.cluster is not None:  # events reach the other nodes only through it
            checks["realtime"] = backplane_status(current.hub)
        healthy = all(value in ("ok", "disabled") for value in checks.values())
        # Whether jobs run anywhere: reported (and "degraded") but not a 503, which would take
        # this API out of a load balancer for what another process lacks.
        jobs = await jobs_health(current) if checks["database"] == "ok" else {}
        running = all(value in ("ok", "in-process") for value in jobs.values())
        return JSONResponse(
            {
                "status": "ok" if healthy and running else "degraded",
                "version": __version__,
                **checks,
                **jobs,
            },
            status_code=200 if healthy else 503,
        )

    return app


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this request's path."""
    allowed: list[str] = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


# What pydantic says when the body is not an object (e.g. text, because of the content type).
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "dict_type"})


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotiflowError)
    async def notiflow_error(_request: Request, error: NotiflowError) -> JSONResponse:
        return JSONResponse(
            error.to_body(), status_code=error.status_code, headers=error.headers() or None
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": list(item.get("loc", ())), "msg": item.get("msg"), "type": item.get("type")}
            for item in error.errors()
        ]
        if any(item["type"] == "json_invalid" for item in details):
            return JSONResponse(
                error_body("invalid_json", "the request body is not valid JSON", details),
                status_code=400,
            )
        first = details[0] if details else {"loc": [], "msg": "invalid"}
        where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        message = f"{where}: {first['msg']}"
        if first["loc"] == ["body"] and first["type"] in _NOT_AN_OBJECT:
            content_type = request.headers.get("content-type", "")
            if "json" not in content_type.lower():
                # FastAPI reads a body as JSON only with a JSON content type; otherwise the
                # object it expected arrives as text, and pydantic's message says nothing useful.
                message = (
                    "the body must be a JSON object sent with Content-Type: application/json "
                    f"(it came as {content_type or 'no content type'})"
                )
        return JSONResponse(error_body("validation_failed", message, details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _STATUS_CODES.get(error.status_code, "http_error")
        headers = dict(getattr(error, "headers", None) or {})
        message = str(error.detail)
        if error.status_code == 405:
            # The router names the methods of the first route with this path only; a path
            # served by several routes (GET and PUT apart) allows all of theirs.
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        return JSONResponse(
            error_body(code, message), status_code=error.status_code, headers=headers or None
        )

    async def database_error(request: Request, error: Exception) -> JSONResponse:
        if not database_unavailable(error):
            raise error  # a bug, not an outage: the unexpected-error handler's 500
        # Logged once per outage (not per request); the transaction was rolled back, so a
        # client retrying with its Idempotency-Key finds nothing half-done.
        DATABASE.failed(error, component="api", path=request.url.path)
        unavailable = ServiceUnavailable(
            "the database is unreachable; retry shortly",
            code="database_unavailable",
            retry_after=DATABASE_RETRY_AFTER_SECONDS,
        )
        return JSONResponse(
            unavailable.to_body(),
            status_code=unavailable.status_code,
            headers=unavailable.headers(),
        )

    database_errors: tuple[type[Exception], ...] = (SQLAlchemyError, *DRIVER_UNAVAILABLE_ERRORS)
    for database_error_class in database_errors:
        app.add_exception_handler(database_error_class, database_error)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled_error", path=request.url.path, error=type(error).__name__)
        return JSONResponse(
            error_body("internal_error", "an unexpected error occurred"), status_code=500
        )


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body: Any = error_body(
            "payload_too_large", f"the request body exceeds {self.max_bytes} bytes"
        )
        response = JSONResponse(body, status_code=413)
        await response({"type": "http"}, _no_receive, send)


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a streamed body grows past the limit. It is an HTTP exception
    because FastAPI turns any other error met while reading the body into a 400."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body exceeds {max_bytes} bytes")


async def _no_receive() -> Message:  # pragma: no cover - a plain response never reads
    return {"type": "http.disconnect"}
