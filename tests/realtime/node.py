"""Drive the real npm Pusher clients (pusher-js, laravel-echo) and the Node server SDK from pytest.

``NodeClient`` runs ``js/client.mjs`` — a browser front end in a Node process — and collects the
JSON line it prints for everything it observes; ``run_sdk`` runs ``js/sdk.mjs`` once (the npm
``pusher`` server SDK) and returns its answer. Both install the pinned packages on first use with
``npm ci``; a machine that cannot install them fails the test with npm's output, never skips it.
"""

# ruff: noqa: ASYNC109 - wait_for(..., timeout=) reads better in tests than asyncio.timeout blocks

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

JS_DIR = Path(__file__).resolve().parent / "js"
CLIENT_SCRIPT = JS_DIR / "client.mjs"
SDK_SCRIPT = JS_DIR / "sdk.mjs"
MIN_NODE_MAJOR = 20
NPM_TIMEOUT = 300.0

Message = dict[str, Any]
Predicate = Callable[[Message], bool] | Mapping[str, Any]

_install_lock = threading.Lock()
_installed = False


def _node_env() -> dict[str, str]:
    """The test process's environment without NODE_OPTIONS (an IDE's --inspect, say)."""
    return {key: value for key, value in os.environ.items() if key != "NODE_OPTIONS"}


def _node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise AssertionError(
            f"node is not on PATH: the realtime tests need Node {MIN_NODE_MAJOR}+ "
            "to run pusher-js and laravel-echo"
        )
    return node


def _check_node_version(node: str) -> None:
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [node, "--version"], capture_output=True, text=True, check=False, timeout=30
    )
    version = result.stdout.strip()
    try:
        major = int(version.lstrip("v").split(".", 1)[0])
    except ValueError:
        major = 0
    if result.returncode != 0 or major < MIN_NODE_MAJOR:
        raise AssertionError(
            f"the realtime tests need Node {MIN_NODE_MAJOR}+, {node} reports {version!r} "
            f"(exit {result.returncode}): {result.stderr.strip()}"
        )


def _modules_current() -> bool:
    """npm writes node_modules/.package-lock.json on every install: newer than the lock = done."""
    marker = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    return marker.is_file() and marker.stat().st_mtime >= lock.stat().st_mtime


