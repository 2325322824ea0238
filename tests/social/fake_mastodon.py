"""A local Mastodon server that behaves like the real one where notiflow depends on it.

A real HTTP server (Starlette under uvicorn) on 127.0.0.1, speaking the endpoints notiflow uses
as Mastodon 4.x does (``mastodon/documentation`` ``content/en/methods/*.md``):

- ``GET /api/v1/accounts/verify_credentials``; 401 ``{"error": "The access token is invalid"}``
  for an unknown or revoked token, on every endpoint.
- ``POST /api/v1/statuses`` (JSON or form): 422 ``Validation failed: ...`` for an empty or too long
  (500 characters) text; ``Idempotency-Key`` replays per account for one hour (the server's
  clock, see ``/_control/clock``) and return the *original* status, like
  ``PostStatusService`` (the key is stored after the status is created).
- ``GET /api/v1/statuses/:id`` with ``replies_count``/``reblogs_count``/``favourites_count``;
  404 ``{"error": "Record not found"}``.
- ``GET /api/v1/accounts/:id/statuses`` (``limit``, ``max_id``), newest first.
- ``GET /api/v1/notifications`` with ``types[]``/``exclude_types[]``, ``max_id``/``since_id``/
  ``min_id``, ``limit`` (default 40, max 80) and a ``Link`` header (``rel="next"``/``"prev"``).

It can be programmed from the test, or from another process, through control endpoints:

==============================  =================================================================
``POST /_control/fail``         ``{"status": 429|500|401|422|..., "times": 1, "path": prefix?,
                                "method": "POST"?, "error": "text"?}``: the next matching calls
                                answer that status *without doing anything*
``POST /_control/hang``         ``{"seconds": 5, "after_commit": true, "times": 1, "path":
                                "/api/v1/statuses", "method": "POST"}``: do the work, then answer
                                late (the client times out; the status exists). With
                                ``after_commit: false`` it waits first, then does the work.
``POST /_control/mention``      ``{"text", "from": "bob@remote.example", "to": "alice"?,
                                "in_reply_to_id"?}``: a remote user mentions (or replies to) us
``POST /_control/engage``       ``{"status_id", "favourites", "reblogs", "replies"}``: add counts
``POST /_control/accounts``     ``{"token", "username"}``: another account and its token
``POST /_control/revoke``       ``{"token"}``: that token now gets 401
``POST /_control/clock``        ``{"advance_seconds": 3600}``: move the server's clock
``GET /_control/state``         ``{"statuses_created", "statuses", "notifications", "requests"}``
``POST /_control/reset``        back to the initial state
==============================  =================================================================

In a test (the ``fake_mastodon`` fixture of ``tests/social/conftest.py`` does this)::

    with running_fake_mastodon() as server:      # a background thread, a free port
        server.url, server.token                  # instance URL and alice's token
        server.fail(500, times=2)                 # or POST {server.url}/_control/fail
        server.state()["statuses_created"]

From a shell or another process (end-to-end tests that kill workers)::

    python -m tests.social.fake_mastodon --port 8765 [--token TOKEN]
    # prints "fake mastodon listening on http://127.0.0.1:8765 token=..." and serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEFAULT_TOKEN = "fake-mastodon-token-alice"
MAX_CHARACTERS = 500
IDEMPOTENCY_WINDOW = timedelta(hours=1)
INVALID_TOKEN = {"error": "The access token is invalid"}
NOT_FOUND = {"error": "Record not found"}
ERROR_TEXT = {
    401: "The access token is invalid",
    403: "This action is not allowed",
    404: "Record not found",
    422: "Validation failed: Text can't be blank",
    429: "Too many requests",
    500: "We're sorry, but something went wrong on our end.",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class FakeAccount:
    id: str
    username: str
    token: str
    revoked: bool = False
    remote_domain: str | None = None

    def acct(self) -> str:
        return (
            self.username if self.remote_domain is None else f"{self.username}@{self.remote_domain}"
        )


@dataclass
class Rule:
    """A programmed misbehaviour: what to answer, for which calls, how many more times."""

    times: int
    path: str | None
    method: str | None
    status: int = 0
    error: str | None = None
    seconds: float = 0.0
    after_commit: bool = True

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and (self.path is None or path.startswith(self.path))
            and (self.method is None or self.method.upper() == method)
        )


@dataclass
class State:
    accounts: dict[str, FakeAccount] = field(default_factory=dict)  # by token
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id
    notifications: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id
    # (account id, key) -> (status id, when stored)
    idempotency: dict[tuple[str, str], tuple[str, datetime]] = field(default_factory=dict)
    failures: list[Rule] = field(default_factory=list)
    hangs: list[Rule] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    statuses_created: int = 0
    clock_offset: float = 0.0
    next_id: int = 110_000_000_000_000_001


class FakeMastodon:
    """The server's state and behaviour; :meth:`app` is the ASGI application."""

    def __init__(self, token: str = DEFAULT_TOKEN, host: str = "127.0.0.1", port: int = 0) -> None:
        self.default_token = token
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._state = State()
        self.reset()

    # -- the Python control API (thread-safe; the HTTP control endpoints call the same) --------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token(self) -> str:
        return self.default_token

    def reset(self) -> None:
        with self._lock:
            self._state = State()
            self._add_account(self.default_token, "alice")

    def add_account(self, token: str, username: str) -> dict[str, Any]:
        with self._lock:
            return self._account_json(self._add_account(token, username))

    def revoke(self, token: str) -> None:
        with self._lock:
            if token in self._state.accounts:
                self._state.accounts[token].revoked = True

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        path: str | None = None,
        method: str | None = None,
        error: str | None = None,
    ) -> None:
        with self._lock:
            self._state.failures.append(
                Rule(times=times, path=path, method=method, status=status, error=error)
            )

    def hang(
        self,
        seconds: float,
        *,
        after_commit: bool = True,
        times: int = 1,
        path: str | None = "/api/v1/statuses",
        method: str | None = "POST",
    ) -> None:
        with self._lock:
            self._state.hangs.append(
                Rule(
                    times=times,
                    path=path,
                    method=method,
                    seconds=seconds,
                    after_commit=after_commit,
                )
            )

    def advance_clock(self, seconds: float) -> None:
        with self._lock:
            self._state.clock_offset += seconds

    def mention(
        self,
        text: str,
        *,
        sender: str = "bob@remote.example",
        to: str | None = None,
        in_reply_to_id: str | None = None,
    ) -> dict[str, Any]:
        """A remote user's status that mentions ``to`` (default: the first account), and the
        ``mention`` notification it makes."""
        with self._lock:
            target = self._account_by_username(to)
            username, _, domain = sender.lstrip("@").partition("@")
            author = self._remote_account(username, domain or "remote.example")
            parent = self._state.statuses.get(in_reply_to_id) if in_reply_to_id else None
            status = self._new_status(author, f"@{target.username} {text}", parent)
            if parent is not None:
                parent["replies_count"] += 1
            notification: dict[str, Any] = {
                "id": self._new_id(),
                "type": "mention",
                "created_at": _iso(self.now()),
                "account": self._account_json(author),
                "status": status,
                "_for": target.id,
            }
            self._state.notifications[notification["id"]] = notification
            return _public(notification)

    def engage(
        self, status_id: str, *, favourites: int = 0, reblogs: int = 0, replies: int = 0
    ) -> dict[str, Any]:
        with self._lock:
            status = self._state.statuses[status_id]
            status["favourites_count"] += favourites
            status["reblogs_count"] += reblogs
            status["replies_count"] += replies
            return dict(status)

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "statuses_created": self._state.statuses_created,
                "statuses": [
                    {
                        "id": s["id"],
                        "text": s["_text"],
                        "account": s["account"]["acct"],
                        "in_reply_to_id": s["in_reply_to_id"],
                    }
                    for s in self._state.statuses.values()
                ],
                "notifications": len(self._state.notifications),
                "requests": dict(self._state.requests),
            }

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self._state.clock_offset)

    # -- internals (callers hold the lock) ----------------------------------------------------

    def _new_id(self) -> str:
        self._state.next_id += 1
        return str(self._state.next_id)

    def _add_account(self, token: str, username: str) -> FakeAccount:
        account = FakeAccount(id=self._new_id(), username=username, token=token)
        self._state.accounts[token] = account
        return account

    def _remote_account(self, username: str, domain: str) -> FakeAccount:
        key = f"remote:{username}@{domain}"
        account = self._state.accounts.get(key)
        if account is None:
            account = FakeAccount(
                id=self._new_id(), username=username, token=key, remote_domain=domain
            )
            self._state.accounts[key] = account
        return account

    def _account_by_username(self, username: str | None) -> FakeAccount:
        for account in self._state.accounts.values():
            if account.remote_domain is None and username in (None, account.username):
                return account
        raise KeyError(username)

    def _account_json(self, account: FakeAccount) -> dict[str, Any]:
        base = self.url if account.remote_domain is None else f"https://{account.remote_domain}"
        return {
            "id": account.id,
            "username": account.username,
            "acct": account.acct(),
            "display_name": account.username.capitalize(),
            "url": f"{base}/@{account.username}",
            "created_at": "2026-01-01T00:00:00.000Z",
            "followers_count": 0,
            "following_count": 0,
            "statuses_count": 0,
        }

    def _new_status(
        self, author: FakeAccount, text: str, parent: dict[str, Any] | None
    ) -> dict[str, Any]:
        status_id = self._new_id()
        content = "<p>" + html.escape(text).replace("\n", "<br />") + "</p>"
        status: dict[str, Any] = {
            "id": status_id,
            "created_at": _iso(self.now()),
            "in_reply_to_id": parent["id"] if parent else None,
            "in_reply_to_account_id": parent["account"]["id"] if parent else None,
            "sensitive": False,
            "spoiler_text": "",
            "visibility": "public",
            "language": "en",
            "uri": f"{self.url}/users/{author.username}/statuses/{status_id}",
            "url": f"{self.url}/@{author.acct()}/{status_id}",
            "replies_count": 0,
            "reblogs_count": 0,
            "favourites_count": 0,
            "quotes_count": 0,
            "content": content,
            "account": self._account_json(author),
            "media_attachments": [],
            "mentions": [],
            "tags": [],
            "_text": text,
        }
        self._state.statuses[status_id] = status
        return status

    def _take(self, rules: list[Rule], method: str, path: str) -> Rule | None:
        for rule in rules:
            if rule.matches(method, path):
                rule.times -= 1
                return rule
        return None

    # -- HTTP ---------------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/api/v1/accounts/verify_credentials", self._verify, methods=["GET"]),
            Route("/api/v1/accounts/{id}/statuses", self._account_statuses, methods=["GET"]),
            Route("/api/v1/statuses", self._post_status, methods=["POST"]),
            Route("/api/v1/statuses/{id}", self._get_status, methods=["GET"]),
            Route("/api/v1/notifications", self._notifications, methods=["GET"]),
            Route("/_control/{action}", self._control, methods=["GET", "POST"]),
        ]
        return Starlette(routes=routes)

    async def _guard(self, request: Request) -> tuple[Response | None, Rule | None, FakeAccount]:
        """Count the call, apply a programmed failure, authenticate; also say whether to hang."""
        method, path = request.method, request.url.path
        with self._lock:
            name = f"{method} {path}"
            self._state.requests[name] = self._state.requests.get(name, 0) + 1
            failure = self._take(self._state.failures, method, path)
            hang = self._take(self._state.hangs, method, path)
            header = request.headers.get("authorization", "")
            token = header[7:].strip() if header.lower().startswith("bearer ") else ""
            account = self._state.accounts.get(token)
        nobody = FakeAccount(id="", username="", token="")
        if failure is not None:
            return self._failure_response(failure), None, nobody
        if account is None or account.revoked or account.remote_domain is not None:
            return JSONResponse(INVALID_TOKEN, status_code=401), None, nobody
        if hang is not None and not hang.after_commit:
            await asyncio.sleep(hang.seconds)
            hang = None
        return None, hang, account

    def _failure_response(self, rule: Rule) -> Response:
        body = {"error": rule.error or ERROR_TEXT.get(rule.status, "Error")}
        headers: dict[str, str] = {}
        if rule.status == 429:
            reset = self.now() + timedelta(seconds=60)
            headers = {
                "X-RateLimit-Limit": "300",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": _iso(reset),
            }
        return JSONResponse(body, status_code=rule.status, headers=headers)

    @staticmethod
    async def _answer(hang: Rule | None, response: Response) -> Response:
        if hang is not None:
            await asyncio.sleep(hang.seconds)  # the work is done; the answer comes too late
        return response

    async def _verify(self, request: Request) -> Response:
        refused, hang, account = await self._guard(request)
        if refused is not None:
            return refused
        with self._lock:
            body = self._account_json(account)
        body["source"] = {"privacy": "public", "sensitive": False, "language": "en", "note": ""}
        return await self._answer(hang, JSONResponse(body))

    async def _post_status(self, request: Request) -> Response:
        refused, hang, account = await self._guard(request)
        if refused is not None:
            return refused
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                params = json.loads(await request.body() or b"{}")
            except ValueError:
                return JSONResponse({"error": "Invalid JSON"}, status_code=400)
        else:
            params = dict(await request.form())
        text = str(params.get("status") or "")
        key = request.headers.get("idempotency-key")
        with self._lock:
            now = self.now()
            if key:
                seen = self._state.idempotency.get((account.id, key))
                if seen is not None and now - seen[1] < IDEMPOTENCY_WINDOW:
                    original = self._state.statuses[seen[0]]
                    return await self._answer(hang, JSONResponse(_public(original)))
            if not text.strip():
                return JSONResponse(
                    {"error": "Validation failed: Text can't be blank"}, status_code=422
                )
            if len(text) > MAX_CHARACTERS:
                return JSONResponse(
                    {
                        "error": f"Validation failed: Text character limit of {MAX_CHARACTERS} "
                        "exceeded"
                    },
                    status_code=422,
                )
            parent_id = params.get("in_reply_to_id")
            parent = self._state.statuses.get(str(parent_id)) if parent_id else None
            status = self._new_status(account, text, parent)
            self._state.statuses_created += 1
            if key:
                self._state.idempotency[(account.id, key)] = (status["id"], now)
            body = _public(status)
        return await self._answer(hang, JSONResponse(body))

    async def _get_status(self, request: Request) -> Response:
        refused, hang, _account = await self._guard(request)
        if refused is not None:
            return refused
        with self._lock:
            status = self._state.statuses.get(request.path_params["id"])
            if status is None:
                return JSONResponse(NOT_FOUND, status_code=404)
            body = _public(status)
        return await self._answer(hang, JSONResponse(body))

    async def _account_statuses(self, request: Request) -> Response:
        refused, hang, _account = await self._guard(request)
        if refused is not None:
            return refused
        limit = _limit(request.query_params.get("limit"), default=20, maximum=40)
        max_id = request.query_params.get("max_id")
        with self._lock:
            found = sorted(
                (
                    s
                    for s in self._state.statuses.values()
                    if s["account"]["id"] == request.path_params["id"]
                    and (max_id is None or int(s["id"]) < int(max_id))
                ),
                key=lambda s: int(s["id"]),
                reverse=True,
            )[:limit]
            body = [_public(s) for s in found]
        return await self._answer(hang, JSONResponse(body))

    async def _notifications(self, request: Request) -> Response:
        refused, hang, account = await self._guard(request)
        if refused is not None:
            return refused
        query = request.query_params
        types = query.getlist("types[]")
        excluded = query.getlist("exclude_types[]")
        limit = _limit(query.get("limit"), default=40, maximum=80)
        max_id, since_id, min_id = query.get("max_id"), query.get("since_id"), query.get("min_id")
        with self._lock:
            mine = [
                n
                for n in self._state.notifications.values()
                if n["_for"] == account.id
                and (not types or n["type"] in types)
                and n["type"] not in excluded
                and (max_id is None or int(n["id"]) < int(max_id))
                and (since_id is None or int(n["id"]) > int(since_id))
                and (min_id is None or int(n["id"]) > int(min_id))
            ]
            mine.sort(key=lambda n: int(n["id"]))
            # min_id pages forward from it (the oldest first); otherwise the newest page.
            page = mine[:limit] if min_id is not None else mine[-limit:]
            page.reverse()
            body = [_public(n) for n in page]
        headers: dict[str, str] = {}
        if page:
            # Like Mastodon's pagination_params: the filters and the limit carry over.
            kept = [("types[]", t) for t in types] + [("exclude_types[]", t) for t in excluded]
            if query.get("limit"):
                kept.append(("limit", str(limit)))
            base = f"{self.url}/api/v1/notifications?"
            older = urlencode([*kept, ("max_id", page[-1]["id"])])
            newer = urlencode([*kept, ("min_id", page[0]["id"])])
            headers["Link"] = f'<{base}{older}>; rel="next", <{base}{newer}>; rel="prev"'
        return await self._answer(hang, JSONResponse(body, headers=headers))

    async def _control(self, request: Request) -> Response:
        action = request.path_params["action"]
        params: dict[str, Any] = {}
        if request.method == "POST":
            raw = await request.body()
            params = json.loads(raw) if raw else {}
        if action == "state":
            return JSONResponse(self.state())
        if action == "reset":
            self.reset()
        elif action == "fail":
            self.fail(
                int(params["status"]),
                times=int(params.get("times", 1)),
                path=params.get("path"),
                method=params.get("method"),
                error=params.get("error"),
            )
        elif action == "hang":
            self.hang(
                float(params["seconds"]),
                after_commit=bool(params.get("after_commit", True)),
                times=int(params.get("times", 1)),
                path=params.get("path", "/api/v1/statuses"),
                method=params.get("method", "POST"),
            )
        elif action == "mention":
            return JSONResponse(
                self.mention(
                    str(params["text"]),
                    sender=str(params.get("from", "bob@remote.example")),
                    to=params.get("to"),
                    in_reply_to_id=params.get("in_reply_to_id"),
                )
            )
        elif action == "engage":
            return JSONResponse(
                _public(
                    self.engage(
                        str(params["status_id"]),
                        favourites=int(params.get("favourites", 0)),
                        reblogs=int(params.get("reblogs", 0)),
                        replies=int(params.get("replies", 0)),
                    )
                )
            )
        elif action == "accounts":
            return JSONResponse(self.add_account(str(params["token"]), str(params["username"])))
        elif action == "revoke":
            self.revoke(str(params["token"]))
        elif action == "clock":
            self.advance_clock(float(params.get("advance_seconds", 0)))
        else:
            return JSONResponse({"error": f"unknown control {action}"}, status_code=404)
        return JSONResponse({"ok": True})


