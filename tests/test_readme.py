"""README.md, run as a new user would: the walk-through with curl against ``notiflow serve``,
the PostgreSQL and Redis section, and the scale-out deployment (``notiflow api``, ``realtime``,
``worker`` and ``scheduler``).

The shell blocks are taken from README.md itself and run with bash; what their comments promise
is checked against what the commands print (see :mod:`tests.readme`). The only edits, each of
which must apply (:func:`replace_each`): the README's ports 8000 and 6001 become free ports
(also given as ``NOTIFLOW_API_PORT`` / ``NOTIFLOW_WS_PORT``, the defaults the README relies
on), its database ``notiflow`` becomes a temporary one, its Redis database 0 the tests' own, and
``make serve`` is ``notiflow serve`` started by the test (what the Makefile runs once ``.venv``
exists). Each runs in a temporary folder holding ``.venv/bin/notiflow`` (a link to the one under
test), so ``./var`` is the test's own. A bash wrapper adds ``--fail-with-body`` to ``curl``: a
request the README makes that fails fails the test.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from notiflow.notifications.types import NotificationType
from tests.conftest import POSTGRES_URL, REDIS_URL, drop_postgres_database
from tests.delivery.processes import (
    NOTIFLOW,
    NotiflowProcess,
    eventually,
    everything_runs,
    free_port,
    notiflow_env,
)
from tests.readme import (
    BASH,
    Step,
    code_spans,
    found_in,
    ledger_promise,
    matches,
    outputs,
    paragraph,
    promise,
    replace_each,
    script,
    section,
    shell_blocks,
    steps,
)
from tests.realtime.node import NodeClient

pytestmark = pytest.mark.slow

# Every curl of the README fails the script on an HTTP error and ends its output with a line
# break (so each answer is a line of its own in the transcript).
CURL_WRAPPER = (
    'curl() { command curl --fail-with-body "$@"; local status=$?; echo; return $status; }'
)


@dataclass
class Folder:
    """A user's checkout: ``.venv/bin/notiflow`` and the README's default ports, all free."""

    path: Path
    api_port: int
    ws_port: int

    def edit(self, block: str, **edits: str) -> str:
        return replace_each(block, {"127.0.0.1:8000": f"127.0.0.1:{self.api_port}", **edits})

    def env(self, **settings: str) -> dict[str, str]:
        return notiflow_env(
            api_port=str(self.api_port), ws_port=str(self.ws_port), log_json="true", **settings
        )


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "notiflow").symlink_to(NOTIFLOW)
    return Folder(tmp_path, free_port(), free_port())


async def run_steps(
    all_steps: list[Step], folder: Folder, env: dict[str, str], *, epilogue: str = ""
) -> dict[int, str]:
    """Run the steps in one bash, in the folder: what each printed. Fails with the transcript
    if bash does."""
    text = script(all_steps, prelude=CURL_WRAPPER) + epilogue
    finished = await asyncio.to_thread(
        subprocess.run,  # the README's own commands
        [BASH, "-c", text],
        cwd=folder.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert finished.returncode == 0, (
        f"the README's commands failed (exit {finished.returncode})\n--- script\n{text}\n"
        f"--- stdout\n{finished.stdout}\n--- stderr\n{finished.stderr}"
    )
    return outputs(finished.stdout)


def check_promises(all_steps: list[Step], printed: dict[int, str]) -> int:
    """Check every promise of the steps against what they printed; the number checked."""
    checked = 0
    for index, step in enumerate(all_steps):
        output = printed[index].strip()
        expectations = [(text, promise(text)) for text in step.promises]
        for note in step.notes:
            entries = ledger_promise(note)
            expectations += [(note, entry) for entry in entries or []]
        for text, pattern in expectations:
            answer = json.loads(output)
            assert found_in(answer, pattern), (
                f"README.md promises {text}\nfrom: {step.command}\nbut it printed: {output}"
            )
            checked += 1
    return checked


# ------------------------------------------------------------------------- the walk-through


async def test_the_walk_through_with_curl(folder: Folder, processes: list[NotiflowProcess]) -> None:
    """``make serve`` in one terminal, then every block of "A walk-through with curl" in
    another: on SQLite in ./var, in development, as a new user runs it."""
    env = folder.env()
    serve = NotiflowProcess(
        ["serve"], env, f"http://127.0.0.1:{folder.api_port}/health", cwd=folder.path
    )
    processes.append(serve)
    await serve.start()
    # The scheduler is elected moments after the port answers (a person opens a second
    # terminal meanwhile): the walk-through's first answer is then "ok".
    await eventually(lambda: everything_runs(folder.api_port), timeout=60)

    blocks = shell_blocks(folder.edit(section("### A walk-through with curl")))
    assert len(blocks) >= 6, blocks
    all_steps = [step for block in blocks for step in steps(block)]
    printed = await run_steps(all_steps, folder, env)

    checked = check_promises(all_steps, printed)
    # The health answer, the new owner, the send, the unread count twice, both ledgers (two
    # channels in the second) and the tenant's ledger search.
    assert checked >= 9, checked
    # "every type, with the user's choice or the default"
    [listing] = [
        json.loads(printed[index])
        for index, step in enumerate(all_steps)
        if "every type, with the user's choice" in step.command
    ]
    preferences = {row["notification_type"]: row for row in listing["data"]}
    assert set(preferences) == {kind.value for kind in NotificationType}
    assert matches(
        preferences["post_failed"],
        {"in_app_enabled": True, "email_enabled": True, "push_enabled": False},
    ), preferences["post_failed"]
    assert (folder.path / "var" / "notiflow.db").exists()


# ------------------------------------------------------------------------- PostgreSQL and Redis


@dataclass
class Deployment:
    """The README's PostgreSQL and Redis block, split at ``make serve``."""

    before: list[Step]
    serve: Step
    after: list[Step]
    database: str


