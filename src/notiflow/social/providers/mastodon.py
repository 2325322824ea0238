"""The ``mastodon`` adapter: Mastodon's REST API over one ``httpx.AsyncClient``.

Endpoints (``mastodon/documentation`` ``content/en/methods``): verify =
``GET /api/v1/accounts/verify_credentials``; publish = ``POST /api/v1/statuses`` with an
``Idempotency-Key`` (the server keeps it per account for one hour and answers a replay with the
original status); inbox = ``GET /api/v1/notifications?types[]=mention`` paged forward with
``min_id``; metrics = ``GET /api/v1/statuses/:id``. Mastodon tokens do not expire and cannot be
refreshed (Doorkeeper ``access_token_expires_in nil``), so :meth:`refresh_token` returns None.

Failures are classified once, in :func:`classify_response` / :func:`classify_transport_error`
(see docs/social.md for the table): 401 needs reauth; 429 (until ``X-RateLimit-Reset``, an
ISO-8601 instant), 5xx, a 422 "not finished processing" and connection failures are retryable;
other 4xx are permanent with the server's ``error`` text; a timeout or a dropped connection
after a *write* was sent is an unknown outcome (reads are simply retryable).
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from notiflow.kit.ids import utcnow
from notiflow.social.providers.base import (
    AccountProfile,
    Credentials,
    InboxEntry,
    InboxPage,
    NeedsReauthError,
    OutcomeUnknownError,
    PermanentError,
    PostMetrics,
    ProviderError,
    PublishedPost,
    PublishRequest,
    RetryableError,
    TokenGrant,
)

__all__ = ["MastodonProvider", "classify_response", "classify_transport_error"]

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
# Mastodon's max page size for notifications (since 4.1), and how many pages one sync reads.
NOTIFICATIONS_PAGE = 80
MAX_PAGES_PER_SYNC = 10
# find_published reads this many of the account's latest statuses, and no older than this.
RECENT_STATUSES = 40
FIND_LOOKBACK = timedelta(hours=24)
METRICS_CONCURRENCY = 5
_TAG = re.compile(r"<[^>]+>")
_BREAK = re.compile(r"<br\s*/?>|</p>\s*<p>", re.IGNORECASE)


def error_text(response: httpx.Response) -> str:
    """The server's own words: ``{"error": ..., "error_description"?}``, else the status line."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        text: str = body["error"]
        if isinstance(body.get("error_description"), str):
            text = f"{text}: {body['error_description']}"
        return text[:500]
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def retry_after_of(response: httpx.Response, now: datetime) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (an ISO-8601 instant in Mastodon, not seconds)."""
    reset = response.headers.get("x-ratelimit-reset")
    if not reset:
        return None
    try:
        moment = datetime.fromisoformat(reset.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())


def classify_response(response: httpx.Response, now: datetime | None = None) -> ProviderError:
    """The typed failure of a non-2xx answer (the server answered, so its verdict is known)."""
    status = response.status_code
    text = error_text(response)
    if status == 401:
        return NeedsReauthError(text, status_code=status)
    if status == 429:
        retry_after = retry_after_of(response, now or utcnow())
        return RetryableError(f"rate limited: {text}", status_code=status, retry_after=retry_after)
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError(text, status_code=status)
    if status == 422 and "not finished processing" in text.lower():
        return RetryableError(text, status_code=status)
    return PermanentError(text, status_code=status)


def classify_transport_error(error: httpx.TransportError, *, write: bool) -> ProviderError:
    """No answer. Nothing was sent when the connection could not be made (retryable); after a
    write was sent, a timeout or a dropped connection leaves the outcome unknown."""
    detail = f"{type(error).__name__}: {error}".rstrip(": ")
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return RetryableError(f"could not reach the instance ({detail})")
    if write:
        return OutcomeUnknownError(f"no answer after the request was sent ({detail})")
    return RetryableError(f"no answer from the instance ({detail})")


def plain_text(content: str) -> str:
    """Mastodon's HTML ``content`` back to text (links keep their full URL in hidden spans)."""
    with_breaks = _BREAK.sub("\n", content)
    return html.unescape(_TAG.sub("", with_breaks)).strip()


