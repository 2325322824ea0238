"""The sandbox network: deterministic and stateless, so every worker process sees the same world."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notiflow.social.providers.base import (
    Credentials,
    NeedsReauthError,
    OutcomeUnknownError,
    PermanentError,
    PublishRequest,
    RetryableError,
)
from notiflow.social.providers.sandbox import SandboxProvider

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def creds(**options: object) -> Credentials:
    return Credentials(
        access_token="token",
        external_account_id="sbx-account",
        options={"latency_ms": 0, **options},
    )


def at(moment: datetime) -> SandboxProvider:
    return SandboxProvider(clock=lambda: moment)


async def test_same_key_gives_the_same_post_in_every_instance() -> None:
    first, second = at(NOW), at(NOW + timedelta(minutes=5))
    request = PublishRequest(content="hello", idempotency_key="target-1:v1")

    a = await first.publish(creds(), request)
    b = await second.publish(creds(), request)
    other = await first.publish(creds(), PublishRequest(content="hello", idempotency_key="t-2:v1"))

    assert a.external_id == b.external_id
    assert a.url == b.url
    assert other.external_id != a.external_id
    assert await second.find_published(creds(), request) == b


async def test_failure_rate_is_respected_and_the_same_in_every_instance() -> None:
    options = {"failure_rate": 0.3, "seed": "s"}
    outcomes: list[list[bool]] = []
    for provider in (at(NOW), at(NOW + timedelta(hours=1))):
        failed = []
        for n in range(1000):
            try:
                await provider.publish(
                    creds(**options), PublishRequest(content="x", idempotency_key=f"k{n}")
                )
                failed.append(False)
            except RetryableError:
                failed.append(True)
        outcomes.append(failed)

    assert outcomes[0] == outcomes[1]
    assert 250 <= sum(outcomes[0]) <= 350


async def test_a_retry_can_succeed_and_find_published_agrees_with_publish() -> None:
    provider = at(NOW)
    options = creds(failure_rate=0.5, unknown_rate=0.3, seed="s")
    checked = 0
    for n in range(200):
        key = f"key-{n}"
        posted_by: int | None = None
        for attempt in (1, 2, 3):
            request = PublishRequest(content="x", idempotency_key=key, attempt=attempt)
            try:
                await provider.publish(options, request)
                posted_by = posted_by or attempt
            except OutcomeUnknownError:
                posted_by = posted_by or attempt  # posted, but the answer was lost
            except RetryableError:
                pass
            found = await provider.find_published(options, request)
            assert (found is not None) == (posted_by is not None)
            checked += 1
    assert checked == 600


async def test_validation_revocation_and_expiry_are_classified() -> None:
    provider = at(NOW)
    with pytest.raises(PermanentError):
        await provider.publish(creds(), PublishRequest(content="  ", idempotency_key="k"))
    with pytest.raises(PermanentError, match="limit of 10"):
        await provider.publish(
            creds(max_length=10), PublishRequest(content="x" * 11, idempotency_key="k")
        )
    with pytest.raises(NeedsReauthError):
        await provider.verify(creds(revoked=True))
    expired = Credentials(access_token="t", token_expires_at=NOW - timedelta(seconds=1))
    with pytest.raises(NeedsReauthError):
        await provider.publish(expired, PublishRequest(content="x", idempotency_key="k"))


async def test_inbox_is_the_same_on_refetch_and_continues_from_the_cursor() -> None:
    options = creds(comment_rate=0.5, mention_rate=0.3, post_ids=["sbx_a", "sbx_b"])
    first = await at(NOW).fetch_inbox(options, None)
    again = await at(NOW + timedelta(seconds=10)).fetch_inbox(options, None)
    assert first.entries, "an hour at these rates has items"
    # Within the same minute, the same cursor gives the same items (a second worker agrees).
    assert first == again
    ids = [entry.external_id for entry in first.entries]
    assert len(ids) == len(set(ids))
    assert {entry.kind for entry in first.entries} == {"comment", "mention"}
    assert all(
        entry.in_reply_to_external_id in {"sbx_a", "sbx_b"}
        for entry in first.entries
        if entry.kind == "comment"
    )

    later = await at(NOW + timedelta(minutes=30)).fetch_inbox(options, first.cursor)
    assert later.entries
    assert not set(ids) & {entry.external_id for entry in later.entries}
    assert all(
        entry.occurred_at >= max(e.occurred_at for e in first.entries) for entry in later.entries
    )
    nothing_new = await at(NOW + timedelta(minutes=30)).fetch_inbox(options, later.cursor)
    assert nothing_new.entries == []
    assert nothing_new.cursor == later.cursor


async def test_metrics_grow_with_time_and_skip_foreign_posts() -> None:
    post = await at(NOW).publish(creds(), PublishRequest(content="x", idempotency_key="k"))
    early = await at(NOW).fetch_metrics(creds(likes_per_hour=2), [post.external_id, "other"])
    late = await at(NOW + timedelta(days=3)).fetch_metrics(
        creds(likes_per_hour=2), [post.external_id]
    )
    assert set(early) == {post.external_id}
    assert late[post.external_id].likes > early[post.external_id].likes
    assert late[post.external_id].impressions is not None


async def test_refresh_gives_a_new_token_or_fails_as_configured() -> None:
    expiring = Credentials(
        access_token="old",
        refresh_token="refresh-1",
        token_expires_at=NOW + timedelta(days=2),
        options={"latency_ms": 0, "token_lifetime_hours": 48},
    )
    grant = await at(NOW).refresh_token(expiring)
    assert grant is not None
    assert grant.access_token != "old"
    assert grant.refresh_token not in (None, "refresh-1")
    assert grant.expires_at == NOW + timedelta(hours=48)

    never = Credentials(access_token="t", options={"latency_ms": 0})
    assert await at(NOW).refresh_token(never) is None
    for error, kind in (
        ("retryable", RetryableError),
        ("needs_reauth", NeedsReauthError),
        ("permanent", PermanentError),
    ):
        failing = Credentials(
            access_token="t",
            refresh_token="r",
            token_expires_at=NOW + timedelta(days=1),
            options={"latency_ms": 0, "refresh_error": error},
        )
        with pytest.raises(kind):
            await at(NOW).refresh_token(failing)
