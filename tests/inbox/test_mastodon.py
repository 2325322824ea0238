"""Inbox sync and metrics through the Mastodon adapter against a real local Mastodon-like server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select

from notiflow.analytics.service import fetch_workspace_metrics
from notiflow.inbox.sync import sync_workspace
from notiflow.main.runtime import Runtime
from notiflow.models import InboxItem, PostMetricSnapshot, SocialAccount
from notiflow.models.platform import AccountStatus
from notiflow.models.tenancy import Role
from notiflow.social.providers.base import Credentials, PublishRequest
from notiflow.social.providers.mastodon import MastodonProvider
from tests.conftest import MakeMember
from tests.inbox.factories import (
    make_account,
    make_published_target,
    make_workspace,
    notifications_of,
)
from tests.social.fake_mastodon import FakeMastodon, running_fake_mastodon


@pytest.fixture
def fake() -> Iterator[FakeMastodon]:
    with running_fake_mastodon() as server:
        yield server


@pytest.fixture
async def mastodon(runtime: Runtime) -> AsyncIterator[MastodonProvider]:
    adapter = MastodonProvider(timeout_seconds=5.0)
    runtime.providers = {"mastodon": adapter}
    yield adapter
    await adapter.close()


async def test_mentions_and_replies_arrive_once_and_a_revoked_token_pauses_the_account(
    runtime: Runtime, make_member: MakeMember, fake: FakeMastodon, mastodon: MastodonProvider
) -> None:
    owner = await make_member("acme", role=Role.OWNER)
    author = await make_member("acme")
    workspace = await make_workspace(runtime, owner.tenant_id)
    profile = await mastodon.verify(Credentials(access_token=fake.token, instance_url=fake.url))
    account = await make_account(
        runtime,
        workspace,
        provider="mastodon",
        handle=profile.handle,
        external_account_id=profile.external_account_id,
        instance_url=fake.url,
        access_token=fake.token,
    )
    ours = await mastodon.publish(
        Credentials(
            access_token=fake.token,
            instance_url=fake.url,
            external_account_id=profile.external_account_id,
        ),
        PublishRequest(content="Our launch post", idempotency_key="launch:v1"),
    )
    target = await make_published_target(
        runtime, account, author_id=author.id, external_id=ours.external_id
    )
    fake.mention("congrats!", sender="carol@remote.example", in_reply_to_id=ours.external_id)
    fake.mention("have you seen this?", sender="dave@remote.example")

    first = await sync_workspace(runtime, workspace.id, workspace.tenant_id)
    again = await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    assert (first.new_items, again.new_items) == (2, 0)
    async with runtime.sessionmaker() as session:
        items = list(
            (await session.scalars(select(InboxItem).order_by(InboxItem.author_handle))).all()
        )
    assert [(i.kind, i.author_handle, i.post_target_id) for i in items] == [
        ("comment", "@carol@remote.example", target.id),
        ("mention", "@dave@remote.example", None),
    ]
    assert "congrats!" in items[0].text
    assert [n.title for n in await notifications_of(runtime, author.id)] == [
        "New comment from @carol@remote.example"
    ]
    assert len(await notifications_of(runtime, owner.id)) == 2

    fake.engage(ours.external_id, favourites=3, reblogs=2)
    measured = await fetch_workspace_metrics(runtime, workspace.id, workspace.tenant_id)
    assert measured.snapshots == 1
    async with runtime.sessionmaker() as session:
        snapshot = await session.scalar(select(PostMetricSnapshot))
    assert snapshot is not None
    assert (snapshot.post_target_id, snapshot.likes, snapshot.reposts) == (target.id, 3, 2)
    assert snapshot.replies >= 1

    fake.revoke(fake.token)
    fake.mention("anyone there?", sender="erin@remote.example")
    await sync_workspace(runtime, workspace.id, workspace.tenant_id)

    async with runtime.sessionmaker() as session:
        paused = await session.get(SocialAccount, account.id)
    assert paused is not None
    assert paused.status == AccountStatus.NEEDS_REAUTH.value
    assert len(await notifications_of(runtime, owner.id, "account_token_expired")) == 1