def postgres_and_redis(folder: Folder, redis_url: str) -> Deployment:
    """The block with a temporary database of this test (on the tests' PostgreSQL server) and
    the tests' Redis database instead of the README's."""
    [block] = shell_blocks(section("### PostgreSQL and Redis"))
    database = f"notiflow_readme_{uuid.uuid4().hex[:12]}"
    server = urlsplit(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://"))
    host, port, user = server.hostname or "127.0.0.1", server.port or 5432, server.username
    block = folder.edit(
        block,
        **{
            "psql -h 127.0.0.1 -U postgres": f"psql -h {host} -p {port} -U {user}",
            "CREATE DATABASE notiflow'": f"CREATE DATABASE {database}'",
            "postgres@127.0.0.1:5432/notiflow\n": f"{user}@{host}:{port}/{database}\n",
            "NOTIFLOW_REDIS_URL=redis://127.0.0.1:6379/0": f"NOTIFLOW_REDIS_URL={redis_url}",
        },
    )
    all_steps = steps(block)
    [serve_index] = [
        index for index, step in enumerate(all_steps) if step.command.startswith("make serve")
    ]
    serve = all_steps[serve_index]
    assert serve.command.split("#")[0].strip() == "make serve", serve.command
    return Deployment(all_steps[:serve_index], serve, all_steps[serve_index + 1 :], database)


@pytest.fixture
async def own_redis_db() -> AsyncIterator[str]:
    """The tests' Redis database, emptied before and after (never another one)."""
    client = Redis.from_url(REDIS_URL)
    await client.ping()
    await client.flushdb()
    try:
        yield REDIS_URL
    finally:
        await client.flushdb()
        await client.aclose()


@pytest.fixture
async def databases() -> AsyncIterator[list[str]]:
    """Names of the temporary PostgreSQL databases a test created: dropped at the end (ask
    for it before ``processes``, so they are stopped first)."""
    created: list[str] = []
    yield created
    base = POSTGRES_URL.rpartition("/")[0]
    for name in created:
        await drop_postgres_database(f"{base}/{name}")


async def exported(deployment: Deployment, folder: Folder, databases: list[str]) -> dict[str, str]:
    """Run the block up to ``make serve``; the environment it leaves (its exports)."""
    databases.append(deployment.database)
    env_file = folder.path / "exported.env"
    await run_steps(
        deployment.before,
        folder,
        folder.env(),
        epilogue=f"env -0 > {shlex.quote(str(env_file))}\n",
    )
    pairs = [item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item]
    return dict(pairs)


async def database_exists(name: str) -> bool:
    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://").rpartition("/")[0]
    connection = await asyncpg.connect(f"{dsn}/postgres")
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


async def test_postgresql_and_redis(
    folder: Folder,
    databases: list[str],
    own_redis_db: str,
    processes: list[NotiflowProcess],
) -> None:
    deployment = postgres_and_redis(folder, own_redis_db)
    env = await exported(deployment, folder, databases)
    assert await database_exists(deployment.database)
    assert env["NOTIFLOW_REDIS_URL"] == own_redis_db

    # "or apply them alone": the command of the comment works too.
    note = deployment.serve.command.partition("#")[2]
    upgrade = note.rpartition("apply them alone: ")[2].strip()
    assert upgrade == ".venv/bin/notiflow db upgrade", note
    applied = await asyncio.to_thread(
        subprocess.run,  # the README's command
        shlex.split(upgrade),
        cwd=folder.path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert applied.returncode == 0, applied.stderr

    serve = NotiflowProcess(
        ["serve"], env, f"http://127.0.0.1:{folder.api_port}/health", cwd=folder.path
    )
    processes.append(serve)
    await serve.start()

    # Its worker beats and its scheduler is elected within moments of the start.
    await eventually(lambda: everything_runs(folder.api_port), timeout=60)
    printed = await run_steps(deployment.after, folder, env)
    assert check_promises(deployment.after, printed) == 1


# ------------------------------------------------------------------------- scale-out


def scale_out_commands(folder: Folder) -> list[list[str]]:
    """The processes the README names for a scale-out deployment, as notiflow arguments:
    ``api`` and ``realtime`` (the Scale-out paragraph), ``worker`` and ``scheduler`` (the
    paragraph of "Email, Web Push and SMS" on scaling out)."""
    scale_out = code_spans(paragraph("**Scale-out.**"))
    assert "NOTIFLOW_REDIS_URL" in scale_out, scale_out
    ports = {"api": f"--port {folder.api_port}", "realtime": f"--port {folder.ws_port}"}
    readme_ports = {"api": "--port 8000", "realtime": "--port 6001"}
    servers = [
        replace_each(span, {readme_ports[name]: ports[name]})
        for name in ("api", "realtime")
        for span in scale_out
        if span.startswith(f".venv/bin/notiflow {name} ")
    ]
    jobs = code_spans(
        paragraph(
            "`notiflow serve` runs everything in every configuration",
            section("## Email, Web Push and SMS"),
        )
    )
    helpers = [span for span in ("notiflow worker", "notiflow scheduler") if span in jobs]
    assert helpers == ["notiflow worker", "notiflow scheduler"], jobs
    commands = [shlex.split(span)[1:] for span in servers] + [span.split()[1:] for span in helpers]
    assert [command[0] for command in commands] == ["api", "realtime", "worker", "scheduler"]
    return commands


async def test_scale_out_over_postgresql_and_redis(
    folder: Folder,
    databases: list[str],
    own_redis_db: str,
    processes: list[NotiflowProcess],
) -> None:
    """The PostgreSQL and Redis block, then the scale-out processes instead of ``serve``: a
    notification sent through ``notiflow api`` reaches a pusher-js / Echo tab connected to
    ``notiflow realtime``, and its email is sent by ``notiflow worker`` (the development mail
    folder, ./var/mail), while ``notiflow scheduler`` is the elected scheduler."""
    deployment = postgres_and_redis(folder, own_redis_db)
    env = await exported(deployment, folder, databases)
    api_url = f"http://127.0.0.1:{folder.api_port}"
    started: dict[str, NotiflowProcess] = {}
    for command in scale_out_commands(folder):
        process = NotiflowProcess(
            command, env, f"{api_url}/health" if command[0] == "api" else None, cwd=folder.path
        )
        processes.append(process)
        started[command[0]] = await process.start()

    answer = await eventually(lambda: everything_runs(folder.api_port), timeout=60)
    assert answer["worker"] == "ok"
    assert answer["scheduler"] == "ok"
    assert answer["redis"] == "ok"

    created = started["api"].run(
        "users", "create", "--tenant", "Acme Social", "--email", "owner@example.com",
        "--name", "Olivia Owner", "--role", "owner", "--with-token",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    owner = json.loads(created.stdout)
    headers = {"Authorization": f"Bearer {owner['token']}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as client:
        config = (await client.get("/api/v1/realtime/config")).json()["data"]
        echo = config["echo"]
        assert echo["wsPort"] == folder.ws_port
        assert echo["authEndpoint"] == f"{api_url}/broadcasting/auth"
        tab = NodeClient(
            {
                "mode": "echo",
                "key": echo["key"],
                "wsHost": echo["wsHost"],
                "wsPort": echo["wsPort"],
                "authEndpoint": echo["authEndpoint"],
                "token": owner["token"],
                "options": {"forceTLS": False, "enabledTransports": echo["enabledTransports"]},
                "subscribe": [
                    {
                        "kind": "private",
                        "name": config["channel"].removeprefix("private-"),
                        "listen": [".NotificationCreated"],
                    }
                ],
            },
            name="tab",
        )
        async with tab:
            await tab.connected(timeout=30)
            await tab.wait_for({"type": "subscribed", "channel": config["channel"]}, timeout=30)
            sent = await client.post(
                "/api/v1/notifications/send",
                json={
                    "user_ids": [owner["user_id"]],
                    "type": "payment_failed",
                    "title": "Payment failed",
                    "message": "Update your card.",
                },
            )
            assert sent.status_code == 202, sent.text
            event = await tab.wait_for({"type": "event", "event": "NotificationCreated"}, 30)
            assert "Payment failed" in json.dumps(event)

        async def emailed() -> list[Path]:
            return sorted((folder.path / "var" / "mail").glob("*.eml"))

        [email] = await eventually(emailed, timeout=60)
        assert "Payment failed" in email.read_text(errors="replace")
        notification_id = sent.json()["data"]["notifications"][0]["id"]

        async def ledger_says_sent() -> bool:
            ledger = await client.get(f"/api/v1/notifications/{notification_id}/deliveries")
            return found_in(ledger.json(), {"channel": "email", "status": "sent"})

        # The file is written before the worker records the send: wait for the record.
        await eventually(ledger_says_sent, timeout=60)

    # The worker sent it (its log line comes once the job is done); the API runs no jobs.
    def sent_by(process: NotiflowProcess) -> bool:
        return any(
            '"job": "delivery.send"' in line and '"outcome": "ok"' in line
            for line in process.logs(limit=1_000_000).splitlines()
        )

    async def worker_logged_the_job() -> bool:
        return sent_by(started["worker"])

    await eventually(worker_logged_the_job, timeout=60)
    assert not sent_by(started["api"])
    assert '"event": "scheduler_elected"' in started["scheduler"].logs(limit=1_000_000)
