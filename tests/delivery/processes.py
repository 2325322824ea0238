"""Real notiflow processes for end-to-end tests: start, wait until ready, kill, restart."""

# ruff: noqa: ASYNC109, ASYNC220 - small polling helpers; processes are started once per test

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

NOTIFLOW = str(Path(sys.executable).with_name("notiflow"))


def _ephemeral_ports() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


_EPHEMERAL = _ephemeral_ports()


def free_port() -> int:
    """A free port for a server of the tests, outside the range the kernel hands out to
    outgoing connections: a server restarted on the same port (crash tests) must not find it
    taken by some client's connection in the meantime."""
    candidates = [port for port in range(20_000, 32_000) if port not in _EPHEMERAL]
    for _ in range(200):
        port = random.choice(candidates)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def notiflow_env(**settings: str) -> dict[str, str]:
    """This environment without NOTIFLOW_* variables, plus ``settings`` (as NOTIFLOW_<NAME>)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFLOW_")}
    env.update({f"NOTIFLOW_{name.upper()}": value for name, value in settings.items()})
    return env


def scale_out_env(
    folder: Path, redis_url: str, api_port: int, app: tuple[str, str, str], **settings: str
) -> dict[str, str]:
    """The environment of a scale-out test deployment: a SQLite database in ``folder``, Redis at
    ``redis_url``, the Pusher app ``(id, key, secret)`` and the API's public URL."""
    app_id, key, secret = app
    return notiflow_env(
        **{
            "env": "test",
            "secret_key": "scale-out-test-secret-key-0123456789abcdef",
            "database_url": f"sqlite+aiosqlite:///{folder / 'notiflow.db'}",
            "redis_url": redis_url,
            "pusher_app_id": app_id,
            "pusher_app_key": key,
            "pusher_app_secret": secret,
            "public_url": f"http://127.0.0.1:{api_port}",
            "log_level": "INFO",
            **settings,
        }
    )


async def health(api_port: int) -> dict[str, Any]:
    """The JSON answer of ``GET /health`` of the API on ``api_port``."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer: dict[str, Any] = (await client.get(f"http://127.0.0.1:{api_port}/health")).json()
    return answer


async def everything_runs(api_port: int) -> dict[str, Any] | None:
    """The health answer once it says ``ok`` (with Redis: a worker and a scheduler alive),
    else None: ``await eventually(lambda: everything_runs(port))``."""
    answer = await health(api_port)
    return answer if answer["status"] == "ok" else None


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(0.1)


class NotiflowProcess:
    """``notiflow <args>`` as a child process; ``ready_url`` (if any) must answer 200.

    Its log (stderr) goes to a file, never to a pipe nobody reads: a process that logs more
    than a pipe holds would block on its next log line. ``logs()`` gives the tail, for the
    message of a failed assertion."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        ready_url: str | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = args
        self.env = env
        self.ready_url = ready_url
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open across restarts
            prefix="notiflow-", suffix=".log", delete=False
        )
        self.log_file = log
        self.log_path = Path(log.name)

    def logs(self, limit: int = 4000) -> str:
        """The last ``limit`` characters this process (every start of it) wrote to stderr."""
        if self.log_file.closed:
            return f"--- notiflow {' '.join(self.args)}: log removed ---"
        self.log_file.flush()
        text = self.log_path.read_bytes().decode(errors="replace")
        return f"--- notiflow {' '.join(self.args)} ---\n{text[-limit:]}"

    async def start(self, settle: float = 0.0) -> NotiflowProcess:
        self.log_file.write(f"=== start: notiflow {' '.join(self.args)}\n".encode())
        self.log_file.flush()
        self.process = subprocess.Popen(  # noqa: S603 - our own console script
            [NOTIFLOW, *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=self.log_file,
        )
        if self.ready_url is not None:
            async with httpx.AsyncClient() as client:
                for _ in range(300):
                    self._check_alive()
                    try:
                        if (await client.get(self.ready_url)).status_code == 200:
                            return self
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
            raise AssertionError(f"notiflow {' '.join(self.args)} did not become ready")
        await asyncio.sleep(settle)
        self._check_alive()
        return self

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"notiflow {' '.join(self.args)} exited: {self.logs(3000)}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye — a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log_file.write(b"=== killed (SIGKILL)\n")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        self.log_path.unlink(missing_ok=True)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A one-off command with the same environment."""
        return subprocess.run(  # noqa: S603 - our own console script
            [NOTIFLOW, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            check=False,
        )
