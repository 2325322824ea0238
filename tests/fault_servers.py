"""Servers a fault test owns: a redis-server and a PostgreSQL cluster on free ports.

A test stops and starts only these, never the shared services of the machine::

    with OwnRedis() as redis:            # redis-server --port <free> (nothing kept on disk)
        ...  redis.url  ...
        redis.stop()                     # SIGKILL: an outage, not a goodbye
        redis.start()                    # back, on the same port, empty

    with OwnPostgres() as postgres:      # pg_createcluster on a free port, trust auth
        ...  postgres.url  ...           # postgresql+asyncpg://postgres@127.0.0.1:<port>/notiflow
        postgres.stop()                  # pg_ctlcluster ... stop -m immediate
        postgres.start()

Both wait until the server answers before returning from ``start``; both clean up on exit.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.delivery.processes import free_port


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class OwnRedis:
    """A ``redis-server`` of the test's own on a free port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="notiflow-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> OwnRedis:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise AssertionError("redis-server is not installed: fault tests need it")
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                redis_server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--maxclients",
                "20000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)
        return self

    def stop(self) -> None:
        """SIGKILL the server: clients see their connections drop, nothing is saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: fault tests need Debian's PostgreSQL")
    return path


def _postgres_version() -> str:
    versions = sorted(Path("/etc/postgresql").iterdir(), key=lambda path: int(path.name))
    if not versions:
        raise AssertionError("no PostgreSQL installation under /etc/postgresql")
    return versions[-1].name


def _drop_abandoned_clusters(version: str) -> None:
    """Drop the clusters of earlier test processes that died without cleaning up (killed runs):
    their names carry the pid of the process that made them."""
    root = Path("/etc/postgresql") / version
    for directory in root.glob("nf*p*"):
        pid, _, port = directory.name[2:].partition("p")
        if pid.isdigit() and port.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(  # noqa: S603 - fixed argv
                [_tool("pg_dropcluster"), "--stop", version, directory.name],
                check=False,
                capture_output=True,
            )


class OwnPostgres:
    """A PostgreSQL cluster of the test's own (``pg_createcluster``) on a free port, with a
    ``notiflow`` database, trust authentication on 127.0.0.1, dropped on exit."""

    def __init__(self, database: str = "notiflow") -> None:
        self.version = _postgres_version()
        self.port = free_port()
        self.name = f"nf{os.getpid()}p{self.port}"
        self.database = database
        self._created = False

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{self.database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(  # noqa: S603 - fixed argv
            [_tool("pg_ctlcluster"), "--skip-systemctl-redirect", self.version, self.name, *args],
            check=True,
            capture_output=True,
        )

    def create(self) -> None:
        _drop_abandoned_clusters(self.version)
        subprocess.run(  # noqa: S603 - fixed argv
            [
                _tool("pg_createcluster"),
                self.version,
                self.name,
                "-p",
                str(self.port),
                "--",
                "--auth-local=trust",
                "--auth-host=trust",
            ],
            check=True,
            capture_output=True,
        )
        self._created = True
        self.start()
        subprocess.run(  # noqa: S603 - fixed argv
            [
                _tool("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-c",
                f'CREATE DATABASE "{self.database}"',
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        self._ctl("start")
        _wait_for_port(self.port)

    def stop(self) -> None:
        """Stop at once (``-m immediate``): open connections break, as in a crash."""
        self._ctl("stop", "-m", "immediate")

    def drop(self) -> None:
        if self._created:
            subprocess.run(  # noqa: S603 - fixed argv
                [_tool("pg_dropcluster"), "--stop", self.version, self.name],
                check=False,
                capture_output=True,
            )
            self._created = False

    def __enter__(self) -> Self:
        try:
            self.create()
        except BaseException:
            self.drop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.drop()
