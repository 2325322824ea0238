"""The social accounts API: connect (verified, encrypted), list, show, reconnect, disconnect."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from notiflow.config import Environment
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, SocialAccount
from notiflow.models.platform import AccountStatus
from notiflow.models.tenancy import Role, Workspace
from tests.conftest import MakeMember, Member
from tests.social.conftest import MakeAccount, make_workspace
from tests.social.fake_mastodon import FakeMastodon
from tests.social.helpers import notified, reload_account

SECRET = "sandbox-secret-token-0123456789"


def accounts_url(workspace: Workspace) -> str:
    return f"/api/v1/workspaces/{workspace.id}/social-accounts"


async def stored_accounts(runtime: Runtime) -> list[SocialAccount]:
    async with runtime.sessionmaker() as session:
        return list((await session.scalars(select(SocialAccount))).all())


@pytest.fixture
async def owner(make_member: MakeMember) -> Member:
    return await make_member("acme", role=Role.OWNER)


@pytest.fixture
async def workspace(runtime: Runtime, owner: Member) -> Workspace:
    return await make_workspace(runtime, owner.tenant_id)


async def connect(
    client: httpx.AsyncClient, member: Member, workspace: Workspace, **body: Any
) -> httpx.Response:
    payload: dict[str, Any] = {
        "provider": "sandbox",
        "access_token": SECRET,
        "options": {"username": "brand"},
    }
    payload.update(body)
    return await client.post(accounts_url(workspace), json=payload, headers=member.headers)


async def test_connect_stores_tokens_encrypted_and_never_returns_them(
    client: httpx.AsyncClient,
    providers: Runtime,
    make_member: MakeMember,
    owner: Member,
    workspace: Workspace,
) -> None:
    runtime = providers
    admin = await make_member("acme", role=Role.ADMIN)
    member = await make_member("acme", role=Role.MEMBER)

    response = await connect(client, admin, workspace, refresh_token="refresh-secret-42")

    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["handle"] == "@brand@sandbox"
    assert data["status"] == "active"
    assert SECRET not in response.text
    assert "refresh-secret-42" not in response.text
    assert not {"access_token", "refresh_token"} & {key for key in data if "token" in key} - {
        "token_expires_at"
    }
    [stored] = await stored_accounts(runtime)
    assert stored.access_token_encrypted is not None
    assert SECRET not in stored.access_token_encrypted
    assert runtime.token_cipher().decrypt(stored.access_token_encrypted) == SECRET
    assert stored.refresh_token_encrypted is not None
    assert runtime.token_cipher().decrypt(stored.refresh_token_encrypted) == "refresh-secret-42"
    assert stored.connected_by == admin.id
    # The owners and admins hear about it; plain members do not.
    assert await notified(runtime, owner.id, "account_connected") == 1
    assert await notified(runtime, admin.id, "account_connected") == 1
    assert await notified(runtime, member.id, "account_connected") == 0
    async with runtime.sessionmaker() as session:
        audit = (
            await session.scalars(select(AuditLog).where(AuditLog.subject_id == str(stored.id)))
        ).all()
    assert [entry.action for entry in audit] == ["social_account.connected"]
    assert SECRET not in str(audit[0].after)


async def test_connect_a_mastodon_account_checked_against_the_instance(
    client: httpx.AsyncClient,
    providers: Runtime,
    owner: Member,
    workspace: Workspace,
    fake_mastodon: FakeMastodon,
) -> None:
    response = await connect(
        client,
        owner,
        workspace,
        provider="mastodon",
        access_token=fake_mastodon.token,
        instance_url=fake_mastodon.url + "/",
        options=None,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["handle"] == f"@alice@127.0.0.1:{fake_mastodon.port}"
    assert data["instance_url"] == fake_mastodon.url
    assert fake_mastodon.state()["requests"]["GET /api/v1/accounts/verify_credentials"] == 1


async def test_members_list_and_read_accounts_without_tokens(
    client: httpx.AsyncClient,
    providers: Runtime,
    make_member: MakeMember,
    owner: Member,
    workspace: Workspace,
) -> None:
    member = await make_member("acme", role=Role.MEMBER)
    created = (await connect(client, owner, workspace)).json()["data"]
    await connect(client, owner, workspace, access_token="other", options={"username": "b2"})

    listed = await client.get(accounts_url(workspace), headers=member.headers)
    one = await client.get(f"{accounts_url(workspace)}/{created['id']}", headers=member.headers)

    assert listed.status_code == 200
    body = listed.json()
    assert [a["handle"] for a in body["data"]] == ["@brand@sandbox", "@b2@sandbox"]
    assert body["meta"]["total"] == 2
    assert {"status", "status_reason", "token_expires_at", "last_inbox_sync_at"} <= set(
        body["data"][0]
    )
    assert SECRET not in listed.text
    assert one.status_code == 200
    assert one.json()["data"]["id"] == created["id"]
    only_active = await client.get(
        accounts_url(workspace), params={"status": "needs_reauth"}, headers=member.headers
    )
    assert only_active.json()["data"] == []


async def test_reconnecting_fixes_an_account_that_needs_reauth(
    client: httpx.AsyncClient,
    providers: Runtime,
    owner: Member,
    workspace: Workspace,
) -> None:
    runtime = providers
    first = await connect(client, owner, workspace, refresh_token="refresh-1")
    account_id = uuid.UUID(first.json()["data"]["id"])
    async with runtime.sessionmaker() as session:
        account = await session.get(SocialAccount, account_id)
        assert account is not None
        account.status = AccountStatus.NEEDS_REAUTH.value
        account.status_reason = "The access token is invalid"
        await session.commit()

    again = await connect(client, owner, workspace, access_token="a-new-token")

    assert again.status_code == 200, again.text
    data = again.json()["data"]
    assert data["id"] == str(account_id)
    assert (data["status"], data["status_reason"]) == ("active", None)
    [stored] = await stored_accounts(runtime)
    cipher = runtime.token_cipher()
    assert cipher.decrypt(stored.access_token_encrypted or "") == "a-new-token"
    # No refresh token given this time: the stored one is kept, not wiped.
    assert cipher.decrypt(stored.refresh_token_encrypted or "") == "refresh-1"
    assert await notified(runtime, owner.id, "account_connected") == 2


async def test_disconnect_wipes_tokens_and_tells_the_admins_once(
    client: httpx.AsyncClient,
    providers: Runtime,
    owner: Member,
    workspace: Workspace,
) -> None:
    runtime = providers
    created = await connect(client, owner, workspace, refresh_token="r")
    account_id = uuid.UUID(created.json()["data"]["id"])

    response = await client.delete(f"{accounts_url(workspace)}/{account_id}", headers=owner.headers)
    again = await client.delete(f"{accounts_url(workspace)}/{account_id}", headers=owner.headers)

    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "disabled"
    assert response.json()["data"]["disconnected_at"] is not None
    assert again.status_code == 200
    stored = await reload_account(runtime, account_id)
    assert stored.access_token_encrypted is None
    assert stored.refresh_token_encrypted is None
    assert await notified(runtime, owner.id, "account_disconnected") == 1


async def test_another_tenant_sees_nothing(
    client: httpx.AsyncClient,
    providers: Runtime,
    make_member: MakeMember,
    make_account: MakeAccount,
    owner: Member,
    workspace: Workspace,
) -> None:
    runtime = providers
    account = await make_account(workspace)
    stranger = await make_member("globex", role=Role.OWNER)
    their_workspace = await make_workspace(runtime, stranger.tenant_id)
    one = f"{accounts_url(workspace)}/{account.id}"

    assert (await client.get(accounts_url(workspace), headers=stranger.headers)).status_code == 404
    assert (await client.get(one, headers=stranger.headers)).status_code == 404
    assert (await client.delete(one, headers=stranger.headers)).status_code == 404
    assert (await connect(client, stranger, workspace)).status_code == 404
    # Their own workspace path with our account's id: not found either.
    theirs = f"{accounts_url(their_workspace)}/{account.id}"
    assert (await client.get(theirs, headers=stranger.headers)).status_code == 404
    assert (await client.delete(theirs, headers=stranger.headers)).status_code == 404
    assert (await reload_account(runtime, account.id)).status == "active"


async def test_members_cannot_connect_or_disconnect(
    client: httpx.AsyncClient,
    providers: Runtime,
    make_member: MakeMember,
    make_account: MakeAccount,
    workspace: Workspace,
) -> None:
    member = await make_member("acme", role=Role.MEMBER)
    account = await make_account(workspace)

    refused = await connect(client, member, workspace)
    removal = await client.delete(f"{accounts_url(workspace)}/{account.id}", headers=member.headers)

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    assert removal.status_code == 403
    assert len(await stored_accounts(providers)) == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"provider": "myspace"}, "unknown_provider"),
        ({"provider": "mastodon", "access_token": "t"}, "validation_failed"),
        ({"provider": "mastodon", "instance_url": "ftp://mastodon.example"}, "validation_failed"),
        ({"access_token": ""}, "validation_failed"),
        ({"token_expires_at": "2030-01-01T00:00:00"}, "validation_failed"),  # no zone
        ({"token_expires_at": "2020-01-01T00:00:00Z"}, "validation_failed"),  # expired
        ({"surprise": True}, "validation_failed"),
        ({"options": {"revoked": True}}, "token_rejected"),
        ({"options": {"failure_rate": 2}}, "validation_failed"),
        (
            {
                "provider": "mastodon",
                "instance_url": "https://m.example",
                "options": {"visibility": "x"},
            },
            "validation_failed",
        ),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    providers: Runtime,
    owner: Member,
    workspace: Workspace,
    body: dict[str, Any],
    code: str,
) -> None:
    response = await connect(client, owner, workspace, **body)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert await stored_accounts(providers) == []
    assert await notified(providers, owner.id, "account_connected") == 0


async def test_a_refused_or_unreachable_instance_stores_nothing(
    client: httpx.AsyncClient,
    providers: Runtime,
    owner: Member,
    workspace: Workspace,
    fake_mastodon: FakeMastodon,
) -> None:
    mastodon = {"provider": "mastodon", "instance_url": fake_mastodon.url, "options": None}

    wrong_token = await connect(client, owner, workspace, access_token="wrong", **mastodon)
    fake_mastodon.fail(503)
    down = await connect(client, owner, workspace, access_token=fake_mastodon.token, **mastodon)

    assert wrong_token.status_code == 422
    assert wrong_token.json()["error"]["code"] == "token_rejected"
    assert "access token is invalid" in wrong_token.json()["error"]["message"]
    assert down.status_code == 502
    assert down.json()["error"]["code"] == "provider_unavailable"
    assert await stored_accounts(providers) == []


@pytest.mark.parametrize(
    "instance_url",
    ["http://mastodon.example", "https://127.0.0.1", "https://localhost:8443", "https://10.1.2.3"],
)
async def test_in_production_an_instance_must_be_a_public_https_host(
    client: httpx.AsyncClient,
    providers: Runtime,
    owner: Member,
    workspace: Workspace,
    fake_mastodon: FakeMastodon,
    instance_url: str,
) -> None:
    providers.settings = providers.settings.model_copy(update={"env": Environment.PRODUCTION})

    response = await connect(
        client,
        owner,
        workspace,
        provider="mastodon",
        access_token=fake_mastodon.token,
        instance_url=instance_url,
        options=None,
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"] == ["body", "instance_url"]
    assert await stored_accounts(providers) == []
    assert fake_mastodon.state()["requests"] == {}
