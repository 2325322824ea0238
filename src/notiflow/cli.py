"""The ``notiflow`` command line: serve, migrate and bootstrap users and tokens (JSON output)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.config import Settings, get_settings
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.errors import NotiflowError
from notiflow.kit.logging import configure_logging
from notiflow.kit.migrate import ensure_sqlite_directory, upgrade
from notiflow.models import Membership, Tenant, User
from notiflow.models.tenancy import Role
from notiflow.runtime import Runtime, create_runtime

T = TypeVar("T")

app = typer.Typer(help="notiflow: notifications and background jobs.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
users_app = typer.Typer(help="Users and tenants.", no_args_is_help=True)
tokens_app = typer.Typer(help="Personal access tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")


def _print_json(payload: dict[str, Any]) -> None:
    typer.echo(json.dumps(payload, default=str))


def _fail(message: str, code: str = "error") -> None:
    typer.echo(json.dumps({"error": {"code": code, "message": message}}), err=True)
    raise typer.Exit(1)


async def _prepare(settings: Settings) -> Runtime:
    ensure_sqlite_directory(settings.database_url)
    runtime = create_runtime(settings)
    await upgrade(runtime.engine)
    return runtime


def _with_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work against a migrated database, committing at the end."""

    async def run() -> T:
        runtime = await _prepare(get_settings())
        try:
            async with runtime.sessionmaker() as session:
                result = await work(session)
                await commit_and_flush_effects(session)
                return result
        finally:
            await runtime.close()

    try:
        return asyncio.run(run())
    except NotiflowError as error:
        _fail(error.message, error.code)
        raise  # unreachable: _fail exits


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface for the HTTP API.")] = None,
    port: Annotated[int | None, typer.Option(help="Port for the HTTP API.")] = None,
) -> None:
    """Apply migrations and start the API (default http://127.0.0.1:8000, docs at /docs)."""
    import uvicorn

    from notiflow.app import create_app

    settings = get_settings()
    configure_logging(settings.log_level, json=settings.log_json)

    async def main() -> None:
        runtime = await _prepare(settings)
        config = uvicorn.Config(
            create_app(runtime=runtime),
            host=host or settings.api_host,
            port=port or settings.api_port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
        )
        try:
            await uvicorn.Server(config).serve()
        finally:
            await runtime.close()

    asyncio.run(main())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all pending migrations to NOTIFLOW_DATABASE_URL."""

    async def main() -> None:
        runtime = await _prepare(get_settings())
        await runtime.close()

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
    if not tenant.strip():
        _fail("tenant name must not be empty", "validation_failed")

    async def work(session: AsyncSession) -> dict[str, Any]:
        created = await create_user(
            session,
            tenant_name=tenant.strip(),
            email=normalized,
            name=name,
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
        token = await issue_token(session, user.id, tenant_id, name=name)
        return {"token": token, "user_id": str(user.id), "tenant_id": str(tenant_id)}

    _print_json(_with_session(work))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive stop
        sys.exit(130)
