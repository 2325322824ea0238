"""The ``notiflow`` console script, run as a real subprocess against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import POSTGRES_URL

# Every test here starts several Python processes.
pytestmark = pytest.mark.slow

NOTIFLOW = str(Path(sys.executable).parent / "notiflow")
CLI_DATABASE = f"notiflow_cli_test_{os.getpid()}"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        """The one JSON object printed on stdout (and nothing else)."""
        lines = self.stdout.strip().splitlines()
        assert len(lines) == 1, self.stdout
        value: dict[str, Any] = json.loads(lines[0])
        return value

    def error(self) -> dict[str, Any]:
        """The JSON error printed on stderr by a failed command."""
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.strip().splitlines()
        assert len(lines) == 1, self.stderr
        value: dict[str, Any] = json.loads(lines[0])["error"]
        return value


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path

    async def run(self, *args: str) -> Result:
        process = await asyncio.create_subprocess_exec(
            NOTIFLOW,
            *args,
            env=self.env,
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return Result(process.returncode, stdout.decode(), stderr.decode())


async def _recreate_postgres_database(name: str, *, create: bool) -> str:
    base = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")[0]
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{POSTGRES_URL.rpartition('/')[0]}/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
async def cli(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cli]:
    """The CLI pointed at a fresh, empty database (a temporary SQLite file or a scratch
    PostgreSQL database), run in a directory without a ``.env`` file."""
    if request.param == "postgresql":
        url = await _recreate_postgres_database(CLI_DATABASE, create=True)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'cli.db'}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFLOW_")}
    env["NOTIFLOW_DATABASE_URL"] = url
    env["NOTIFLOW_ENV"] = "test"
    env["NOTIFLOW_SECRET_KEY"] = "cli-test-secret-key-0123456789abcdef"
    env["NOTIFLOW_PUSHER_APP_SECRET"] = "cli-test-pusher-secret-0123"
    yield Cli(env=env, cwd=tmp_path)
    if request.param == "postgresql":
        await _recreate_postgres_database(CLI_DATABASE, create=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


SERVED_WS_PORTS: dict[str, int] = {}


@pytest.fixture
async def serve(cli: Cli, tmp_path: Path) -> AsyncIterator[str]:
    """``notiflow serve`` on a free port over the same database; yields its base URL."""
    port = _free_port()
    ws_port = _free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            NOTIFLOW,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws-port",
            str(ws_port),
            env=cli.env,
            cwd=cli.cwd,
            stdout=log,
            stderr=log,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_until_healthy(base_url, process, log_path)
        SERVED_WS_PORTS[base_url] = ws_port
        yield base_url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _wait_until_healthy(
    base_url: str, process: asyncio.subprocess.Process, log_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        for _ in range(300):
            if process.returncode is not None:
                log = await asyncio.to_thread(log_path.read_text)
                pytest.fail(f"notiflow serve exited early:\n{log}")
            try:
                response = await client.get("/health")
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            assert response.status_code == 200, response.text
            assert response.json()["database"] == "ok"
            return
    log = await asyncio.to_thread(log_path.read_text)
    pytest.fail(f"notiflow serve did not become healthy:\n{log}")


async def _get_user(base_url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        return await client.get("/api/v1/user", headers={"Authorization": f"Bearer {token}"})


def token_id_only(token: str) -> str:
    return token.partition("|")[0]


def _assert_uuid_like(value: Any) -> None:
    assert isinstance(value, str)
    assert len(value) == 36
    assert value.count("-") == 4


# ---------------------------------------------------------------- users create / tokens create


async def test_users_create_prints_one_json_object_with_a_token(cli: Cli) -> None:
    result = await cli.run(
        "users",
        "create",
        "--tenant",
        "Acme",
        "--email",
        "a@x.io",
        "--role",
        "owner",
        "--password",
        "pw",
        "--with-token",
    )

    assert result.returncode == 0, result.stderr
    created = result.json()
    _assert_uuid_like(created["user_id"])
    _assert_uuid_like(created["tenant_id"])
    assert created["email"] == "a@x.io"
    assert created["role"] == "owner"
    assert created["tenant_created"] is True
    token_id, separator, secret = created["token"].partition("|")
    _assert_uuid_like(token_id)
    assert separator == "|"
    assert len(secret) >= 32


async def test_tokens_from_the_cli_work_against_the_served_api(cli: Cli, serve: str) -> None:
    created = await cli.run(
        "users",
        "create",
        "--tenant",
        "Acme",
        "--email",
        "a@x.io",
        "--role",
        "owner",
        "--password",
        "pw",
        "--with-token",
    )
    assert created.returncode == 0, created.stderr
    user = created.json()

    response = await _get_user(serve, user["token"])
    assert response.status_code == 200, response.text
    me = response.json()["data"]
    assert me["id"] == user["user_id"]
    assert me["tenant_id"] == user["tenant_id"]
    assert me["email"] == "a@x.io"
    assert me["role"] == "owner"

    issued = await cli.run("tokens", "create", "--email", "a@x.io")
    assert issued.returncode == 0, issued.stderr
    second = issued.json()
    assert second["token"] != user["token"]
    assert second["user_id"] == user["user_id"]
    assert second["tenant_id"] == user["tenant_id"]
    response = await _get_user(serve, second["token"])
    assert response.status_code == 200
    assert response.json()["data"]["id"] == user["user_id"]
    # The first token is still valid, and the password set by the CLI logs in.
    assert (await _get_user(serve, user["token"])).status_code == 200
    async with httpx.AsyncClient(base_url=serve, timeout=10) as client:
        login = await client.post("/api/v1/auth/login", json={"email": "a@x.io", "password": "pw"})
        assert login.status_code == 200, login.text
        owner_only = await client.get(
            "/api/v1/tenant/notification-settings",
            headers={"Authorization": f"Bearer {login.json()['data']['token']}"},
        )
        assert owner_only.status_code == 200
        unknown = await client.get(
            "/api/v1/user", headers={"Authorization": f"Bearer {token_id_only(second['token'])}|x"}
        )
        assert unknown.status_code == 401


async def test_public_urls_follow_the_ports_served(cli: Cli, serve: str) -> None:
    """No NOTIFLOW_PUBLIC_URL: what Echo is told (and links) point at the API and WebSocket
    ports actually served, not at the defaults."""
    created = await cli.run(
        "users", "create", "--tenant", "Acme", "--email", "a@x.io", "--with-token"
    )
    token = created.json()["token"]
    async with httpx.AsyncClient(base_url=serve, timeout=10) as client:
        response = await client.get(
            "/api/v1/realtime/config", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    echo = response.json()["data"]["echo"]
    assert echo["authEndpoint"] == f"{serve}/broadcasting/auth"
    assert echo["wsPort"] == SERVED_WS_PORTS[serve]


async def test_users_create_without_token_and_in_an_existing_tenant(cli: Cli) -> None:
    first = await cli.run("users", "create", "--tenant", "Acme", "--email", "a@x.io")
    second = await cli.run(
        "users", "create", "--tenant", "Acme", "--email", "b@x.io", "--name", "Bee"
    )

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "token" not in first.json()
    assert first.json()["role"] == "member"
    assert second.json()["tenant_created"] is False
    assert second.json()["tenant_id"] == first.json()["tenant_id"]


async def test_creating_the_same_user_twice_in_a_tenant_fails(cli: Cli) -> None:
    args = ("users", "create", "--tenant", "Acme", "--email", "a@x.io", "--with-token")
    first = await cli.run(*args)
    assert first.returncode == 0, first.stderr

    again = await cli.run(*args)
    differently_cased = await cli.run("users", "create", "--tenant", "Acme", "--email", "A@X.io")

    for result in (again, differently_cased):
        assert result.returncode == 1
        assert result.stdout == ""
        error = result.error()
        assert error["code"] == "already_member"
        assert "a@x.io" in error["message"]
    # The same person may join another tenant.
    elsewhere = await cli.run("users", "create", "--tenant", "Globex", "--email", "a@x.io")
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert elsewhere.json()["user_id"] == first.json()["user_id"]
    assert elsewhere.json()["tenant_created"] is True


@pytest.mark.parametrize("email", ["not-an-email", "a b@x.io", ""])
async def test_an_invalid_email_fails_cleanly(cli: Cli, email: str) -> None:
    result = await cli.run("users", "create", "--tenant", "Acme", "--email", email)

    assert result.returncode == 1
    assert result.stdout == ""
    error = result.error()
    assert error["code"] == "validation_failed"
    assert "email" in error["message"]
    # Nothing was created: the tenant does not exist yet for the next user.
    created = await cli.run("users", "create", "--tenant", "Acme", "--email", "ok@x.io")
    assert created.returncode == 0, created.stderr
    assert created.json()["tenant_created"] is True


async def test_development_accepts_addresses_on_the_test_domains(cli: Cli) -> None:
    """bob@acme.test is what people make up (and the demo seeds .localhost users): accepted in
    development, refused where mail must be deliverable."""
    refused = await cli.run("users", "create", "--tenant", "Acme", "--email", "bob@acme.test")
    assert refused.returncode == 1
    assert "special-use" in refused.error()["message"]

    development = Cli(env={**cli.env, "NOTIFLOW_ENV": "development"}, cwd=cli.cwd)
    for email in ("bob@acme.test", "ada@demo.notiflow.localhost"):
        created = await development.run("users", "create", "--tenant", "Acme", "--email", email)
        assert created.returncode == 0, created.stderr
        assert created.json()["email"] == email


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(("--tenant", "   "), id="blank-tenant"),
        pytest.param(("--tenant", "x" * 201), id="tenant-too-long"),
        pytest.param(("--tenant", "Acme\x01"), id="tenant-control-character"),
        pytest.param(("--tenant", "Acme", "--name", "n" * 201), id="name-too-long"),
        pytest.param(("--tenant", "Acme", "--role", "boss"), id="unknown-role"),
    ],
)
async def test_bad_options_fail_cleanly_and_alike_on_every_backend(
    cli: Cli, options: tuple[str, ...]
) -> None:
    result = await cli.run("users", "create", "--email", "a@x.io", *options)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    if "--role" not in options:  # Typer's own usage error for choices is not JSON
        assert result.returncode == 1
        assert result.error()["code"] == "validation_failed"
    # Nothing was created.
    assert (await cli.run("tokens", "create", "--email", "a@x.io")).returncode == 1


async def test_limits_themselves_are_accepted(cli: Cli) -> None:
    result = await cli.run(
        "users", "create", "--tenant", "T" * 200, "--email", "a@x.io", "--name", "N" * 200
    )
    assert result.returncode == 0, result.stderr
    token = await cli.run("tokens", "create", "--email", "a@x.io", "--name", "L" * 100)
    assert token.returncode == 0, token.stderr
    too_long = await cli.run("tokens", "create", "--email", "a@x.io", "--name", "L" * 101)
    assert too_long.returncode == 1
    assert too_long.error()["code"] == "validation_failed"


@pytest.mark.parametrize(
    "database",
    [
        pytest.param("sqlite", id="sqlite-folder-is-a-file"),
        pytest.param("postgresql", id="postgresql-nothing-listening"),
    ],
)
async def test_an_unreachable_database_fails_cleanly(tmp_path: Path, database: str) -> None:
    if database == "sqlite":
        (tmp_path / "not-a-folder").write_text("")
        url = f"sqlite+aiosqlite:///{tmp_path / 'not-a-folder' / 'cli.db'}"
    else:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{_free_port()}/nothing"
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFLOW_")}
    cli = Cli(env={**env, "NOTIFLOW_DATABASE_URL": url}, cwd=tmp_path)

    result = await cli.run("users", "create", "--tenant", "Acme", "--email", "a@x.io")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.error()["code"] == "database_error"


async def test_tokens_create_for_an_unknown_user_or_tenant_fails_cleanly(cli: Cli) -> None:
    unknown_user = await cli.run("tokens", "create", "--email", "nobody@x.io")
    assert unknown_user.returncode == 1
    assert unknown_user.stdout == ""
    assert unknown_user.error()["code"] == "not_found"

    created = await cli.run("users", "create", "--tenant", "Acme", "--email", "a@x.io")
    assert created.returncode == 0, created.stderr
    wrong_tenant = await cli.run("tokens", "create", "--email", "a@x.io", "--tenant", "Globex")
    assert wrong_tenant.returncode == 1
    assert wrong_tenant.error()["code"] == "not_found"
    right_tenant = await cli.run("tokens", "create", "--email", "a@x.io", "--tenant", "Acme")
    assert right_tenant.returncode == 0, right_tenant.stderr
    assert right_tenant.json()["tenant_id"] == created.json()["tenant_id"]


async def test_db_upgrade_reports_ok_and_is_repeatable(cli: Cli) -> None:
    for _ in range(2):
        result = await cli.run("db", "upgrade")
        assert result.returncode == 0, result.stderr
        assert result.json() == {"status": "ok"}


# ---------------------------------------------------------------- taken ports


@pytest.mark.parametrize(
    ("command", "taken", "flag"),
    [
        ("serve", "api", "--port or NOTIFLOW_API_PORT"),
        ("serve", "ws", "--ws-port or NOTIFLOW_WS_PORT"),
        ("api", "api", "--port or NOTIFLOW_API_PORT"),
        ("realtime", "ws", "--port or NOTIFLOW_WS_PORT"),
        ("realtime", "http", "--http-port"),
    ],
)
async def test_a_taken_port_is_one_line_saying_which_and_how_to_change_it(
    cli: Cli, command: str, taken: str, flag: str
) -> None:
    ports = {"api": _free_port(), "ws": _free_port(), "http": _free_port()}
    arguments = {
        "serve": ["--port", str(ports["api"]), "--ws-port", str(ports["ws"])],
        "api": ["--port", str(ports["api"])],
        "realtime": ["--port", str(ports["ws"]), "--http-port", str(ports["http"])],
    }[command]
    with socket.create_server(("127.0.0.1", ports[taken])):
        result = await cli.run(command, "--host", "127.0.0.1", *arguments)

    assert result.returncode == 1
    error = result.error()  # one JSON line on stderr, no traceback
    assert error["code"] == "port_unavailable"
    assert f"127.0.0.1:{ports[taken]} is taken" in error["message"]
    assert flag in error["message"]
    # Nothing claimed to listen that did not.
    assert "_listening" not in result.stdout + result.stderr


# ---------------------------------------------------------------- the delivery ledger


async def test_deliveries_lists_the_tenants_ledger_and_says_when_nothing_matches(
    cli: Cli, serve: str
) -> None:
    owner = await cli.run(
        "users", "create", "--tenant", "Acme", "--email", "o@x.io", "--role", "owner",
        "--with-token",
    )  # fmt: skip
    member = await cli.run("users", "create", "--tenant", "Acme", "--email", "m@x.io")
    assert member.returncode == 0, member.stderr
    async with httpx.AsyncClient(base_url=serve, timeout=10) as client:
        sent = await client.post(
            "/api/v1/notifications/send",
            headers={"Authorization": f"Bearer {owner.json()['token']}"},
            json={
                "user_ids": [member.json()["user_id"]],
                "type": "payment_failed",
                "title": "Payment failed",
                "message": "Update your card.",
            },
        )
    assert sent.status_code == 202, sent.text

    listed = await cli.run(
        "deliveries", "--tenant", "Acme", "--user", "m@x.io", "--channel", "push"
    )
    assert listed.returncode == 0, listed.stderr
    row = listed.json()
    assert row["user_id"] == member.json()["user_id"]
    assert (row["channel"], row["status"], row["title"]) == ("push", "suppressed", "Payment failed")

    nothing = await cli.run("deliveries", "--tenant", "Acme", "--status", "failed")
    assert nothing.returncode == 0
    assert nothing.stdout == ""
    assert "no deliveries match" in nothing.stderr

    unknown = await cli.run("deliveries", "--tenant", "Acme", "--status", "lost")
    assert unknown.returncode == 1
    assert "known: pending" in unknown.error()["message"]
    naive = await cli.run("deliveries", "--tenant", "Acme", "--since", "2026-01-01T00:00:00")
    assert naive.returncode == 1
    assert "time zone" in naive.error()["message"]
    elsewhere = await cli.run("deliveries", "--tenant", "Nobody")
    assert elsewhere.error()["code"] == "not_found"


def test_every_command_and_option_says_what_it_does() -> None:
    """`--help` explains every command and option (typer adds each default)."""
    import typer.main

    from notiflow.main.cli import app

    missing: list[str] = []

    def walk(command: Any, path: list[str]) -> None:
        context = type(command).context_class(command)
        if hasattr(command, "list_commands"):  # a group
            for name in command.list_commands(context):
                walk(command.get_command(context, name), [*path, name])
            return
        if not command.help:
            missing.append(" ".join(path))
        missing.extend(
            f"{' '.join(path)} {parameter.opts[0]}"
            for parameter in command.params
            if parameter.param_type_name == "option" and not parameter.help
        )

    walk(typer.main.get_command(app), [])
    assert missing == []


def _lines(result: Result) -> list[dict[str, Any]]:
    """The JSON objects printed one per line on stdout."""
    return [json.loads(line) for line in result.stdout.strip().splitlines() if line.strip()]


async def test_users_list_tokens_list_and_revoke_against_the_served_api(
    cli: Cli, serve: str
) -> None:
    owner = await cli.run(
        "users", "create", "--tenant", "Acme", "--email", "o@x.io", "--role", "owner",
        "--with-token",
    )  # fmt: skip
    assert owner.returncode == 0, owner.stderr
    member = await cli.run("users", "create", "--tenant", "Acme", "--email", "m@x.io")
    assert member.returncode == 0, member.stderr

    listed = await cli.run("users", "list", "--tenant", "Acme")
    assert listed.returncode == 0, listed.stderr
    assert [(row["email"], row["role"]) for row in _lines(listed)] == [
        ("o@x.io", "owner"),
        ("m@x.io", "member"),
    ]
    unknown = await cli.run("users", "list", "--tenant", "Nobody")
    assert unknown.returncode == 1
    assert unknown.error()["code"] == "not_found"

    none = await cli.run("tokens", "list", "--email", "m@x.io")
    assert none.returncode == 0
    assert none.stdout == ""
    assert "no tokens" in none.stderr

    token = owner.json()["token"]
    tokens = await cli.run("tokens", "list", "--email", "o@x.io")
    [row] = _lines(tokens)
    assert row["id"] == token_id_only(token)
    assert token.partition("|")[2] not in tokens.stdout
    assert row["last_used_at"] is None
    assert (await _get_user(serve, token)).status_code == 200
    # The listing says when the token was last used.
    [used] = _lines(await cli.run("tokens", "list", "--email", "o@x.io"))
    assert used["last_used_at"] is not None

    revoked = await cli.run("tokens", "revoke", row["id"])
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.json()["revoked"] is True
    assert (await _get_user(serve, token)).status_code == 401
    again = await cli.run("tokens", "revoke", row["id"])
    assert again.returncode == 1
    assert again.error()["code"] == "not_found"
    bad = await cli.run("tokens", "revoke", "not-an-id")
    assert bad.error()["code"] == "validation_failed"


async def test_invitations_create_prints_a_link_that_accepts_on_the_served_api(
    cli: Cli, serve: str
) -> None:
    cli.env["NOTIFLOW_PUBLIC_URL"] = "https://app.example.test"
    created = await cli.run("users", "create", "--tenant", "Acme", "--email", "o@x.io")
    assert created.returncode == 0, created.stderr
    invited = await cli.run(
        "invitations", "create", "--tenant", "Acme", "--email", "New@X.io", "--role", "admin"
    )
    assert invited.returncode == 0, invited.stderr
    invitation = invited.json()
    assert invitation["email"] == "new@x.io"
    assert invitation["accept_url"].startswith("https://app.example.test/invitations/accept?")
    token = invitation["accept_url"].partition("token=")[2]
    twice = await cli.run("invitations", "create", "--tenant", "Acme", "--email", "new@x.io")
    assert twice.error()["code"] == "already_invited"
    bad = await cli.run("invitations", "create", "--tenant", "Acme", "--email", "nope")
    assert bad.error()["code"] == "validation_failed"

    async with httpx.AsyncClient(base_url=serve, timeout=10) as client:
        accepted = await client.post(
            "/api/v1/invitations/accept", json={"token": token, "password": "long enough"}
        )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["role"] == "admin"
    listed = await cli.run("users", "list", "--tenant", "Acme")
    assert [row["email"] for row in _lines(listed)] == ["o@x.io", "new@x.io"]


@pytest.fixture
def mail_dir(cli: Cli, tmp_path: Path) -> Path:
    """Email to a folder (``NOTIFLOW_MAIL_DRIVER=file``). Request it before ``serve``, which
    then starts with this environment."""
    folder = tmp_path / "mail"
    cli.env["NOTIFLOW_MAIL_DRIVER"] = "file"
    cli.env["NOTIFLOW_MAIL_DIR"] = str(folder)
    cli.env["NOTIFLOW_PUBLIC_URL"] = "https://app.example.test"
    return folder


async def test_an_invitation_made_through_the_served_api_is_emailed_and_accepted(
    cli: Cli, mail_dir: Path, serve: str
) -> None:
    owner = await cli.run(
        "users", "create", "--tenant", "Acme", "--email", "o@x.io", "--role", "owner",
        "--with-token",
    )  # fmt: skip
    assert owner.returncode == 0, owner.stderr
    headers = {"Authorization": f"Bearer {owner.json()['token']}"}
    async with httpx.AsyncClient(base_url=serve, timeout=10) as client:
        invited = await client.post(
            "/api/v1/tenant/invitations", json={"email": "bob@x.io"}, headers=headers
        )
        assert invited.status_code == 201, invited.text
        # The worker in `serve` sends it: wait for the message to land (bounded, not timed).
        for _ in range(600):
            messages = await asyncio.to_thread(lambda: sorted(mail_dir.glob("*.eml")))
            if messages:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the invitation email never arrived in the mail folder")
        raw = await asyncio.to_thread(messages[0].read_bytes)
        message = message_from_bytes(raw, policy=email_policy.default)
        assert "bob@x.io" in str(message["To"])
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        match = re.search(
            r"https://app\.example\.test/invitations/accept\?token=([\w.-]+)", body.get_content()
        )
        assert match, raw
        accepted = await client.post(
            "/api/v1/invitations/accept",
            json={"token": match.group(1), "name": "Bob", "password": "long enough"},
        )
        assert accepted.status_code == 200, accepted.text
        bob = {"Authorization": f"Bearer {accepted.json()['data']['token']}"}
        me = await client.get("/api/v1/user", headers=bob)
        assert me.json()["data"]["email"] == "bob@x.io"
        feed = await client.get("/api/v1/notifications", headers=headers)
        assert feed.status_code == 200, feed.text
        assert "invitation_accepted" in feed.text
