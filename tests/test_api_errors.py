"""Bad input and security: every refusal is a 4xx in the one error shape, and changes nothing.

The ``client`` fixture re-raises any exception the app does not handle, so a 500 cannot pass
unnoticed here.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.models import IdempotencyKey, Notification, NotificationDelivery
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember, Member

API = "/api/v1/notifications"
ONE_MIB = 1_048_576


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The single error shape: {"error": {"code", "message", "details"}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    return error


async def count_rows(session: AsyncSession, model: type[Any]) -> int:
    """Count committed rows; the read transaction is ended so the next count sees new data."""
    try:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        await session.rollback()


def send_body(*recipients: Member, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_ids": [str(member.id) for member in recipients],
        "type": "new_mention",
        "title": "Hello",
        "message": "Someone said hi",
    }
    body.update(fields)
    return body


@pytest.fixture
async def admin(make_member: MakeMember) -> Member:
    return await make_member(role=Role.ADMIN)


@pytest.fixture
async def alice(make_member: MakeMember) -> Member:
    return await make_member()


# ---------------------------------------------------------------- malformed send bodies

_NAN_DATA = '{"x": NaN}'
_LONE_SURROGATE = '"\\ud800"'


def _raw(body: dict[str, Any], **replace_with_raw_json: str) -> bytes:
    """Serialize ``body`` with some values given as raw JSON text (for what json.dumps refuses)."""
    text = json.dumps({**body, **{key: f"@@{key}@@" for key in replace_with_raw_json}})
    for key, raw in replace_with_raw_json.items():
        text = text.replace(f'"@@{key}@@"', raw)
    return text.encode()


MALFORMED_SENDS: list[Any] = [
    pytest.param(lambda body: b'{"type": "new_mention",', 400, "invalid_json", id="invalid-json"),
    pytest.param(lambda body: b"not json at all", 400, "invalid_json", id="not-json"),
    pytest.param(lambda body: b"\xff\xfe\x00{", 400, None, id="not-utf8"),
    pytest.param(lambda body: b"[" * 50_000 + b"]" * 50_000, 400, None, id="nested-too-deep"),
    pytest.param(lambda body: b"", 422, "validation_failed", id="empty-body"),
    pytest.param(lambda body: b"[]", 422, "validation_failed", id="array-body"),
    pytest.param(lambda body: b"null", 422, "validation_failed", id="null-body"),
    pytest.param(
        lambda body: {**body, "colour": "red"}, 422, "validation_failed", id="unknown-field"
    ),
    pytest.param(
        lambda body: {**body, "type": "party"}, 422, "validation_failed", id="unknown-type"
    ),
    pytest.param(
        lambda body: {k: v for k, v in body.items() if k != "type"}, 422, None, id="no-type"
    ),
    pytest.param(lambda body: {**body, "channels": ["fax"]}, 422, None, id="unknown-channel"),
    pytest.param(lambda body: {**body, "channels": []}, 422, None, id="no-channels"),
    pytest.param(
        lambda body: {**body, "channels": ["email", "email"]}, 422, None, id="repeated-channel"
    ),
    pytest.param(
        lambda body: {**body, "user_ids": ["not-a-uuid"]}, 422, None, id="bad-uuid-in-body"
    ),
    pytest.param(lambda body: {**body, "user_ids": [42]}, 422, None, id="number-as-user-id"),
    pytest.param(lambda body: {**body, "user_ids": []}, 422, None, id="empty-user-ids"),
    pytest.param(lambda body: {**body, "user_ids": "everyone"}, 422, None, id="user-ids-not-list"),
    pytest.param(
        lambda body: {**body, "audience": "tenant"}, 422, None, id="user-ids-and-audience"
    ),
    pytest.param(
        lambda body: {k: v for k, v in body.items() if k != "user_ids"},
        422,
        None,
        id="no-recipients",
    ),
    pytest.param(
        lambda body: {**{k: v for k, v in body.items() if k != "user_ids"}, "audience": "world"},
        422,
        None,
        id="unknown-audience",
    ),
    pytest.param(lambda body: {**body, "title": "x" * 201}, 422, None, id="title-too-long"),
    pytest.param(lambda body: {**body, "title": "   "}, 422, None, id="blank-title"),
    pytest.param(lambda body: {**body, "title": ""}, 422, None, id="empty-title"),
    pytest.param(lambda body: {**body, "title": None}, 422, None, id="null-title"),
    pytest.param(lambda body: {**body, "title": "a\u0000b"}, 422, None, id="nul-in-title"),
    pytest.param(lambda body: {**body, "message": "x" * 10_001}, 422, None, id="message-too-long"),
    pytest.param(lambda body: {**body, "message": "\n\t "}, 422, None, id="blank-message"),
    pytest.param(
        lambda body: {**body, "data": {"blob": "x" * 16_400}}, 422, None, id="data-too-big"
    ),
    pytest.param(
        lambda body: {**body, "data": ["not", "an", "object"]}, 422, None, id="data-not-object"
    ),
    pytest.param(lambda body: {**body, "data": {"k": "a\u0000"}}, 422, None, id="nul-in-data"),
    pytest.param(lambda body: _raw(body, data=_NAN_DATA), 422, None, id="nan-in-data"),
    pytest.param(
        lambda body: _raw(body, data='{"x": -Infinity}'), 422, None, id="infinity-in-data"
    ),
    pytest.param(
        lambda body: _raw(body, data='{"x": ' + _LONE_SURROGATE + "}"),
        422,
        None,
        id="surrogate-in-data",
    ),
    pytest.param(
        lambda body: _raw(body, title=_LONE_SURROGATE), 422, None, id="surrogate-in-title"
    ),
    pytest.param(
        lambda body: {**body, "action_url": "https://example.com/" + "x" * 250},
        422,
        None,
        id="action-url-too-long",
    ),
    pytest.param(
        lambda body: {**body, "action_url": "javascript:alert(1)"},
        422,
        None,
        id="action-url-scheme",
    ),
    pytest.param(lambda body: {**body, "icon": ""}, 422, None, id="empty-icon"),
    pytest.param(
        lambda body: {**body, "dedupe_key": "k" * 201}, 422, None, id="dedupe-key-too-long"
    ),
]


@pytest.mark.parametrize(("make_body", "status", "code"), MALFORMED_SENDS)
async def test_malformed_send_is_refused_in_the_error_shape_and_creates_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    admin: Member,
    alice: Member,
    make_body: Any,
    status: int,
    code: str | None,
) -> None:
    body = make_body(send_body(alice))
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    response = await client.post(
        f"{API}/send",
        content=content,
        headers={**admin.headers, "Content-Type": "application/json"},
    )

    error = assert_error(response, status, code)
    if status == 422:
        assert error["code"] == "validation_failed"
        assert isinstance(error["details"], list)
        assert error["details"]
    assert await count_rows(session, Notification) == 0
    assert await count_rows(session, NotificationDelivery) == 0


async def test_the_limits_themselves_are_accepted(
    client: httpx.AsyncClient, admin: Member, alice: Member
) -> None:
    body = send_body(
        alice,
        title="t" * 200,
        message="m" * 10_000,
        data={"blob": "x" * 16_000},
        action_url="https://example.com/" + "x" * 235,
    )
    response = await client.post(f"{API}/send", json=body, headers=admin.headers)
    assert response.status_code == 202, response.text
    listed = (await client.get(API, headers=alice.headers)).json()["data"][0]
    assert listed["title"] == "t" * 200
    assert len(listed["action_url"]) == 255


async def test_a_json_body_sent_as_text_is_refused(
    client: httpx.AsyncClient, admin: Member, alice: Member
) -> None:
    response = await client.post(
        f"{API}/send",
        content=json.dumps(send_body(alice)).encode(),
        headers={**admin.headers, "Content-Type": "text/plain"},
    )
    assert_error(response, 422, "validation_failed")
    message = response.json()["error"]["message"]
    assert "Content-Type: application/json" in message
    assert "text/plain" in message


# ---------------------------------------------------------------- malformed input elsewhere

MALFORMED_REQUESTS: list[Any] = [
    pytest.param("POST", f"{API}/not-a-uuid/read", None, None, id="read-bad-uuid-in-path"),
    pytest.param("GET", f"{API}/12345/deliveries", None, None, id="ledger-bad-uuid-in-path"),
    pytest.param(
        "POST", f"{API}/read-multiple", {"ids": ["nope"]}, None, id="read-multiple-bad-uuid"
    ),
    pytest.param("POST", f"{API}/read-multiple", {"ids": []}, None, id="read-multiple-empty"),
    pytest.param("POST", f"{API}/read-multiple", {}, None, id="read-multiple-no-ids"),
    pytest.param(
        "POST",
        f"{API}/read-multiple",
        {"ids": [str(uuid.uuid4()) for _ in range(1001)]},
        None,
        id="read-multiple-too-many",
    ),
    pytest.param(
        "POST",
        f"{API}/read-multiple",
        {"ids": [], "all": True},
        None,
        id="read-multiple-unknown-field",
    ),
    pytest.param("GET", API, None, {"type": "party"}, id="feed-unknown-type"),
    pytest.param("GET", API, None, {"channel": "fax"}, id="feed-unknown-channel"),
    pytest.param("GET", API, None, {"is_read": "maybe"}, id="feed-bad-is-read"),
    pytest.param("GET", API, None, {"page": "0"}, id="feed-page-zero"),
    pytest.param("GET", API, None, {"page": "two"}, id="feed-page-not-number"),
    pytest.param("GET", API, None, {"per_page": "0"}, id="feed-per-page-zero"),
    pytest.param("GET", API, None, {"per_page": "101"}, id="feed-per-page-too-big"),
    pytest.param("GET", API, None, {"cursor": "garbage!"}, id="feed-bad-cursor"),
    pytest.param("GET", API, None, {"cursor": "bm90LWEtY3Vyc29y"}, id="feed-cursor-not-ours"),
    pytest.param("GET", API, None, {"cursor": "x" * 201}, id="feed-cursor-too-long"),
    pytest.param("GET", f"{API}/recent", None, {"limit": "0"}, id="recent-limit-zero"),
    pytest.param("GET", f"{API}/recent", None, {"limit": "51"}, id="recent-limit-too-big"),
    pytest.param("PUT", f"{API}/preferences", {"preferences": []}, None, id="preferences-empty"),
    pytest.param(
        "PUT",
        f"{API}/preferences",
        {"preferences": [{"notification_type": "party"}]},
        None,
        id="preferences-unknown-type",
    ),
    pytest.param(
        "PUT",
        f"{API}/preferences",
        {"preferences": [{"email_enabled": False}]},
        None,
        id="preferences-no-type",
    ),
    pytest.param(
        "PUT",
        f"{API}/preferences",
        {"preferences": [{"notification_type": "new_mention", "sms_enabled": True}]},
        None,
        id="preferences-unknown-flag",
    ),
    pytest.param(
        "PUT",
        f"{API}/preferences",
        {"preferences": [{"notification_type": "new_mention", "email_enabled": "sometimes"}]},
        None,
        id="preferences-flag-not-bool",
    ),
    pytest.param(
        "PUT",
        f"{API}/preferences",
        {
            "preferences": [
                {"notification_type": "new_mention"},
                {"notification_type": "new_mention"},
            ]
        },
        None,
        id="preferences-duplicate-type",
    ),
    pytest.param(
        "PATCH", "/api/v1/me/notification-preferences", {}, None, id="global-nothing-given"
    ),
    pytest.param(
        "PATCH",
        "/api/v1/me/notification-preferences",
        {"email_notifications_enabled": "sometimes"},
        None,
        id="global-not-bool",
    ),
    pytest.param(
        "PATCH",
        "/api/v1/me/notification-preferences",
        {"sms_notifications_enabled": False},
        None,
        id="global-unknown-field",
    ),
    pytest.param(
        "PUT",
        "/api/v1/tenant/notification-settings",
        {"policy": {"new_mention": {"fax": "forbidden"}}},
        None,
        id="tenant-unknown-channel",
    ),
    pytest.param(
        "PUT",
        "/api/v1/tenant/notification-settings",
        {"policy": {"new_mention": {"email": "maybe"}}},
        None,
        id="tenant-unknown-rule",
    ),
    pytest.param(
        "PUT",
        "/api/v1/tenant/notification-settings",
        {"policy": {"party": {"email": "forbidden"}}},
        None,
        id="tenant-unknown-type",
    ),
    pytest.param(
        "PUT",
        "/api/v1/tenant/notification-settings",
        {"policy": {"new_comment": {"email": "enforced"}}},
        None,
        id="tenant-enforce-not-enforceable",
    ),
    pytest.param(
        "PUT",
        "/api/v1/tenant/notification-settings",
        {"push_rollout": "some"},
        None,
        id="tenant-bad-rollout",
    ),
    pytest.param(
        "PUT",
        "/api/v1/tenant/notification-settings",
        {"push_rollout": "150"},
        None,
        id="tenant-rollout-over-100",
    ),
    pytest.param(
        "PUT",
        "/api/v1/tenant/notification-settings",
        {"quiet_hours": True},
        None,
        id="tenant-unknown-field",
    ),
    pytest.param(
        "POST",
        "/api/v1/auth/login",
        {"email": "not-an-email", "password": "x"},
        None,
        id="login-bad-email",
    ),
    pytest.param("POST", "/api/v1/auth/login", {"email": "a@b.io"}, None, id="login-no-password"),
    pytest.param(
        "POST",
        "/api/v1/auth/login",
        {"email": "a@b.io", "password": "x", "tenant_id": "acme"},
        None,
        id="login-bad-tenant-id",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "params"), MALFORMED_REQUESTS)
async def test_malformed_requests_get_422_in_the_error_shape(
    client: httpx.AsyncClient,
    make_member: MakeMember,
    method: str,
    path: str,
    body: Any,
    params: dict[str, str] | None,
) -> None:
    owner = await make_member(role=Role.OWNER)
    response = await client.request(method, path, json=body, params=params, headers=owner.headers)
    error = assert_error(response, 422, "validation_failed")
    assert isinstance(error["details"], list)


async def test_refused_tenant_settings_and_preferences_change_nothing(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member(role=Role.OWNER)
    settings_url = "/api/v1/tenant/notification-settings"
    before_settings = (await client.get(settings_url, headers=owner.headers)).json()
    before_preferences = (await client.get(f"{API}/preferences", headers=owner.headers)).json()

    refused = await client.put(
        settings_url,
        json={"policy": {"new_mention": {"email": "forbidden"}}, "push_rollout": "some"},
        headers=owner.headers,
    )
    assert_error(refused, 422)
    refused = await client.put(
        f"{API}/preferences",
        json={
            "preferences": [
                {"notification_type": "new_mention", "email_enabled": False},
                {"notification_type": "party"},
            ]
        },
        headers=owner.headers,
    )
    assert_error(refused, 422)

    assert (await client.get(settings_url, headers=owner.headers)).json() == before_settings
    after_preferences = (await client.get(f"{API}/preferences", headers=owner.headers)).json()
    assert after_preferences == before_preferences


async def test_bad_idempotency_key_is_refused(
    client: httpx.AsyncClient, session: AsyncSession, admin: Member, alice: Member
) -> None:
    response = await client.post(
        f"{API}/send",
        json=send_body(alice),
        headers={**admin.headers, "Idempotency-Key": "k" * 256},
    )
    assert_error(response, 422, "validation_failed")
    assert await count_rows(session, Notification) == 0


async def test_unknown_routes_and_methods_use_the_error_shape(
    client: httpx.AsyncClient, alice: Member
) -> None:
    assert_error(await client.get("/api/v1/nothing-here", headers=alice.headers), 404, "not_found")
    assert_error(
        await client.get(f"{API}/read-all", headers=alice.headers), 405, "method_not_allowed"
    )
    refused = await client.delete(f"{API}/preferences", headers=alice.headers)
    assert_error(refused, 405, "method_not_allowed")
    # Every method of the path, though GET and PUT are two routes.
    assert refused.headers["Allow"] == "GET, PUT"
    assert "allowed: GET, PUT" in refused.json()["error"]["message"]


# ---------------------------------------------------------------- authentication


def _bearer_routes(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """Every /api/v1 operation except the public ones (login; unsubscribe and data-export
    download links carry their own signed token, and so does accepting an invitation), with
    path parameters filled in."""
    routes = []
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/") or path == "/api/v1/auth/login":
            continue
        if "unsubscribe" in path or path.endswith("/download"):
            continue
        if path == "/api/v1/invitations/accept":
            continue
        concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        routes.extend((method.upper(), concrete) for method in operations)
    return routes


async def test_every_api_route_requires_a_token(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    routes = _bearer_routes(schema)
    assert len(routes) >= 14
    for method, path in routes:
        response = await client.request(method, path, json={})
        error = assert_error(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"] == "Bearer", (method, path)
        assert "Bearer" in error["message"]


BAD_AUTHORIZATION = [
    pytest.param("", id="empty"),
    pytest.param("Bearer", id="scheme-only"),
    pytest.param("Bearer    ", id="blank-token"),
    pytest.param("Basic dXNlcjpwYXNz", id="basic-auth"),
    pytest.param("Token abc", id="other-scheme"),
    pytest.param("Bearer no-separator", id="no-separator"),
    pytest.param("Bearer |secret", id="empty-id"),
    pytest.param("Bearer not-a-uuid|secret", id="id-not-uuid"),
    pytest.param(f"Bearer {uuid.uuid4()}|", id="empty-secret"),
    pytest.param(f"Bearer {uuid.uuid4()}|some-secret", id="unknown-token"),
    pytest.param("Bearer " + "x" * 5000, id="very-long"),
]


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
async def test_malformed_or_unknown_tokens_get_401_with_www_authenticate(
    client: httpx.AsyncClient, alice: Member, authorization: str
) -> None:
    for method, path in [("GET", "/api/v1/user"), ("GET", API), ("POST", f"{API}/read-all")]:
        response = await client.request(method, path, headers={"Authorization": authorization})
        assert_error(response, 401, "unauthenticated")
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_real_token_id_with_the_wrong_secret_is_refused(
    client: httpx.AsyncClient, alice: Member
) -> None:
    token_id, _, secret = alice.token.partition("|")
    tampered = f"{token_id}|{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    response = await client.get("/api/v1/user", headers={"Authorization": f"Bearer {tampered}"})
    assert_error(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    # The scheme is case-insensitive and the real token still works.
    ok = await client.get("/api/v1/user", headers={"Authorization": f"bearer {alice.token}"})
    assert ok.status_code == 200


# ---------------------------------------------------------------- authorization and tenancy


async def test_a_member_cannot_send(
    client: httpx.AsyncClient, session: AsyncSession, alice: Member, make_member: MakeMember
) -> None:
    bob = await make_member()
    response = await client.post(f"{API}/send", json=send_body(bob), headers=alice.headers)
    assert_error(response, 403, "forbidden")
    response = await client.post(
        f"{API}/send",
        json={"audience": "tenant", "type": "new_mention", "title": "x", "message": "y"},
        headers=alice.headers,
    )
    assert_error(response, 403, "forbidden")
    assert await count_rows(session, Notification) == 0


async def test_another_users_notification_is_not_found(
    client: httpx.AsyncClient, make_member: MakeMember, admin: Member, alice: Member
) -> None:
    colleague = await make_member()  # same tenant
    stranger = await make_member("globex", role=Role.OWNER)  # another tenant, even an owner
    sent = await client.post(f"{API}/send", json=send_body(alice), headers=admin.headers)
    notification_id = sent.json()["data"]["notifications"][0]["id"]

    for intruder in (colleague, stranger, admin):
        read = await client.post(f"{API}/{notification_id}/read", headers=intruder.headers)
        assert_error(read, 404, "not_found")
        ledger = await client.get(f"{API}/{notification_id}/deliveries", headers=intruder.headers)
        assert_error(ledger, 404, "not_found")
        many = await client.post(
            f"{API}/read-multiple", json={"ids": [notification_id]}, headers=intruder.headers
        )
        assert many.json() == {"data": {"updated": 0}}
        await client.post(f"{API}/read-all", headers=intruder.headers)

    # Alice's notification is untouched; a nonexistent id is just as unknown.
    unread = await client.get(f"{API}/unread-count", headers=alice.headers)
    assert unread.json() == {"data": {"count": 1}}
    assert (await client.get(API, headers=alice.headers)).json()["data"][0]["is_read"] is False
    missing = await client.post(f"{API}/{uuid.uuid4()}/read", headers=alice.headers)
    assert_error(missing, 404, "not_found")


async def test_cannot_send_to_users_of_another_tenant(
    client: httpx.AsyncClient, session: AsyncSession, make_member: MakeMember, admin: Member
) -> None:
    outsider = await make_member("globex")
    response = await client.post(f"{API}/send", json=send_body(outsider), headers=admin.headers)
    error = assert_error(response, 422, "validation_failed")
    assert str(outsider.id) in json.dumps(error["details"])
    assert await count_rows(session, Notification) == 0
    outsider_unread = await client.get(f"{API}/unread-count", headers=outsider.headers)
    assert outsider_unread.json() == {"data": {"count": 0}}


async def test_tenant_wide_send_stays_in_the_senders_tenant(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    globex_admin = await make_member("globex", role=Role.ADMIN)
    acme_member = await make_member("acme")
    response = await client.post(
        f"{API}/send",
        json={"audience": "tenant", "type": "new_mention", "title": "x", "message": "y"},
        headers=globex_admin.headers,
    )
    assert response.status_code == 202
    assert response.json()["data"]["created"] == 1
    unread = await client.get(f"{API}/unread-count", headers=acme_member.headers)
    assert unread.json() == {"data": {"count": 0}}


async def test_a_failed_send_writes_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    make_member: MakeMember,
    admin: Member,
    alice: Member,
) -> None:
    bob = await make_member()
    unknown = uuid.uuid4()
    body = send_body(alice, bob)
    body["user_ids"].insert(1, str(unknown))
    headers = {**admin.headers, "Idempotency-Key": "retry-me"}

    response = await client.post(f"{API}/send", json=body, headers=headers)

    error = assert_error(response, 422, "validation_failed")
    assert str(unknown) in json.dumps(error["details"])
    assert str(alice.id) not in json.dumps(error["details"])
    assert await count_rows(session, Notification) == 0
    assert await count_rows(session, NotificationDelivery) == 0
    assert await count_rows(session, IdempotencyKey) == 0
    for member in (alice, bob):
        unread = await client.get(f"{API}/unread-count", headers=member.headers)
        assert unread.json() == {"data": {"count": 0}}

    # The failure was not remembered: the corrected request goes through under the same key.
    fixed = await client.post(f"{API}/send", json=send_body(alice, bob), headers=headers)
    assert fixed.status_code == 202
    assert "Idempotent-Replayed" not in fixed.headers
    assert await count_rows(session, Notification) == 2


# ---------------------------------------------------------------- request size


async def test_a_body_over_one_mib_is_refused_with_413(
    client: httpx.AsyncClient, session: AsyncSession, admin: Member, alice: Member
) -> None:
    body = send_body(alice, data={"blob": "x" * (ONE_MIB + 10)})
    response = await client.post(f"{API}/send", json=body, headers=admin.headers)
    assert_error(response, 413, "payload_too_large")
    assert await count_rows(session, Notification) == 0


async def test_a_streamed_body_over_one_mib_is_refused_with_413(
    client: httpx.AsyncClient, session: AsyncSession, admin: Member, alice: Member
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit must hold while the body is being read.
        yield json.dumps(send_body(alice))[:-1].encode() + b', "data": {"blob": "'
        for _ in range(12):
            yield b"x" * 100_000
        yield b'"}}'

    response = await client.post(
        f"{API}/send",
        content=chunks(),
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert_error(response, 413, "payload_too_large")
    assert await count_rows(session, Notification) == 0


async def test_a_large_body_under_the_limit_is_not_refused_for_its_size(
    client: httpx.AsyncClient, admin: Member
) -> None:
    body = {"ids": [str(uuid.uuid4()) for _ in range(1000)]}
    assert len(json.dumps(body)) > 30_000
    response = await client.post(f"{API}/read-multiple", json=body, headers=admin.headers)
    assert response.status_code == 200
    assert response.json() == {"data": {"updated": 0}}


async def test_every_operation_documents_the_errors_it_can_answer(
    client: httpx.AsyncClient, alice: Member
) -> None:
    """/openapi.json lists the shared error answers, in the one error shape, for every
    operation: a client generated from it knows each status it may get."""
    schema = (await client.get("/openapi.json")).json()
    error = {"$ref": "#/components/schemas/Error"}
    assert schema["components"]["schemas"]["Error"]["required"] == ["error"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert responses["503"]["content"]["application/json"]["schema"] == error
            if path in ("/health", "/metrics"):
                continue
            for status in ("401", "403", "404", "422"):
                assert responses[status]["content"]["application/json"]["schema"] == error, (
                    method,
                    path,
                    status,
                )
            if "requestBody" in operation:
                assert {"400", "413"} <= set(responses), (method, path)
    # An answer of one of those statuses has that shape.
    missing = await client.get(f"{API}/{uuid.uuid4()}/deliveries", headers=alice.headers)
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"code", "message", "details"}