def _public(entity: dict[str, Any]) -> dict[str, Any]:
    """The JSON Mastodon sends: without the fake's own bookkeeping fields."""
    out: dict[str, Any] = {}
    for key, value in entity.items():
        if key.startswith("_"):
            continue
        out[key] = _public(value) if isinstance(value, dict) else value
    return out


def _iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _limit(raw: str | None, *, default: int, maximum: int) -> int:
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = default
    return max(1, min(value, maximum))


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _server(fake: FakeMastodon) -> uvicorn.Server:
    config = uvicorn.Config(
        fake.app(),
        log_level="warning",
        loop="asyncio",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def running_fake_mastodon(token: str = DEFAULT_TOKEN) -> Iterator[FakeMastodon]:
    """Serve a :class:`FakeMastodon` on a free port from a background thread."""
    sock = _bind("127.0.0.1", 0)
    fake = FakeMastodon(token=token, port=sock.getsockname()[1])
    server = _server(fake)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the fake Mastodon server did not start")
        time.sleep(0.01)
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Mastodon server for notiflow's tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args()
    sock = _bind(args.host, args.port)
    fake = FakeMastodon(token=args.token, host=args.host, port=sock.getsockname()[1])
    print(f"fake mastodon listening on {fake.url} token={fake.token}", flush=True)
    asyncio.run(_server(fake).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
