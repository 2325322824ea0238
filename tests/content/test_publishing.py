"""Scheduled publishing: claim due targets, publish each once, retry
per target, never post twice, tell the author once. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from notiflow.content.jobs import PublishPayload, publish_post, publish_post_failed
from notiflow.content.publishing import claim_due_targets, idempotency_key, scan_due_posts
from notiflow.kit.ids import utcnow
from notiflow.kit.timezones import to_utc
from notiflow.main.runtime import Runtime
from notiflow.models import Post, PublishAttempt, SocialAccount, Workspace
from notiflow.models.platform import AccountStatus, PostStatus, TargetStatus
from notiflow.models.tenancy import Role
from notiflow.social.providers.base import (
    NeedsReauthError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)
from tests.conftest import MakeMember, Member
from tests.content.conftest import MakeAccount, MakeWorkspace
from tests.content.publishing_helpers import (
    RecordingQueue,
    ScriptedNetwork,
    make_post,
    notifications_of,
    reload,
    run_queued,
    targets_of,
)


@pytest.fixture
def network(runtime: Runtime) -> ScriptedNetwork:
    network = ScriptedNetwork()
    runtime.providers["scripted"] = network
    return network


@pytest.fixture
def queue(runtime: Runtime) -> RecordingQueue:
    queue = RecordingQueue()
    runtime.queue = queue
    return queue


@pytest.fixture
async def author(make_member: MakeMember) -> Member:
    return await make_member("acme", role=Role.OWNER)


async def _accounts(
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
    author: Member,
    count: int = 1,
    zone: str = "UTC",
) -> list[SocialAccount]:
    workspace = await make_workspace(author.tenant_id, zone)
    return [
        await make_account(workspace, provider="scripted", handle=f"@acct{n}") for n in range(count)
    ]


async def _workspace_of(runtime: Runtime, account: SocialAccount) -> Workspace:
    async with runtime.sessionmaker() as session:
        return await session.get_one(Workspace, account.workspace_id)


async def _scan_and_run(
    runtime: Runtime, queue: RecordingQueue, now: datetime | None = None
) -> int:
    claimed = await scan_due_posts(runtime, now=now)
    await run_queued(runtime, queue)
    return claimed


# ---------------------------------------------------------------------------- claiming


async def test_due_targets_are_published_and_the_author_told_once(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    accounts = await _accounts(make_workspace, make_account, author, 2)
    workspace = await _workspace_of(runtime, accounts[0])
    post = await make_post(
        runtime,
        workspace,
        accounts,
        author_id=author.id,
        scheduled_at=utcnow() - timedelta(seconds=1),
    )

    assert await scan_due_posts(runtime) == 2
    messages = list(queue.messages)
    assert [name for name, _ in messages] == ["content.publish_post"]  # one job per post
    payload = messages[0][1]
    assert payload["post_id"] == str(post.id)
    assert payload["workspace_id"] == str(workspace.id)
    assert payload["tenant_id"] == str(author.tenant_id)
    assert len(payload["target_ids"]) == 2
    assert (await reload(runtime, post)).status == PostStatus.PUBLISHING

    await run_queued(runtime, queue)

    stored = await reload(runtime, post)
    assert stored.status == PostStatus.PUBLISHED
    assert stored.published_at is not None
    targets = await targets_of(runtime, post)
    for account in accounts:
        target = targets[account.id]
        assert target.status == TargetStatus.PUBLISHED
        assert target.external_id
        assert target.external_url
        assert target.idempotency_key == idempotency_key(target.id, post.version)
        assert target.attempts == 1
        assert network.posts_of(account) == 1
    async with runtime.sessionmaker() as session:
        attempts = (await session.scalars(select(PublishAttempt))).all()
    assert sorted(a.outcome or "" for a in attempts) == ["published", "published"]
    assert all(a.finished_at is not None for a in attempts)

    # A repeated job or scan changes nothing and tells no one again.
    await publish_post(runtime, PublishPayload.model_validate(payload))
    assert await _scan_and_run(runtime, queue) == 0
    notifications = await notifications_of(runtime, author.id)
    assert [n.type for n in notifications] == ["post_published"]
    data = notifications[0].data
    assert {t["url"] for t in data["targets"]} == {t.external_url for t in targets.values()}
    assert notifications[0].action_url in {t.external_url for t in targets.values()}
    assert len(network.posts) == 2


async def test_posts_not_due_or_not_scheduled_are_left_alone(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    (account,) = await _accounts(make_workspace, make_account, author)
    workspace = await _workspace_of(runtime, account)
    later = await make_post(
        runtime,
        workspace,
        [account],
        author_id=author.id,
        scheduled_at=utcnow() + timedelta(minutes=5),
    )
    draft = await make_post(
        runtime, workspace, [account], author_id=author.id, status=PostStatus.DRAFT
    )
    waiting = await make_post(
        runtime, workspace, [account], author_id=author.id, status=PostStatus.PENDING_APPROVAL
    )
    # Even a due time on a post that is not scheduled does not make it go out.
    async with runtime.sessionmaker() as session:
        for target in (await targets_of(runtime, waiting)).values():
            stored = await session.get_one(type(target), target.id)
            stored.next_attempt_at = utcnow() - timedelta(minutes=1)
        await session.commit()

    assert await _scan_and_run(runtime, queue) == 0
    for post, status in ((later, "scheduled"), (draft, "draft"), (waiting, "pending_approval")):
        assert (await reload(runtime, post)).status == status
        assert {t.status for t in (await targets_of(runtime, post)).values()} == {"pending"}
    assert network.publish_calls == []

    # Its time comes: now it goes.
    assert await _scan_and_run(runtime, queue, now=utcnow() + timedelta(minutes=5)) == 1
    assert (await reload(runtime, later)).status == PostStatus.PUBLISHED


async def test_two_scanners_at_once_never_claim_the_same_target(
    runtime: Runtime,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    accounts = await _accounts(make_workspace, make_account, author, 3)
    workspace = await _workspace_of(runtime, accounts[0])
    posts = [
        await make_post(
            runtime,
            workspace,
            accounts,
            author_id=author.id,
            scheduled_at=utcnow() - timedelta(seconds=n),
        )
        for n in range(120)
    ]

    counts = await asyncio.gather(
        scan_due_posts(runtime, batch=25),
        scan_due_posts(runtime, batch=25),
        scan_due_posts(runtime, batch=40),
    )

    assert sum(counts) == 3 * len(posts)
    claimed = Counter(
        target_id for _, payload in queue.messages for target_id in payload["target_ids"]
    )
    assert len(claimed) == 3 * len(posts)
    assert max(claimed.values()) == 1, "a target was claimed twice"
    # A post may be split between scanners, never a target: every target is accounted for.
    per_post = Counter(payload["post_id"] for _, payload in queue.messages)
    assert set(per_post) == {str(post.id) for post in posts}


async def test_an_expired_lease_is_taken_over_and_nothing_is_posted_twice(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    """The publisher dies while the network has already posted: after the lease, the next run
    asks the network and records the post instead of sending it again."""
    (account,) = await _accounts(make_workspace, make_account, author)
    workspace = await _workspace_of(runtime, account)
    post = await make_post(runtime, workspace, [account], author_id=author.id)
    network.script(account, "hang_after_send")

    assert await scan_due_posts(runtime) == 1
    (payload,) = queue.take()
    crashed = asyncio.create_task(publish_post(runtime, payload))
    await asyncio.wait_for(network.sent.wait(), 10)
    crashed.cancel()  # the process is gone; its claim stays in the table
    with pytest.raises(asyncio.CancelledError):
        await crashed

    assert await _scan_and_run(runtime, queue) == 0, "the lease still holds"
    after_lease = utcnow() + timedelta(seconds=runtime.settings.publish_lease_seconds + 1)
    assert await _scan_and_run(runtime, queue, now=after_lease) == 1

    (target,) = (await targets_of(runtime, post)).values()
    assert target.status == TargetStatus.PUBLISHED
    assert network.posts_of(account) == 1
    assert len(network.publish_calls) == 1
    assert network.find_calls == [(account.external_account_id, target.idempotency_key)]
    assert (await reload(runtime, post)).status == PostStatus.PUBLISHED


# ----------------------------------------------------------------------------- retries


async def test_rate_limited_target_is_retried_with_backoff_and_published_once(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    limited, fine = await _accounts(make_workspace, make_account, author, 2)
    workspace = await _workspace_of(runtime, limited)
    post = await make_post(runtime, workspace, [limited, fine], author_id=author.id)
    network.script(
        limited,
        RetryableError("HTTP 429: Too many requests", status_code=429),
        RetryableError("HTTP 429: Too many requests", status_code=429),
    )
    base = runtime.settings.publish_backoff_seconds

    delays = []
    before = utcnow()
    await _scan_and_run(runtime, queue)
    for attempt in (1, 2):
        target = (await targets_of(runtime, post))[limited.id]
        assert target.status == TargetStatus.PENDING
        assert target.attempts == attempt
        assert target.last_error_kind == "retryable"
        assert "429" in (target.last_error or "")
        assert target.next_attempt_at is not None
        delay = (target.next_attempt_at - before).total_seconds()
        expected = base * 2 ** (attempt - 1)
        assert expected * 0.5 - 1 <= delay <= expected + 1
        delays.append(delay)
        assert (await reload(runtime, post)).status == PostStatus.PUBLISHING
        # Not before its time ...
        assert (
            await _scan_and_run(runtime, queue, now=target.next_attempt_at - timedelta(seconds=1))
            == 0
        )
        # ... then only this target goes again.
        before = utcnow()
        assert await _scan_and_run(runtime, queue, now=target.next_attempt_at) == 1

    assert delays[1] >= delays[0] * 0.9
    targets = await targets_of(runtime, post)
    assert targets[limited.id].status == TargetStatus.PUBLISHED
    assert targets[limited.id].attempts == 3
    assert network.posts_of(limited) == 1
    assert network.posts_of(fine) == 1, "the published target is never sent again"
    assert [call for call in network.publish_calls if call[0] == fine.external_account_id] == [
        (fine.external_account_id, targets[fine.id].idempotency_key, 1)
    ]
    assert (await reload(runtime, post)).status == PostStatus.PUBLISHED
    assert [n.type for n in await notifications_of(runtime, author.id)] == ["post_published"]


async def test_retry_after_from_the_network_is_honoured(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    (account,) = await _accounts(make_workspace, make_account, author)
    workspace = await _workspace_of(runtime, account)
    post = await make_post(runtime, workspace, [account], author_id=author.id)
    network.script(account, RetryableError("rate limited", status_code=429, retry_after=3600))

    before = utcnow()
    await _scan_and_run(runtime, queue)
    (target,) = (await targets_of(runtime, post)).values()
    assert target.next_attempt_at is not None
    assert (target.next_attempt_at - before).total_seconds() >= 3600


async def test_server_errors_three_times_fail_the_target_with_the_reason(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    (account,) = await _accounts(make_workspace, make_account, author)
    workspace = await _workspace_of(runtime, account)
    post = await make_post(runtime, workspace, [account], author_id=author.id)
    network.script(account, *[RetryableError("HTTP 503: Service Unavailable", status_code=503)] * 3)

    await _scan_and_run(runtime, queue)
    for _ in range(2):
        (target,) = (await targets_of(runtime, post)).values()
        assert target.next_attempt_at is not None
        await _scan_and_run(runtime, queue, now=target.next_attempt_at)

    (target,) = (await targets_of(runtime, post)).values()
    assert target.status == TargetStatus.FAILED
    assert target.attempts == 3
    assert "HTTP 503: Service Unavailable" in (target.last_error or "")
    assert "gave up after 3 tries" in (target.last_error or "")
    assert len(network.publish_calls) == 3
    stored = await reload(runtime, post)
    assert stored.status == PostStatus.FAILED
    assert stored.published_at is None
    (notification,) = await notifications_of(runtime, author.id)
    assert notification.type == "post_failed"
    assert "HTTP 503: Service Unavailable" in notification.message
    assert notification.data["targets"][0]["error"] == target.last_error
    # Nothing more is tried, whatever the clock says.
    assert await _scan_and_run(runtime, queue, now=utcnow() + timedelta(days=1)) == 0


async def test_a_refused_target_fails_at_once_and_the_other_is_still_published(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    refused, fine = await _accounts(make_workspace, make_account, author, 2)
    workspace = await _workspace_of(runtime, refused)
    post = await make_post(runtime, workspace, [refused, fine], author_id=author.id)
    reason = "Validation failed: Text character limit of 500 exceeded"
    network.script(refused, PermanentError(reason, status_code=422))

    await _scan_and_run(runtime, queue)

    targets = await targets_of(runtime, post)
    assert targets[refused.id].status == TargetStatus.FAILED
    assert targets[refused.id].attempts == 1
    assert targets[refused.id].last_error == reason
    assert targets[refused.id].last_error_kind == "permanent"
    assert targets[fine.id].status == TargetStatus.PUBLISHED
    stored = await reload(runtime, post)
    assert stored.status == PostStatus.PARTIALLY_PUBLISHED
    assert stored.published_at == targets[fine.id].published_at
    (notification,) = await notifications_of(runtime, author.id)
    assert notification.type == "post_failed"
    assert notification.title == "Your post was published to 1 of 2 accounts"
    assert reason in notification.message
    assert refused.handle in notification.message
    by_handle = {t["handle"]: t for t in notification.data["targets"]}
    assert by_handle[refused.handle]["error"] == reason
    assert by_handle[fine.handle]["url"] == targets[fine.id].external_url
    assert await _scan_and_run(runtime, queue, now=utcnow() + timedelta(days=1)) == 0


async def test_a_refused_token_marks_the_account_for_reconnection(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    (account,) = await _accounts(make_workspace, make_account, author)
    workspace = await _workspace_of(runtime, account)
    first = await make_post(runtime, workspace, [account], author_id=author.id)
    network.script(account, NeedsReauthError("The access token is invalid", status_code=401))

    await _scan_and_run(runtime, queue)

    (target,) = (await targets_of(runtime, first)).values()
    assert target.status == TargetStatus.FAILED
    assert target.last_error_kind == "needs_reauth"
    assert (target.last_error or "").startswith("account needs re-authorization")
    async with runtime.sessionmaker() as session:
        stored = await session.get_one(SocialAccount, account.id)
    assert stored.status == AccountStatus.NEEDS_REAUTH
    assert (await reload(runtime, first)).status == PostStatus.FAILED

    # The next post on that account fails with the reason, without calling the network.
    second = await make_post(runtime, workspace, [account], author_id=author.id)
    await _scan_and_run(runtime, queue)
    (target,) = (await targets_of(runtime, second)).values()
    assert target.status == TargetStatus.FAILED
    assert target.last_error == "account needs re-authorization"
    assert len(network.publish_calls) == 1
    assert [n.type for n in await notifications_of(runtime, author.id)] == [
        "post_failed",
        "post_failed",
    ]


async def test_a_disconnected_account_fails_its_target_without_a_call(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    workspace = await make_workspace(author.tenant_id)
    gone = await make_account(workspace, provider="scripted", status=AccountStatus.DISABLED)
    fine = await make_account(workspace, provider="scripted")
    post = await make_post(runtime, workspace, [gone, fine], author_id=author.id)

    await _scan_and_run(runtime, queue)

    targets = await targets_of(runtime, post)
    assert targets[gone.id].status == TargetStatus.FAILED
    assert targets[gone.id].last_error == "account is disconnected"
    assert targets[gone.id].attempts == 0
    assert network.posts_of(gone) == 0
    assert targets[fine.id].status == TargetStatus.PUBLISHED
    assert (await reload(runtime, post)).status == PostStatus.PARTIALLY_PUBLISHED


# ---------------------------------------------------------------------- unknown outcomes


async def test_an_unknown_outcome_is_checked_before_sending_again(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    posted, lost = await _accounts(make_workspace, make_account, author, 2)
    workspace = await _workspace_of(runtime, posted)
    post = await make_post(runtime, workspace, [posted, lost], author_id=author.id)
    # One network posted and the answer was lost; the other never got the request.
    network.script(posted, "sent_then_unknown")
    network.script(lost, OutcomeUnknownError("read timeout"))

    await _scan_and_run(runtime, queue)
    targets = await targets_of(runtime, post)
    for account in (posted, lost):
        assert targets[account.id].status == TargetStatus.PENDING
        assert targets[account.id].last_error_kind == "unknown"
    retry_at = max(t.next_attempt_at for t in targets.values() if t.next_attempt_at)
    await _scan_and_run(runtime, queue, now=retry_at)

    targets = await targets_of(runtime, post)
    assert {t.status for t in targets.values()} == {TargetStatus.PUBLISHED}
    assert network.posts_of(posted) == 1, "found, not sent again"
    assert network.posts_of(lost) == 1, "not found, sent again"
    calls = Counter(owner for owner, _, _ in network.publish_calls)
    assert calls[posted.external_account_id] == 1
    assert calls[lost.external_account_id] == 2
    # The second send carries the same key as the first.
    keys = {key for owner, key, _ in network.publish_calls if owner == lost.external_account_id}
    assert keys == {targets[lost.id].idempotency_key}
    assert sorted(owner for owner, _ in network.find_calls) == sorted(
        [posted.external_account_id, lost.external_account_id]
    )
    assert [n.type for n in await notifications_of(runtime, author.id)] == ["post_published"]


async def test_an_outcome_that_stays_unknown_ends_unconfirmed(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    (account,) = await _accounts(make_workspace, make_account, author)
    workspace = await _workspace_of(runtime, account)
    post = await make_post(runtime, workspace, [account], author_id=author.id)
    network.script(account, OutcomeUnknownError("read timeout"))
    network.find_scripts[account.external_account_id] = [
        OutcomeUnknownError("lookup timed out")
    ] * 2

    await _scan_and_run(runtime, queue)
    for _ in range(2):
        (target,) = (await targets_of(runtime, post)).values()
        assert target.status == TargetStatus.PENDING
        assert target.next_attempt_at is not None
        await _scan_and_run(runtime, queue, now=target.next_attempt_at)

    (target,) = (await targets_of(runtime, post)).values()
    assert target.status == TargetStatus.UNCONFIRMED
    assert "check the account before posting again" in (target.last_error or "")
    assert len(network.publish_calls) == 1, "never re-sent while the outcome was unknown"
    assert (await reload(runtime, post)).status == PostStatus.FAILED
    (notification,) = await notifications_of(runtime, author.id)
    assert notification.type == "post_failed"
    assert "not confirmed" in notification.message


async def test_a_slow_network_counts_as_an_unknown_outcome(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"provider_timeout_seconds": 0.2})
    (account,) = await _accounts(make_workspace, make_account, author)
    workspace = await _workspace_of(runtime, account)
    post = await make_post(runtime, workspace, [account], author_id=author.id)
    network.script(account, "hang_after_send")

    await _scan_and_run(runtime, queue)
    (target,) = (await targets_of(runtime, post)).values()
    assert target.status == TargetStatus.PENDING
    assert target.last_error_kind == "unknown"
    assert "no answer within 0.2 s" in (target.last_error or "")
    assert target.next_attempt_at is not None

    await _scan_and_run(runtime, queue, now=target.next_attempt_at)
    (target,) = (await targets_of(runtime, post)).values()
    assert target.status == TargetStatus.PUBLISHED
    assert network.posts_of(account) == 1


# ------------------------------------------------------------------- the job's own failure


async def test_when_the_job_gives_up_its_targets_fail_and_the_author_is_told(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    untried, in_flight = await _accounts(make_workspace, make_account, author, 2)
    workspace = await _workspace_of(runtime, untried)
    post = await make_post(runtime, workspace, [untried, in_flight], author_id=author.id)
    (claim,) = await claim_due_targets(runtime)
    # The call for one target went out before the job died for good; the other never started.
    network.script(in_flight, "hang_after_send")
    in_flight_target = (await targets_of(runtime, post))[in_flight.id]
    task = asyncio.create_task(
        publish_post(
            runtime, claim.payload().model_copy(update={"target_ids": (in_flight_target.id,)})
        )
    )
    await asyncio.wait_for(network.sent.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await publish_post_failed(runtime, claim.payload(), RuntimeError("database went away"))

    targets = await targets_of(runtime, post)
    assert targets[in_flight.id].status == TargetStatus.UNCONFIRMED
    assert targets[untried.id].status == TargetStatus.FAILED
    assert "database went away" in (targets[untried.id].last_error or "")
    assert (await reload(runtime, post)).status == PostStatus.FAILED
    (notification,) = await notifications_of(runtime, author.id)
    assert notification.type == "post_failed"
    assert "database went away" in notification.message

    # Given up means given up: the scanner does not pick them again; telling twice is avoided.
    await publish_post_failed(runtime, claim.payload(), RuntimeError("again"))
    assert await _scan_and_run(runtime, queue, now=utcnow() + timedelta(hours=1)) == 0
    assert len(await notifications_of(runtime, author.id)) == 1


async def test_a_post_taken_back_after_the_scan_is_not_published(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    (account,) = await _accounts(make_workspace, make_account, author)
    workspace = await _workspace_of(runtime, account)
    post = await make_post(runtime, workspace, [account], author_id=author.id)
    assert await scan_due_posts(runtime) == 1
    async with runtime.sessionmaker() as session:
        stored = await session.get_one(Post, post.id)
        stored.status = PostStatus.DRAFT.value
        await session.commit()

    await run_queued(runtime, queue)

    assert network.publish_calls == []
    (target,) = (await targets_of(runtime, post)).values()
    assert target.status == TargetStatus.PENDING


# ------------------------------------------------------------------------------- time zones


async def test_a_post_for_9_local_after_the_dst_change_goes_out_at_the_right_instant(
    runtime: Runtime,
    network: ScriptedNetwork,
    queue: RecordingQueue,
    author: Member,
    make_workspace: MakeWorkspace,
    make_account: MakeAccount,
) -> None:
    """Europe/Berlin moves to summer time on 2027-03-28: 09:00 local is 08:00 UTC the day
    before and 07:00 UTC the day after."""
    (account,) = await _accounts(make_workspace, make_account, author, zone="Europe/Berlin")
    workspace = await _workspace_of(runtime, account)
    # Naive on purpose: wall times in the workspace's zone, as a person enters them.
    before_change = to_utc(datetime(2027, 3, 27, 9, 0), workspace.timezone)  # noqa: DTZ001
    after_change = to_utc(datetime(2027, 3, 29, 9, 0), workspace.timezone)  # noqa: DTZ001
    assert before_change.hour == 8
    assert after_change.hour == 7
    early = await make_post(
        runtime, workspace, [account], author_id=author.id, scheduled_at=before_change
    )
    late = await make_post(
        runtime, workspace, [account], author_id=author.id, scheduled_at=after_change
    )

    assert await _scan_and_run(runtime, queue, now=before_change - timedelta(seconds=1)) == 0
    assert await _scan_and_run(runtime, queue, now=before_change) == 1
    assert (await reload(runtime, early)).status == PostStatus.PUBLISHED
    # 08:59 local on the 29th is 06:59 UTC: not yet; 07:00 UTC is 09:00 local: now.
    assert await _scan_and_run(runtime, queue, now=after_change - timedelta(minutes=1)) == 0
    assert (await reload(runtime, late)).status == PostStatus.SCHEDULED
    assert await _scan_and_run(runtime, queue, now=after_change) == 1
    assert (await reload(runtime, late)).status == PostStatus.PUBLISHED