def ensure_node_modules() -> None:
    """Install tests/realtime/js/node_modules with ``npm ci`` unless it is already current.

    Runs npm at most once per test session (and one npm at a time across concurrent sessions,
    through a lock file); raises ``AssertionError`` with npm's output when it cannot install.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        node = _node_executable()
        _check_node_version(node)
        digest = hashlib.sha256(str(JS_DIR).encode()).hexdigest()[:16]
        lock_path = Path(tempfile.gettempdir()) / f"notiflow-npm-{digest}.lock"
        with lock_path.open("w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                if not _modules_current():
                    _npm_ci()
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
        _installed = True


def _npm_ci() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise AssertionError("npm is not on PATH: cannot install pusher-js and laravel-echo")
    command = [npm, "ci", "--no-audit", "--no-fund"]
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            command,
            cwd=JS_DIR,
            env=_node_env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=NPM_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"`{' '.join(command)}` in {JS_DIR} did not finish in {NPM_TIMEOUT:.0f} s\n"
            f"--- stdout\n{_text(exc.stdout)}\n--- stderr\n{_text(exc.stderr)}"
        ) from exc
    if result.returncode != 0 or not _modules_current():
        raise AssertionError(
            f"`{' '.join(command)}` in {JS_DIR} failed (exit {result.returncode}); the realtime "
            f"tests need the npm registry once to install pusher-js and laravel-echo\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def matches(message: Message, pattern: Mapping[str, Any]) -> bool:
    """True when every key of ``pattern`` is in ``message`` with an equal value; nested mappings
    match as subsets too (``{"error": {"status": 403}}`` ignores the error's other fields)."""
    for key, expected in pattern.items():
        if key not in message:
            return False
        actual = message[key]
        if isinstance(expected, Mapping) and isinstance(actual, Mapping):
            if not matches(dict(actual), expected):
                return False
        elif actual != expected:
            return False
    return True


def _as_predicate(predicate: Predicate) -> Callable[[Message], bool]:
    if isinstance(predicate, Mapping):
        pattern = dict(predicate)
        return lambda message: matches(message, pattern)
    return predicate


def _describe(predicate: Predicate) -> str:
    if isinstance(predicate, Mapping):
        return json.dumps(dict(predicate), default=str)
    return getattr(predicate, "__name__", repr(predicate))


class NodeClient:
    """One browser-like Pusher / Echo client in its own Node process.

    ``config`` is client.mjs's JSON config (``wsHost``, ``wsPort``, ``key``, ``authEndpoint``,
    ``token``, ``mode``, ``subscribe``, ...). Every line the client prints is parsed into
    ``messages``; ``wait_for`` hands out matching messages in arrival order, each at most once.
    """

    def __init__(self, config: Mapping[str, Any], *, name: str = "client") -> None:
        self.config = dict(config)
        self.name = name
        self.messages: list[Message] = []
        self.stderr_lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._consumed: set[int] = set()
        self._changed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self._stdout_done = False

    # -------------------------------------------------------------- life cycle

    async def start(self) -> Self:
        if self.process is not None:
            raise RuntimeError(f"{self.name} already started")
        await asyncio.to_thread(ensure_node_modules)
        self.process = await asyncio.create_subprocess_exec(
            _node_executable(),
            str(CLIENT_SCRIPT),
            json.dumps(self.config),
            cwd=JS_DIR,
            env=_node_env(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_stdout(self.process.stdout)),
            asyncio.create_task(self._read_stderr(self.process.stderr)),
        ]
        return self

    async def close(self, timeout: float = 3.0) -> int | None:
        """Ask the client to quit, then terminate and kill it if it does not; always reaps it.

        Returns the exit code (None if it was never started)."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self.send({"cmd": "quit"})
            if process.stdin is not None:
                process.stdin.close()
                with contextlib.suppress(ConnectionError):
                    await process.stdin.wait_closed()
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), timeout)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        elif process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        # The readers end at EOF; a grandchild holding the pipes open must not hang the test.
        _done, pending = await asyncio.wait(self._readers, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return process.returncode

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -------------------------------------------------------------- talking to it

    async def send(self, command: Mapping[str, Any]) -> None:
        """Write one command line (``{"cmd": "whisper", ...}``) to the client's stdin."""
        process = self.process
        if process is None or process.stdin is None:
            raise RuntimeError(f"{self.name} is not started")
        if process.returncode is not None or process.stdin.is_closing():
            raise AssertionError(
                f"{self.name} cannot take {dict(command)}: it exited with "
                f"{process.returncode}\n{self.transcript()}"
            )
        process.stdin.write(json.dumps(dict(command)).encode() + b"\n")
        try:
            await process.stdin.drain()
        except ConnectionError as exc:
            raise AssertionError(
                f"{self.name} cannot take {dict(command)}: {exc}\n{self.transcript()}"
            ) from exc

    async def wait_for(self, predicate: Predicate, timeout: float = 5.0) -> Message:
        """The first message not handed out before that matches ``predicate`` (a function, or a
        mapping matched with :func:`matches`), waiting up to ``timeout`` seconds for it.

        Raises ``AssertionError`` listing every message and the client's stderr otherwise."""
        check = _as_predicate(predicate)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, message in enumerate(self.messages):
                if index not in self._consumed and check(message):
                    self._consumed.add(index)
                    return message
            remaining = deadline - loop.time()
            if self._stdout_done:
                reason = f"the client exited ({self._exit_description()})"
                break
            if remaining <= 0:
                reason = f"nothing matched within {timeout} s"
                break
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        raise AssertionError(
            f"{self.name}: no message matching {_describe(predicate)}: {reason}\n"
            f"{self.transcript()}"
        )

    async def assert_silent(self, predicate: Predicate, within: float = 0.5) -> None:
        """Wait ``within`` seconds, then fail if a message matching ``predicate`` is there that
        ``wait_for`` has not handed out (so earlier, already checked messages do not count)."""
        check = _as_predicate(predicate)
        await asyncio.sleep(within)
        found = [
            message
            for index, message in enumerate(self.messages)
            if index not in self._consumed and check(message)
        ]
        if found:
            raise AssertionError(
                f"{self.name}: expected no message matching {_describe(predicate)}, got "
                f"{json.dumps(found, default=str)}\n{self.transcript()}"
            )

    async def connected(self, timeout: float = 5.0) -> str:
        """Wait for the ``connected`` state and return the socket id."""
        message = await self.wait_for({"type": "state", "current": "connected"}, timeout)
        return str(message["socket_id"])

    def received(self, predicate: Predicate | None = None) -> list[Message]:
        """Every message so far (matching ``predicate`` if given), handed out or not."""
        if predicate is None:
            return list(self.messages)
        check = _as_predicate(predicate)
        return [message for message in self.messages if check(message)]

    def events(self, channel: str | None = None) -> list[Message]:
        """The ``event`` messages so far, optionally of one channel."""
        pattern: dict[str, Any] = {"type": "event"}
        if channel is not None:
            pattern["channel"] = channel
        return self.received(pattern)

    @property
    def socket_id(self) -> str | None:
        for message in reversed(self.messages):
            if message.get("type") == "state" and message.get("current") == "connected":
                return str(message["socket_id"])
        return None

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def transcript(self) -> str:
        lines = [f"--- {self.name} stdout ({len(self.messages)} messages)"]
        lines += [json.dumps(message, default=str) for message in self.messages]
        lines.append(f"--- {self.name} stderr ({self._exit_description()})")
        lines.append(self.stderr[-20_000:])
        return "\n".join(lines)

    # -------------------------------------------------------------- internals

    def _exit_description(self) -> str:
        if self.process is None:
            return "not started"
        if self.process.returncode is None:
            return "still running"
        return f"exit code {self.process.returncode}"

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        try:
            while line := await stream.readline():
                text = line.decode(errors="replace").rstrip("\r\n")
                if not text:
                    continue
                try:
                    message = json.loads(text)
                except ValueError:
                    message = {"type": "stdout", "line": text}
                if not isinstance(message, dict):
                    message = {"type": "stdout", "line": text}
                self.messages.append(message)
                self._changed.set()
        finally:
            if self.process is not None:
                # EOF: wait for the exit code so failure messages can show it.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 1.0)
            self._stdout_done = True
            self._changed.set()

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr_lines.append(line.decode(errors="replace").rstrip("\r\n"))


async def run_sdk(
    config: Mapping[str, Any],
    action: Mapping[str, Any],
    timeout: float = 15.0,
) -> dict[str, Any]:
    """Run one ``sdk.mjs`` action (the npm ``pusher`` server SDK) and return its JSON answer,
    e.g. ``{"ok": True, "status": 200, "body": {}, "url": ...}``."""
    await asyncio.to_thread(ensure_node_modules)
    process = await asyncio.create_subprocess_exec(
        _node_executable(),
        str(SDK_SCRIPT),
        json.dumps(dict(config)),
        json.dumps(dict(action)),
        cwd=JS_DIR,
        env=_node_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        stdout, stderr = await process.communicate()
        raise AssertionError(
            f"sdk.mjs {dict(action)} did not finish in {timeout} s\n"
            f"--- stdout\n{_text(stdout)}\n--- stderr\n{_text(stderr)}"
        ) from None
    lines = [line for line in _text(stdout).splitlines() if line.strip()]
    answer: Any = None
    if lines:
        with contextlib.suppress(ValueError):
            answer = json.loads(lines[-1])
    if process.returncode != 0 or not isinstance(answer, dict):
        raise AssertionError(
            f"sdk.mjs {dict(action)} failed (exit {process.returncode})\n"
            f"--- stdout\n{_text(stdout)}\n--- stderr\n{_text(stderr)}"
        )
    return answer


__all__ = [
    "CLIENT_SCRIPT",
    "JS_DIR",
    "SDK_SCRIPT",
    "NodeClient",
    "ensure_node_modules",
    "matches",
    "run_sdk",
]