def _normalized(text: str) -> str:
    return " ".join(text.split())


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class MastodonProvider:
    """One client (and its connection pool) per provider instance; close it with :meth:`close`."""

    name = "mastodon"

    def __init__(
        self,
        *,
        timeout_seconds: float = 20.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.client = httpx.AsyncClient(
            timeout=timeout_seconds,
            transport=transport,
            headers={"User-Agent": "notiflow (+https://github.com/notiflow)"},
            follow_redirects=False,
        )
        self.clock = clock

    async def _request(
        self,
        credentials: Credentials,
        method: str,
        path: str,
        *,
        params: httpx.QueryParams | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if not credentials.access_token:
            raise NeedsReauthError("no access token stored for this account")
        base = (credentials.instance_url or "").rstrip("/")
        if not base:
            raise PermanentError("a Mastodon account needs its instance_url")
        all_headers = {"Authorization": f"Bearer {credentials.access_token}", **(headers or {})}
        try:
            response = await self.client.request(
                method, f"{base}{path}", params=params, json=json, headers=all_headers
            )
        except httpx.TransportError as error:
            raise classify_transport_error(error, write=method != "GET") from error
        if response.is_success:
            return response
        raise classify_response(response, self.clock())

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as error:
            raise RetryableError(
                f"the instance answered {response.status_code} without JSON"
            ) from error

    async def verify(self, credentials: Credentials) -> AccountProfile:
        response = await self._request(credentials, "GET", "/api/v1/accounts/verify_credentials")
        body = self._json(response)
        if not isinstance(body, dict) or "id" not in body:
            raise PermanentError("verify_credentials did not return an account")
        host = urlsplit(credentials.instance_url or "").netloc
        return AccountProfile(
            external_account_id=str(body["id"]), handle=f"@{body.get('username', '?')}@{host}"
        )

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        body: dict[str, Any] = {"status": request.content}
        visibility = credentials.options.get("visibility")
        if isinstance(visibility, str):
            body["visibility"] = visibility
        response = await self._request(
            credentials,
            "POST",
            "/api/v1/statuses",
            json=body,
            headers={"Idempotency-Key": request.idempotency_key},
        )
        return self._published(self._json(response))

    @staticmethod
    def _published(status: Any) -> PublishedPost:
        if not isinstance(status, dict) or "id" not in status:
            raise OutcomeUnknownError("the instance's answer carried no status id")
        return PublishedPost(
            external_id=str(status["id"]),
            url=status.get("url") or status.get("uri"),
            published_at=parse_time(status.get("created_at")),
        )

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        """Read-only: the account's latest statuses (up to 40, from the last 24 h) with exactly
        this text. Re-sending with the same Idempotency-Key would also be safe, but only within
        the server's one-hour window; this check works at any time without posting anything."""
        if not credentials.external_account_id:
            raise OutcomeUnknownError("the account's Mastodon id is unknown; cannot look it up")
        response = await self._request(
            credentials,
            "GET",
            f"/api/v1/accounts/{credentials.external_account_id}/statuses",
            params=httpx.QueryParams([("limit", RECENT_STATUSES)]),
        )
        statuses = self._json(response)
        if not isinstance(statuses, list):
            raise OutcomeUnknownError("the instance did not list the account's statuses")
        wanted = _normalized(request.content)
        since = self.clock() - FIND_LOOKBACK
        for status in statuses:
            if not isinstance(status, dict) or status.get("reblog"):
                continue
            created_at = parse_time(status.get("created_at"))
            if created_at is not None and created_at < since:
                break  # newest first: the rest is older still
            if _normalized(plain_text(str(status.get("content", "")))) == wanted:
                return self._published(status)
        return None

    async def fetch_inbox(self, credentials: Credentials, cursor: str | None) -> InboxPage:
        """Mentions since ``cursor`` (a notification id). The first sync reads the newest page
        only; later ones page forward with ``min_id`` up to ``MAX_PAGES_PER_SYNC`` pages and the
        cursor moves to the newest notification read."""
        entries: list[InboxEntry] = []
        newest = cursor
        min_id = cursor
        for _ in range(MAX_PAGES_PER_SYNC):
            params = httpx.QueryParams({"types[]": "mention", "limit": NOTIFICATIONS_PAGE})
            if min_id is not None:
                params = params.add("min_id", min_id)
            response = await self._request(
                credentials, "GET", "/api/v1/notifications", params=params
            )
            page = self._json(response)
            if not isinstance(page, list) or not page:
                break
            for notification in page:
                entry = self._entry(credentials, notification)
                if entry is not None:
                    entries.append(entry)
            ids = [str(n["id"]) for n in page if isinstance(n, dict) and "id" in n]
            if not ids:
                break
            top = max(ids, key=_id_order)
            newest = top if newest is None else max(newest, top, key=_id_order)
            if min_id is None or len(page) < NOTIFICATIONS_PAGE:
                break  # the first sync reads one page; a short page is the end
            min_id = top
        entries.sort(key=lambda e: (e.occurred_at, _id_order(e.external_id)))
        return InboxPage(entries=entries, cursor=newest)

    @staticmethod
    def _entry(credentials: Credentials, notification: Any) -> InboxEntry | None:
        if not isinstance(notification, dict) or notification.get("type") != "mention":
            return None
        status = notification.get("status")
        if not isinstance(status, dict) or "id" not in status:
            return None
        author = status.get("account") or notification.get("account") or {}
        reply_to = status.get("in_reply_to_id")
        reply_account = status.get("in_reply_to_account_id")
        ours = credentials.external_account_id
        is_comment = reply_to is not None and (
            ours is None or reply_account is None or str(reply_account) == ours
        )
        occurred_at = (
            parse_time(status.get("created_at"))
            or parse_time(notification.get("created_at"))
            or utcnow()
        )
        return InboxEntry(
            external_id=str(status["id"]),
            kind="comment" if is_comment else "mention",
            author_handle=f"@{author.get('acct', '?')}",
            author_name=author.get("display_name") or None,
            text=plain_text(str(status.get("content", ""))),
            occurred_at=occurred_at,
            url=status.get("url") or status.get("uri"),
            in_reply_to_external_id=str(reply_to) if is_comment else None,
        )

    async def fetch_metrics(
        self, credentials: Credentials, external_ids: list[str]
    ) -> dict[str, PostMetrics]:
        limit = asyncio.Semaphore(METRICS_CONCURRENCY)

        async def one(external_id: str) -> tuple[str, PostMetrics | None]:
            async with limit:
                try:
                    response = await self._request(
                        credentials, "GET", f"/api/v1/statuses/{external_id}"
                    )
                except PermanentError as error:
                    if error.status_code == 404:
                        return external_id, None  # deleted, or no longer visible to us
                    raise
            status = self._json(response)
            if not isinstance(status, dict):
                return external_id, None
            return external_id, PostMetrics(
                likes=int(status.get("favourites_count") or 0),
                reposts=int(status.get("reblogs_count") or 0),
                replies=int(status.get("replies_count") or 0),
                raw={
                    key: status.get(key)
                    for key in (
                        "favourites_count",
                        "reblogs_count",
                        "replies_count",
                        "quotes_count",
                    )
                    if key in status
                },
            )

        results = await asyncio.gather(
            *(one(i) for i in dict.fromkeys(external_ids)), return_exceptions=True
        )
        metrics_by_id: dict[str, PostMetrics] = {}
        for result in results:
            if isinstance(result, BaseException):
                raise result
            external_id, metrics = result
            if metrics is not None:
                metrics_by_id[external_id] = metrics
        return metrics_by_id

    async def refresh_token(self, credentials: Credentials) -> TokenGrant | None:
        return None  # Mastodon tokens do not expire; a refused one needs a reconnect

    async def close(self) -> None:
        await self.client.aclose()


def _id_order(value: str) -> tuple[int, str]:
    """Mastodon ids are numeric strings (snowflakes): compare them as numbers."""
    return (len(value), value) if value.isdigit() else (0, value)
