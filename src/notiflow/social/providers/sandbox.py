"""The ``sandbox`` network: a deterministic, stateless simulation for demos, tests and benchmarks.

Every answer is a pure function of the call's inputs (credentials, options, idempotency key,
attempt, cursor) and the clock, so any number of worker processes agree without sharing state.
Options (``SocialAccount.options`` / ``Credentials.options``; all optional):

==========================  ========  =========================================================
option                      default   meaning
==========================  ========  =========================================================
``latency_ms``              2         simulated round trip of every call (the only sleep)
``seed``                    account   varies every random draw (default: the account id)
``username``                token     who the token belongs to (default: derived from it);
                                      the account id is ``sbx-<username>``
``failure_rate``            0.0       share of publish attempts refused with a retryable error
``unknown_rate``            0.0       share of publish attempts that time out *after* posting
``read_failure_rate``       0.0       share of inbox/metrics fetches refused (retryable)
``max_length``              500       longer content is refused (permanent error)
``revoked``                 false     every call answers "token revoked" (needs reauth)
``comment_rate``            0.05      comments per time bucket (may exceed 1)
``mention_rate``            0.02      mentions per time bucket
``bucket_seconds``          60        inbox time bucket
``initial_buckets``         60        buckets fetched on the first sync (cursor None)
``post_ids``                []        external ids comments reply to (e.g. published posts)
``token_lifetime_hours``    720       lifetime of a refreshed access token
``refresh_error``           none      ``retryable`` | ``needs_reauth`` | ``permanent``
``likes_per_hour``          0.5       scale of the metric counts, which grow linearly with time
==========================  ========  =========================================================

Publishing: the external id is derived from the idempotency key, so sending the same key again
gives the same post. Attempt ``n`` of a key draws ``u = hash(seed, key, n)``: ``u <
failure_rate`` is a :class:`RetryableError` (nothing posted), the next ``unknown_rate`` is an
:class:`OutcomeUnknownError` (posted, answer lost), the rest succeed. ``find_published`` replays
the draws of attempts ``1..request.attempt``: the post exists if one of them posted.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

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
    PublishedPost,
    PublishRequest,
    RetryableError,
    TokenGrant,
)

__all__ = ["SandboxProvider"]

SANDBOX_URL = "https://sandbox.notiflow.invalid"
ACCOUNT_PREFIX = "sbx-"
# Metric counts grow from this instant, so they only go up and every process computes the same.
METRICS_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
MAX_BUCKETS_PER_FETCH = 1440
_AUTHORS = (
    "ada",
    "grace",
    "linus",
    "margaret",
    "alan",
    "barbara",
    "ken",
    "radia",
    "dennis",
    "frances",
)


def draw(*parts: object) -> float:
    """A uniform number in [0, 1) that only depends on ``parts``."""
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def digest_of(*parts: object, length: int = 16) -> str:
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).hexdigest()[:length]


class SandboxProvider:
    """A simulated network; ``clock`` can be replaced to move time in tests."""

    name = "sandbox"

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.clock = clock

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _option(credentials: Credentials, key: str, default: Any) -> Any:
        return credentials.options.get(key, default)

    def _float(self, credentials: Credentials, key: str, default: float) -> float:
        value = self._option(credentials, key, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            return default

    def _seed(self, credentials: Credentials) -> str:
        return str(
            self._option(credentials, "seed", None)
            or credentials.external_account_id
            or self._username(credentials)
        )

    def _username(self, credentials: Credentials) -> str:
        """Who the account is: the option, else its id once connected (a refreshed token is
        still the same person), else derived from the token."""
        username = self._option(credentials, "username", None)
        if username:
            return str(username)
        account_id = credentials.external_account_id or ""
        if account_id.startswith(ACCOUNT_PREFIX):
            return account_id.removeprefix(ACCOUNT_PREFIX)
        return f"user{digest_of('user', credentials.access_token, length=8)}"

    async def _call(self, credentials: Credentials) -> None:
        """The simulated round trip, and the checks every real network makes first."""
        latency_ms = self._float(credentials, "latency_ms", 2.0)
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        if not credentials.access_token:
            raise NeedsReauthError("no access token", status_code=401)
        if self._option(credentials, "revoked", False):
            raise NeedsReauthError("The access token was revoked", status_code=401)
        expires_at = credentials.token_expires_at
        if expires_at is not None and expires_at <= self.clock():
            raise NeedsReauthError("The access token expired", status_code=401)

    def _post(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        external_id = f"sbx_{digest_of('post', self._seed(credentials), request.idempotency_key)}"
        return PublishedPost(
            external_id=external_id,
            url=f"{SANDBOX_URL}/@{self._username(credentials)}/{external_id}",
            published_at=self.clock(),
        )

    def _outcome(self, credentials: Credentials, key: str, attempt: int) -> str:
        failure_rate = self._float(credentials, "failure_rate", 0.0)
        unknown_rate = self._float(credentials, "unknown_rate", 0.0)
        u = draw("publish", self._seed(credentials), key, attempt)
        if u < failure_rate:
            return "retryable"
        if u < failure_rate + unknown_rate:
            return "unknown"
        return "published"

    def _read_check(self, credentials: Credentials, *parts: object) -> None:
        rate = self._float(credentials, "read_failure_rate", 0.0)
        if rate > 0 and draw("read", self._seed(credentials), *parts) < rate:
            raise RetryableError("sandbox: service unavailable", status_code=503)

    # -- the contract ------------------------------------------------------------------------

    async def verify(self, credentials: Credentials) -> AccountProfile:
        await self._call(credentials)
        username = self._username(credentials)
        return AccountProfile(
            external_account_id=f"{ACCOUNT_PREFIX}{username}",
            handle=f"@{username}@sandbox",
        )

    async def publish(self, credentials: Credentials, request: PublishRequest) -> PublishedPost:
        await self._call(credentials)
        content = request.content.strip()
        max_length = int(self._float(credentials, "max_length", 500))
        if not content:
            raise PermanentError("Validation failed: Text can't be blank", status_code=422)
        if len(request.content) > max_length:
            raise PermanentError(
                f"Validation failed: Text character limit of {max_length} exceeded",
                status_code=422,
            )
        outcome = self._outcome(credentials, request.idempotency_key, request.attempt)
        if outcome == "retryable":
            raise RetryableError("sandbox: service unavailable", status_code=503)
        if outcome == "unknown":
            raise OutcomeUnknownError("sandbox: the response was lost after posting")
        return self._post(credentials, request)

    async def find_published(
        self, credentials: Credentials, request: PublishRequest
    ) -> PublishedPost | None:
        await self._call(credentials)
        for attempt in range(1, max(request.attempt, 1) + 1):
            if self._outcome(credentials, request.idempotency_key, attempt) != "retryable":
                return self._post(credentials, request)
        return None

    async def fetch_inbox(self, credentials: Credentials, cursor: str | None) -> InboxPage:
        await self._call(credentials)
        bucket_seconds = max(1, int(self._float(credentials, "bucket_seconds", 60)))
        # Only finished buckets are read, so a bucket's items never change once seen.
        last_complete = int(self.clock().timestamp()) // bucket_seconds - 1
        start = _parse_bucket(cursor)
        if start is None:
            start = last_complete - int(self._float(credentials, "initial_buckets", 60))
        end = min(last_complete, start + MAX_BUCKETS_PER_FETCH)
        self._read_check(credentials, "inbox", start, end)
        if end <= start:
            return InboxPage(entries=[], cursor=str(start))
        seed = self._seed(credentials)
        post_ids = [str(i) for i in self._option(credentials, "post_ids", []) or []]
        rates = (
            ("comment", self._float(credentials, "comment_rate", 0.05)),
            ("mention", self._float(credentials, "mention_rate", 0.02)),
        )
        entries: list[InboxEntry] = []
        for bucket in range(start + 1, end + 1):
            for kind, rate in rates:
                count = math.floor(rate) + (draw(kind, seed, bucket) < rate - math.floor(rate))
                for index in range(count):
                    entries.append(
                        self._entry(
                            credentials, seed, kind, bucket, index, bucket_seconds, post_ids
                        )
                    )
        return InboxPage(entries=entries, cursor=str(end))

    def _entry(
        self,
        credentials: Credentials,
        seed: str,
        kind: str,
        bucket: int,
        index: int,
        bucket_seconds: int,
        post_ids: list[str],
    ) -> InboxEntry:
        external_id = f"sbx_{kind[0]}_{digest_of(kind, seed, bucket, index, length=20)}"
        author = _AUTHORS[int(draw("author", seed, bucket, kind, index) * len(_AUTHORS))]
        offset = draw("offset", seed, bucket, kind, index) * bucket_seconds
        occurred_at = datetime.fromtimestamp(bucket * bucket_seconds + offset, UTC)
        reply_to = None
        if kind == "comment" and post_ids:
            reply_to = post_ids[int(draw("reply", seed, bucket, index) * len(post_ids))]
        me = self._username(credentials)
        phrases = _COMMENTS if kind == "comment" else _MENTIONS
        text = phrases[int(draw("text", seed, bucket, kind, index) * len(phrases))].format(me=me)
        return InboxEntry(
            external_id=external_id,
            kind=kind,
            author_handle=f"@{author}@sandbox",
            author_name=author.capitalize(),
            text=text,
            occurred_at=occurred_at,
            url=f"{SANDBOX_URL}/@{author}/{external_id}",
            in_reply_to_external_id=reply_to,
        )

    async def fetch_metrics(
        self, credentials: Credentials, external_ids: list[str]
    ) -> dict[str, PostMetrics]:
        await self._call(credentials)
        now = self.clock()
        self._read_check(credentials, "metrics", int(now.timestamp()) // 60, *external_ids)
        hours = max(0.0, (now - METRICS_EPOCH).total_seconds() / 3600)
        scale = self._float(credentials, "likes_per_hour", 0.5)
        metrics: dict[str, PostMetrics] = {}
        for external_id in external_ids:
            if not external_id.startswith("sbx_"):
                continue  # not a sandbox post: as if the network no longer had it
            likes = math.floor(hours * scale * draw("likes", external_id))
            reposts = math.floor(hours * scale * 0.3 * draw("reposts", external_id))
            replies = math.floor(hours * scale * 0.2 * draw("replies", external_id))
            impressions = math.floor(hours * scale * 20 * (0.5 + draw("views", external_id)))
            metrics[external_id] = PostMetrics(
                likes=likes,
                reposts=reposts,
                replies=replies,
                impressions=impressions,
                raw={"likes": likes, "reposts": reposts, "replies": replies},
            )
        return metrics

    async def refresh_token(self, credentials: Credentials) -> TokenGrant | None:
        latency_ms = self._float(credentials, "latency_ms", 2.0)
        if latency_ms > 0:
            await asyncio.sleep(latency_ms / 1000)
        error = self._option(credentials, "refresh_error", None)
        if error == "retryable":
            raise RetryableError("sandbox: token endpoint unavailable", status_code=503)
        if error == "needs_reauth" or self._option(credentials, "revoked", False):
            raise NeedsReauthError("The refresh token was revoked", status_code=401)
        if error == "permanent":
            raise PermanentError("invalid_grant", status_code=400)
        if credentials.token_expires_at is None:
            return None  # a token that never expires needs no refresh
        if not credentials.refresh_token:
            raise NeedsReauthError("no refresh token to renew the access token", status_code=401)
        now = self.clock()
        lifetime = timedelta(hours=self._float(credentials, "token_lifetime_hours", 720))
        version = digest_of("grant", self._seed(credentials), credentials.refresh_token, now)
        return TokenGrant(
            access_token=f"sbx-at-{version}",
            refresh_token=f"sbx-rt-{version}",
            expires_at=now + lifetime,
        )

    async def close(self) -> None:
        return None


# What the sandbox's people write: a comment under one of the account's posts, or a post
# mentioning it (``{me}`` is the account's username).
_COMMENTS = (
    "Great shot, @{me}! Where was this taken?",
    "Love this. Saving it for later.",
    "This made my morning, thank you!",
    "Finally someone said it.",
    "Is the new collection out already?",
    "Beautiful colours in this one.",
    "Congrats to the whole team!",
    "Can you share the recipe?",
)
_MENTIONS = (
    "Thanks @{me} for the quick reply yesterday, order arrived today!",
    "@{me} you have to see this view from the old town.",
    "Shoutout to @{me} for the great service this week.",
    "Anyone else excited for the @{me} launch on Friday?",
    "Just tried the new menu at @{me}, highly recommended.",
    "@{me} any plans to open in Ganja?",
)


def _parse_bucket(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        return None
