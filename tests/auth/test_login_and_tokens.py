"""Logging in, and personal access tokens: hashed at rest, refused once revoked or expired."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import Membership, PersonalAccessToken
from notiflow.models.tenancy import Role
from notiflow.realtime.signing import channel_auth
from tests.conftest import TEST_PUSHER_KEY, TEST_PUSHER_SECRET, MakeMember

LOGIN = "/api/v1/auth/login"


async def login(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(LOGIN, json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_with_the_right_password_returns_a_working_token(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    alice = await make_member(email="alice@acme.example", password="correct horse", role=Role.ADMIN)

    response = await login(client, email="alice@acme.example", password="correct horse")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["token_type"] == "Bearer"
    assert data["user_id"] == str(alice.id)
    assert data["tenant_id"] == str(alice.tenant_id)
    token = data["token"]
    assert token != alice.token
    me = await client.get("/api/v1/user", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["data"]["email"] == "alice@acme.example"
    assert me.json()["data"]["role"] == "admin"
    # The earlier token keeps working alongside the new one.
    assert (await client.get("/api/v1/user", headers=alice.headers)).status_code == 200


async def test_login_ignores_the_case_and_surrounding_space_of_the_email(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    await make_member(email="bob@acme.example", password="pw")
    response = await login(client, email="Bob@ACME.example", password="pw")
    assert response.status_code == 200, response.text


async def test_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    await make_member(email="alice@acme.example", password="correct horse")
    passwordless = await make_member(email="nopass@acme.example")

    wrong_password = await login(client, email="alice@acme.example", password="wrong horse")
    unknown_email = await login(client, email="nobody@acme.example", password="correct horse")
    no_password_set = await login(client, email=passwordless.user.email, password="anything")

    for response in (wrong_password, unknown_email, no_password_set):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["code"] == "invalid_credentials"
    assert wrong_password.json() == unknown_email.json() == no_password_set.json()


async def test_login_picks_the_requested_tenant(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    acme = await make_member("acme", email="carol@example.com", password="pw")
    globex = await make_member("globex", email="carol@example.com", role=Role.OWNER)
    assert acme.id == globex.id  # one person, two organizations

    default = await login(client, email="carol@example.com", password="pw")
    chosen = await login(
        client, email="carol@example.com", password="pw", tenant_id=str(globex.tenant_id)
    )
    elsewhere = await login(
        client, email="carol@example.com", password="pw", tenant_id=str(uuid.uuid4())
    )

    assert default.json()["data"]["tenant_id"] == str(acme.tenant_id)
    token = chosen.json()["data"]["token"]
    me = (await client.get("/api/v1/user", headers=bearer(token))).json()["data"]
    assert me["tenant_id"] == str(globex.tenant_id)
    assert me["role"] == "owner"
    assert elsewhere.status_code == 401
    assert elsewhere.json()["error"]["code"] == "invalid_credentials"


async def test_tokens_are_stored_hashed(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    alice = await make_member(email="alice@acme.example", password="pw")
    response = await login(client, email="alice@acme.example", password="pw")
    issued = [alice.token, response.json()["data"]["token"]]

    rows = (await session.execute(select(PersonalAccessToken.__table__))).all()
    await session.rollback()

    assert len(rows) == 2
    stored = " ".join(str(value) for row in rows for value in row)
    for token in issued:
        token_id, _, secret = token.partition("|")
        assert uuid.UUID(token_id) in {row.id for row in rows}
        assert secret not in stored
        assert token not in stored
    for row in rows:
        assert len(row.token_hash) == 64
        int(row.token_hash, 16)  # a hex digest


async def test_a_revoked_token_stops_working(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    alice = await make_member(email="alice@acme.example", password="pw")
    spare = (await login(client, email="alice@acme.example", password="pw")).json()["data"]
    assert (await client.get("/api/v1/user", headers=alice.headers)).status_code == 200

    token_id = uuid.UUID(alice.token.partition("|")[0])
    await session.execute(delete(PersonalAccessToken).where(PersonalAccessToken.id == token_id))
    await commit_and_flush_effects(session)

    revoked = await client.get("/api/v1/user", headers=alice.headers)
    assert revoked.status_code == 401
    assert revoked.headers["WWW-Authenticate"] == "Bearer"
    assert revoked.json()["error"]["code"] == "unauthenticated"
    # Only that token: her other session keeps working.
    other = await client.get("/api/v1/user", headers=bearer(spare["token"]))
    assert other.status_code == 200


async def test_a_token_shows_when_it_was_last_used_written_at_most_once_a_minute(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    alice = await make_member()
    token_id = alice.token.partition("|")[0]

    async def listed() -> dict[str, Any]:
        response = await client.get("/api/v1/tokens", headers=alice.headers)
        assert response.status_code == 200, response.text
        [token] = [item for item in response.json()["data"] if item["id"] == token_id]
        return dict(token)

    async def stored() -> datetime | None:
        async with runtime.sessionmaker() as session:
            token = await session.get(PersonalAccessToken, uuid.UUID(token_id))
            assert token is not None
            return token.last_used_at

    assert await stored() is None  # issued, never used
    before = utcnow()
    first = await listed()
    # The listing request itself used the token, and says so.
    assert first["last_used_at"] is not None
    stamped = await stored()
    assert stamped is not None
    assert stamped >= before - timedelta(seconds=1)
    assert datetime.fromisoformat(first["last_used_at"]) == stamped

    # Within the minute: no write per request.
    for _ in range(3):
        assert (await client.get("/api/v1/user", headers=alice.headers)).status_code == 200
    assert await stored() == stamped

    # Older than a minute: the next request stamps it again.
    async with runtime.sessionmaker() as session:
        await session.execute(
            update(PersonalAccessToken)
            .where(PersonalAccessToken.id == uuid.UUID(token_id))
            .values(last_used_at=stamped - timedelta(minutes=2))
        )
        await commit_and_flush_effects(session)
    assert (await client.get("/api/v1/user", headers=alice.headers)).status_code == 200
    restamped = await stored()
    assert restamped is not None
    assert restamped >= stamped


async def test_an_expired_token_stops_working(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    alice = await make_member()
    token_id = uuid.UUID(alice.token.partition("|")[0])
    await session.execute(
        update(PersonalAccessToken)
        .where(PersonalAccessToken.id == token_id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await commit_and_flush_effects(session)

    response = await client.get("/api/v1/user", headers=alice.headers)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "token expired"


async def test_a_token_of_a_removed_member_stops_working(
    client: httpx.AsyncClient, make_member: MakeMember, session: AsyncSession
) -> None:
    alice = await make_member()
    await session.execute(
        delete(Membership).where(
            Membership.user_id == alice.id, Membership.tenant_id == alice.tenant_id
        )
    )
    await commit_and_flush_effects(session)

    response = await client.get("/api/v1/user", headers=alice.headers)
    assert response.status_code == 401


async def test_channel_signatures_follow_the_tokens_tenant_not_every_tenant_of_the_user(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    """A user in two tenants, holding a token of the second, asks to subscribe to the first's
    channels: refused, or that token would read another organization's live events."""
    in_acme = await make_member("acme", email="dana@example.com")
    in_globex = await make_member("globex", email="dana@example.com")
    assert in_acme.id == in_globex.id
    socket_id = "123.456"

    async def authorize(member_token: str, channel: str) -> httpx.Response:
        return await client.post(
            "/broadcasting/auth",
            headers=bearer(member_token),
            data={"socket_id": socket_id, "channel_name": channel},
        )

    for prefix in ("private-tenant.", "presence-tenant.", "private-encrypted-tenant."):
        other = await authorize(in_globex.token, f"{prefix}{in_acme.tenant_id}")
        assert other.status_code == 403, (prefix, other.text)
        assert other.json()["error"]["code"] == "forbidden"
        own_channel = f"{prefix}{in_globex.tenant_id}"
        own = await authorize(in_globex.token, own_channel)
        assert own.status_code == 200, (prefix, own.text)
        data = own.json().get("channel_data")
        expected = channel_auth(TEST_PUSHER_KEY, TEST_PUSHER_SECRET, socket_id, own_channel, data)
        assert own.json()["auth"] == expected
    # The same person's token of the first tenant opens the first tenant's channel.
    acme = await authorize(in_acme.token, f"private-tenant.{in_acme.tenant_id}")
    assert acme.status_code == 200, acme.text
