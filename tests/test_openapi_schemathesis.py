"""The API does what its OpenAPI document says: schemathesis, every check, against a real
``notiflow serve``, and not one finding.

schemathesis reads ``/openapi.json`` and sends what it allows (each answer must be a documented
status in the documented shape, and be accepted), what it forbids (each must be refused with a
4xx), requests without the bearer token, with methods a path does not have, and sequences that
create, read and delete. It runs with ``tests/schemathesis.toml``; docs/architecture.md shows
the same run by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.delivery.processes import NOTIFLOW, free_port, notiflow_env

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = str(Path(sys.executable).with_name("st"))
EMAIL = "owner@example.com"
PASSWORD = "schemathesis-password-1"
# Examples per operation and phase: the whole run stays within a few minutes on two busy cores.
MAX_EXAMPLES = 10
# A fixed seed: a failure seen in CI comes back the same on a developer's machine.
SEED = 20261206
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _offline(env: dict[str, str], dead_port: int) -> dict[str, str]:
    """``env`` with every outgoing HTTP request of the process sent to a port nobody listens on:
    the push endpoints and Mastodon instances schemathesis makes up are never contacted."""
    env = {key: value for key, value in env.items() if key.lower() not in PROXY_VARIABLES}
    proxy = f"http://127.0.0.1:{dead_port}"
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        env[name] = env[name.upper()] = proxy
    return env


def _seed(base_url: str) -> dict[str, str]:
    """What the run can use beyond what it creates itself: a workspace with a sandbox account,
    a draft post of that account, a notification in the feed. Returns their ids by the path
    parameter names of the API."""
    with httpx.Client(base_url=f"{base_url}/api/v1", timeout=30, trust_env=False) as client:
        login = client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})
        assert login.status_code == 200, login.text
        client.headers["Authorization"] = f"Bearer {login.json()['data']['token']}"

        def created(response: httpx.Response) -> str:
            assert response.status_code in (200, 201, 202), response.text
            identifier: str = response.json()["data"]["id"]
            return identifier

        workspace_id = created(client.post("/workspaces", json={"name": "Brand"}))
        workspace = f"/workspaces/{workspace_id}"
        account_id = created(
            client.post(
                f"{workspace}/social-accounts",
                json={"provider": "sandbox", "access_token": "schemathesis"},
            )
        )
        post_id = created(
            client.post(
                f"{workspace}/posts", json={"content": "Hello", "account_ids": [account_id]}
            )
        )
        sent = client.post(
            "/notifications/send",
            json={
                "audience": "tenant",
                "type": "system_announcement",
                "title": "Hi",
                "message": "!",
            },
        )
        assert sent.status_code == 202, sent.text
    return {"workspace_id": workspace_id, "account_id": account_id, "post_id": post_id}


def _config_with(parameters: dict[str, str], folder: Path) -> Path:
    """tests/schemathesis.toml with ``parameters`` as the value of each path parameter."""
    lines = [CONFIG.read_text(), "", "[parameters]"]
    lines += [f'"path.{name}" = "{value}"' for name, value in parameters.items()]
    config = folder / "schemathesis.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _wait_until_healthy(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    with httpx.Client(base_url=base_url, timeout=5, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"notiflow serve exited early:\n{log.read_text()[-4000:]}")
            try:
                if client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    pytest.fail(f"notiflow serve did not become healthy:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_api_does_what_its_openapi_document_says(tmp_path: Path) -> None:
    port, ws_port = free_port(), free_port()
    env = notiflow_env(
        env="development",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'notiflow.db'}",
        # schemathesis tries wrong passwords by the hundred from one address; its own sign-in
        # (again after it revokes its token) must not be locked out by them.
        login_max_failures_per_address="1000000",
        login_max_failures_per_account="1000000",
    )
    created = subprocess.run(  # noqa: S603 - our own console script
        [
            *(NOTIFLOW, "users", "create", "--tenant", "Schemathesis", "--email", EMAIL),
            *("--name", "Owner", "--role", "owner", "--password", PASSWORD),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["email"] == EMAIL

    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        served = subprocess.Popen(  # noqa: S603 - our own console script
            [NOTIFLOW, "serve", "--port", str(port), "--ws-port", str(ws_port)],
            env=_offline(env, free_port()),
            cwd=tmp_path,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(base_url, served, log)
        config = _config_with(_seed(base_url), tmp_path)
        checker_env = {
            key: value for key, value in os.environ.items() if key.lower() not in PROXY_VARIABLES
        }
        checker_env |= {"NOTIFLOW_ST_EMAIL": EMAIL, "NOTIFLOW_ST_PASSWORD": PASSWORD}
        result = subprocess.run(  # noqa: S603 - schemathesis of this virtualenv
            [
                SCHEMATHESIS,
                "--config-file",
                str(config),
                "--no-color",
                "run",
                f"{base_url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                # One worker: two threads of st can hit a CPython 3.11 race in its ast module
                # ("AST constructor recursion depth mismatch"), reported as a run error.
                "--workers",
                "1",
                "--request-timeout",
                "60",
            ],
            env=checker_env,
            cwd=tmp_path,  # its caches and reports stay out of the repository
            capture_output=True,
            text=True,
            timeout=840,
            check=False,
        )
    finally:
        served.terminate()
        try:
            served.wait(timeout=20)
        except subprocess.TimeoutExpired:
            served.kill()
            served.wait()
    report = result.stdout + result.stderr
    server_errors = [line for line in log.read_text().splitlines() if '"level": "error"' in line]
    assert result.returncode == 0, (
        f"schemathesis found problems (exit {result.returncode}):\n{report}\n"
        f"--- errors logged by notiflow serve ---\n" + "\n".join(server_errors[-20:])
    )
