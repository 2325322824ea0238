"""The Mastodon adapter against a real local Mastodon-like server: calls and error classes."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from notiflow.social.providers.base import (
    Credentials,
    NeedsReauthError,
    OutcomeUnknownError,
    PermanentError,
    PublishRequest,
    RetryableError,
)
from notiflow.social.providers.mastodon import MastodonProvider
from tests.social.fake_mastodon import FakeMastodon

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def provider() -> AsyncIterator[MastodonProvider]:
    adapter = MastodonProvider(timeout_seconds=1.0)
    yield adapter
    await adapter.close()


async def creds_for(provider: MastodonProvider, fake: FakeMastodon) -> Credentials:
    bare = Credentials(access_token=fake.token, instance_url=fake.url)
    profile = await provider.verify(bare)
    return Credentials(
        access_token=fake.token,
        instance_url=fake.url,
        external_account_id=profile.external_account_id,
    )


def request(key: str = "target-1:v1", content: str = "Hello fediverse") -> PublishRequest:
    return PublishRequest(content=content, idempotency_key=key)


async def test_verify_says_whose_token_it_is(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    profile = await provider.verify(
        Credentials(access_token=fake_mastodon.token, instance_url=fake_mastodon.url)
    )
    assert profile.handle == f"@alice@127.0.0.1:{fake_mastodon.port}"
    assert profile.external_account_id.isdigit()


async def test_one_idempotency_key_publishes_once(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    first = await provider.publish(creds, request())
    again = await provider.publish(creds, request())
    other = await provider.publish(creds, request(key="target-2:v1"))

    assert again.external_id == first.external_id
    assert other.external_id != first.external_id
    assert fake_mastodon.state()["statuses_created"] == 2
    assert first.url is not None
    assert first.url.endswith(first.external_id)


async def test_after_the_one_hour_window_the_same_key_posts_again(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    first = await provider.publish(creds, request())
    fake_mastodon.advance_clock(3601)
    second = await provider.publish(creds, request())
    assert second.external_id != first.external_id
    assert fake_mastodon.state()["statuses_created"] == 2


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (401, None, NeedsReauthError),
        (429, None, RetryableError),
        (500, None, RetryableError),
        (502, None, RetryableError),
        (503, None, RetryableError),
        (504, None, RetryableError),
        (422, "Cannot attach files that have not finished processing", RetryableError),
        (422, "Validation failed: Text can't be blank", PermanentError),
        (403, "This action is not allowed", PermanentError),
        (404, "Record not found", PermanentError),
        (400, "Bad request", PermanentError),
    ],
)
async def test_publish_failures_are_classified_and_post_nothing(
    provider: MastodonProvider,
    fake_mastodon: FakeMastodon,
    status: int,
    error: str | None,
    kind: type[Exception],
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    fake_mastodon.fail(status, path="/api/v1/statuses", error=error)
    with pytest.raises(kind) as raised:
        await provider.publish(creds, request())
    assert getattr(raised.value, "status_code", None) == status
    if error is not None:
        assert error in str(raised.value)
    assert fake_mastodon.state()["statuses_created"] == 0
    # The failure was one-off: the retry with the same key publishes, once.
    await provider.publish(creds, request())
    assert fake_mastodon.state()["statuses_created"] == 1


async def test_rate_limit_says_when_to_retry(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    fake_mastodon.fail(429)
    with pytest.raises(RetryableError) as raised:
        await provider.publish(creds, request())
    # The fake's X-RateLimit-Reset is an ISO-8601 instant a minute ahead.
    assert raised.value.retry_after is not None
    assert 0 < raised.value.retry_after <= 60


async def test_validation_errors_carry_the_servers_words(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    with pytest.raises(PermanentError, match="character limit of 500"):
        await provider.publish(creds, request(content="x" * 501))
    with pytest.raises(PermanentError, match="can't be blank"):
        await provider.publish(creds, request(content=""))


async def test_revoked_token_needs_reauth(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    fake_mastodon.revoke(fake_mastodon.token)
    with pytest.raises(NeedsReauthError, match="access token is invalid"):
        await provider.fetch_inbox(creds, None)


async def test_timeout_after_the_status_was_created_is_an_unknown_outcome_then_found(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    fake_mastodon.hang(3, after_commit=True)
    with pytest.raises(OutcomeUnknownError):
        await provider.publish(creds, request())
    assert fake_mastodon.state()["statuses_created"] == 1

    found = await provider.find_published(creds, request())
    assert found is not None
    # Re-sending with the same key inside the window also returns that status: still one.
    again = await provider.publish(creds, request())
    assert again.external_id == found.external_id
    assert fake_mastodon.state()["statuses_created"] == 1


async def test_find_published_says_none_when_nothing_was_posted(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    await provider.publish(creds, request(key="other", content="Something else"))
    assert await provider.find_published(creds, request()) is None


async def test_an_unreachable_instance_is_retryable(provider: MastodonProvider) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    creds = Credentials(access_token="t", instance_url=f"http://127.0.0.1:{port}")
    with pytest.raises(RetryableError, match="could not reach"):
        await provider.publish(creds, request())


async def test_a_read_that_times_out_is_retryable(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    fake_mastodon.hang(3, path="/api/v1/notifications", method="GET")
    with pytest.raises(RetryableError):
        await provider.fetch_inbox(creds, None)


async def test_inbox_pages_forward_from_the_cursor(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    ours = await provider.publish(creds, request())
    fake_mastodon.mention("what do you think?", sender="bob@remote.example")
    fake_mastodon.mention(
        "great post!", sender="carol@other.example", in_reply_to_id=ours.external_id
    )

    first = await provider.fetch_inbox(creds, None)
    assert [(e.kind, e.author_handle) for e in first.entries] == [
        ("mention", "@bob@remote.example"),
        ("comment", "@carol@other.example"),
    ]
    comment = first.entries[1]
    assert comment.in_reply_to_external_id == ours.external_id
    assert "great post!" in comment.text
    assert first.cursor is not None

    assert (await provider.fetch_inbox(creds, first.cursor)).entries == []
    # More than one page (80) arrives between two syncs: all are read, in order, none twice.
    for n in range(170):
        fake_mastodon.mention(f"mention {n}")
    second = await provider.fetch_inbox(creds, first.cursor)
    texts = [entry.text for entry in second.entries]
    assert len(texts) == 170
    assert texts[0].endswith("mention 0")
    assert texts[-1].endswith("mention 169")
    assert len({entry.external_id for entry in second.entries}) == 170
    assert (await provider.fetch_inbox(creds, second.cursor)).entries == []


async def test_metrics_come_from_the_status_counts(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    post = await provider.publish(creds, request())
    fake_mastodon.engage(post.external_id, favourites=7, reblogs=3)
    fake_mastodon.mention("reply", in_reply_to_id=post.external_id)

    metrics = await provider.fetch_metrics(creds, [post.external_id, "999"])
    assert set(metrics) == {post.external_id}  # 999 does not exist: left out
    assert (metrics[post.external_id].likes, metrics[post.external_id].reposts) == (7, 3)
    assert metrics[post.external_id].replies == 1


async def test_tokens_do_not_expire(
    provider: MastodonProvider, fake_mastodon: FakeMastodon
) -> None:
    creds = await creds_for(provider, fake_mastodon)
    assert await provider.refresh_token(creds) is None


async def test_control_endpoints_work_from_another_process(fake_mastodon: FakeMastodon) -> None:
    async with httpx.AsyncClient(base_url=fake_mastodon.url) as client:
        await client.post("/_control/fail", json={"status": 500, "times": 2})
        headers = {"Authorization": f"Bearer {fake_mastodon.token}"}
        answers = [
            (
                await client.post("/api/v1/statuses", json={"status": "hi"}, headers=headers)
            ).status_code
            for _ in range(3)
        ]
        state = (await client.get("/_control/state")).json()
        assert answers == [500, 500, 200]
        assert state["statuses_created"] == 1
        await client.post("/_control/reset")
        assert (await client.get("/_control/state")).json()["statuses_created"] == 0


async def test_the_fake_server_runs_as_its_own_process(provider: MastodonProvider) -> None:
    """How process-level tests start it: ``python -m tests.social.fake_mastodon --port N``."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.social.fake_mastodon",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        url = banner.split(" on ")[1].split()[0]
        token = banner.split("token=")[1].strip()
        creds = Credentials(access_token=token, instance_url=url)
        profile = await provider.verify(creds)
        creds = Credentials(
            access_token=token, instance_url=url, external_account_id=profile.external_account_id
        )
        await provider.publish(creds, request())
        await provider.publish(creds, request())
        async with httpx.AsyncClient() as client:
            state = (await client.get(f"{url}/_control/state")).json()
        assert state["statuses_created"] == 1
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize(
    ("error", "method", "kind"),
    [
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            "POST",
            OutcomeUnknownError,
        ),
        (httpx.ReadError("connection reset"), "POST", OutcomeUnknownError),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            "GET",
            RetryableError,
        ),
        (httpx.ConnectError("connection refused"), "POST", RetryableError),
    ],
)
async def test_a_dropped_connection_is_unknown_for_a_post_and_retryable_for_a_read(
    error: httpx.TransportError, method: str, kind: type[Exception]
) -> None:
    def drop(_request: httpx.Request) -> httpx.Response:
        raise error

    adapter = MastodonProvider(transport=httpx.MockTransport(drop))
    creds = Credentials(
        access_token="t", instance_url="https://mastodon.example", external_account_id="1"
    )
    call = (
        adapter.publish(creds, request())
        if method == "POST"
        else adapter.fetch_metrics(creds, ["42"])
    )
    try:
        with pytest.raises(kind):
            await call
    finally:
        await adapter.close()


async def test_the_fake_pages_notifications_like_mastodon(fake_mastodon: FakeMastodon) -> None:
    ids = [fake_mastodon.mention(f"m{n}")["id"] for n in range(5)]
    headers = {"Authorization": f"Bearer {fake_mastodon.token}"}
    async with httpx.AsyncClient(base_url=fake_mastodon.url, headers=headers) as client:
        newest = await client.get("/api/v1/notifications", params={"limit": 2})
        older = await client.get(newest.links["next"]["url"])
        after_first = await client.get(
            "/api/v1/notifications", params={"min_id": ids[0], "limit": 2}
        )
        since_first = await client.get(
            "/api/v1/notifications", params={"since_id": ids[0], "limit": 2}
        )
        favourites = await client.get("/api/v1/notifications", params={"types[]": "favourite"})

    assert [n["id"] for n in newest.json()] == [ids[4], ids[3]]
    assert [n["id"] for n in older.json()] == [ids[2], ids[1]]
    assert [n["id"] for n in after_first.json()] == [ids[2], ids[1]]  # right after min_id
    assert [n["id"] for n in since_first.json()] == [ids[4], ids[3]]  # the newest ones
    assert favourites.json() == []
    assert "prev" in newest.links
