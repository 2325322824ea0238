"""Web Push: the sender against a local push service that verifies VAPID and decrypts like a
browser, the subscription routes, and `notiflow webpush keys`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02, b64urlencode
from sqlalchemy import select

from notiflow.config import Environment, Settings
from notiflow.delivery.channels import DeliveryContext, Outcome, SendResult
from notiflow.delivery.webpush import (
    MAX_PAYLOAD_BYTES,
    MAX_SUBSCRIPTIONS_PER_USER,
    NO_SUBSCRIPTIONS,
    NOT_CONFIGURED,
    DeviceOutcome,
    WebPushSender,
    b64url_decode,
    classify_status,
    generate_vapid_keys,
    save_subscription,
)
from notiflow.kit.ids import new_id, utcnow
from notiflow.main.app import create_app
from notiflow.main.runtime import Runtime
from notiflow.models import Notification, PushSubscription
from tests.conftest import MakeMember, Member, make_settings
from tests.delivery.fake_push_service import BrowserSubscription, FakePushService

VAPID = generate_vapid_keys()
SUBJECT = "mailto:ops@notiflow.example"
PUBLIC_URL = "https://app.notiflow.example"
NOTIFLOW = str(Path(sys.executable).parent / "notiflow")
URL = "/api/v1/push-subscriptions"


# --------------------------------------------------------------------------- fixtures, helpers


@pytest.fixture
async def push_service() -> AsyncIterator[FakePushService]:
    service = FakePushService()
    await service.start()
    yield service
    await service.close()


@pytest.fixture
async def sender() -> AsyncIterator[WebPushSender]:
    sender = WebPushSender(timeout_seconds=5.0)
    yield sender
    await sender.close()


def push_settings(runtime: Runtime, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": runtime.settings.database_url,
        "vapid_public_key": VAPID.public_key,
        "vapid_private_key": VAPID.private_key,
        "vapid_subject": SUBJECT,
        "webpush_ttl_seconds": 3600,
        "public_url": PUBLIC_URL,
    }
    values.update(overrides)
    return make_settings(**values)


def make_notification(member: Member, type: str = "new_comment", **fields: Any) -> Notification:
    values: dict[str, Any] = {
        "id": new_id(),
        "tenant_id": member.tenant_id,
        "user_id": member.id,
        "type": type,
        "channel": "in_app",
        "title": "New comment on your post",
        "message": "Ana: love this one!",
        "data": {"post_id": "p-1"},
        "action_url": "/posts/p-1",
        "icon": "engagement",
        "read_at": None,
        "created_at": utcnow(),
        "event_id": new_id(),
    }
    values.update(fields)
    return Notification(**values)


def delivery_context(
    runtime: Runtime, member: Member, notification: Notification, settings: Settings
) -> DeliveryContext:
    return DeliveryContext(
        delivery_id=new_id(),
        attempt=1,
        notification=notification,
        user=member.user,
        settings=settings,
        sessionmaker=runtime.sessionmaker,
    )


async def add_device(runtime: Runtime, member: Member, device: BrowserSubscription) -> uuid.UUID:
    async with runtime.sessionmaker() as session:
        subscription = await save_subscription(
            session,
            user_id=member.id,
            endpoint=device.endpoint,
            p256dh=device.p256dh,
            auth=device.auth,
            user_agent="Mozilla/5.0 (test)",
        )
        await session.commit()
    return subscription.id


async def stored(runtime: Runtime) -> dict[str, PushSubscription]:
    async with runtime.sessionmaker() as session:
        rows = (await session.scalars(select(PushSubscription))).all()
    return {row.endpoint: row for row in rows}


async def send(
    runtime: Runtime,
    sender: WebPushSender,
    member: Member,
    notification: Notification | None = None,
    **settings: Any,
) -> SendResult:
    notification = notification or make_notification(member)
    context = delivery_context(runtime, member, notification, push_settings(runtime, **settings))
    return await sender.send(context)


# --------------------------------------------------------------------------- the sender


async def test_push_arrives_encrypted_signed_and_decryptable(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    device = push_service.subscribe(application_server_key=VAPID.public_key)
    await add_device(runtime, member, device)
    notification = make_notification(member)

    result = await send(runtime, sender, member, notification)

    assert push_service.rejections == []
    assert result.outcome is Outcome.SENT
    [push] = push_service.received_by(device)
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith(f"{push_service.origin}/message/")
    payload = push.json()
    assert payload["id"] == str(notification.id)
    assert payload["title"] == "New comment on your post"
    assert payload["message"] == "Ana: love this one!"
    assert payload["type"] == "new_comment"
    assert payload["data"] == {"post_id": "p-1"}
    assert payload["is_read"] is False
    assert payload["url"] == f"{PUBLIC_URL}/posts/p-1"
    assert push.headers["ttl"] == "3600"
    assert push.headers["urgency"] == "normal"
    assert push.headers["content-encoding"] == "aes128gcm"
    assert push.claims["aud"] == push_service.origin
    assert push.claims["sub"] == SUBJECT
    assert push.vapid_public_key == VAPID.public_key
    assert push.body_size <= 4096
    assert (await stored(runtime))[device.endpoint].last_used_at is not None


async def test_billing_and_security_types_are_high_urgency(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    device = push_service.subscribe()
    await add_device(runtime, member, device)

    for notification_type in ("payment_failed", "account_token_expired"):
        notification = make_notification(member, notification_type, title="Payment failed")
        assert (await send(runtime, sender, member, notification)).outcome is Outcome.SENT

    assert [push.headers["urgency"] for push in push_service.received] == ["high", "high"]


async def test_every_device_of_the_user_gets_it_and_only_theirs(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member, other = await make_member(), await make_member()
    laptop, phone = push_service.subscribe(), push_service.subscribe()
    stranger = push_service.subscribe()
    await add_device(runtime, member, laptop)
    await add_device(runtime, member, phone)
    await add_device(runtime, other, stranger)
    notification = make_notification(member)

    result = await send(runtime, sender, member, notification)

    assert result == SendResult.sent("accepted by 2 of 2 devices")
    for device in (laptop, phone):
        [push] = push_service.received_by(device)
        assert push.json()["id"] == str(notification.id)
    assert push_service.received_by(stranger) == []
    subscriptions = await stored(runtime)
    assert subscriptions[laptop.endpoint].last_used_at is not None
    assert subscriptions[stranger.endpoint].last_used_at is None


async def test_a_gone_device_is_deleted_while_the_other_still_receives(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    gone = push_service.subscribe(status=410)
    alive = push_service.subscribe()
    await add_device(runtime, member, gone)
    await add_device(runtime, member, alive)

    result = await send(runtime, sender, member)

    assert result.outcome is Outcome.SENT
    assert len(push_service.received_by(alive)) == 1
    assert push_service.rejections == []  # the 410 came after a valid request
    assert set(await stored(runtime)) == {alive.endpoint}


async def test_all_devices_gone_is_skipped_and_removes_them(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    await add_device(runtime, member, push_service.subscribe(status=410))
    await add_device(runtime, member, push_service.subscribe(status=404))

    result = await send(runtime, sender, member)

    assert result == SendResult.skipped("push_subscriptions_gone (404/410)")
    assert await stored(runtime) == {}
    # The next attempt finds nothing left to push to.
    assert await send(runtime, sender, member) == SendResult.skipped(NO_SUBSCRIPTIONS)


async def test_server_errors_everywhere_mean_retry(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    await add_device(runtime, member, push_service.subscribe(status=500))
    await add_device(runtime, member, push_service.subscribe(status=503, retry_after="120"))

    result = await send(runtime, sender, member)

    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert "500 Internal Server Error" in result.error
    assert "503 Service Unavailable (Retry-After: 120)" in result.error
    assert len(await stored(runtime)) == 2  # kept for the retry


async def test_rate_limited_is_retry_and_other_client_errors_fail(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member, other = await make_member(), await make_member()
    await add_device(runtime, member, push_service.subscribe(status=429, retry_after="30"))
    await add_device(runtime, other, push_service.subscribe(status=400))

    limited = await send(runtime, sender, member)
    refused = await send(runtime, sender, other)

    assert limited.outcome is Outcome.RETRY
    assert limited.error is not None
    assert "429 Too Many Requests (Retry-After: 30)" in limited.error
    assert refused.outcome is Outcome.FAILED
    assert refused.error is not None
    assert "400 Bad Request" in refused.error
    assert len(await stored(runtime)) == 2  # neither is a dead device


async def test_one_retryable_and_one_refused_device_is_retry(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    await add_device(runtime, member, push_service.subscribe(status=403))
    await add_device(runtime, member, push_service.subscribe(status=502))

    result = await send(runtime, sender, member)

    assert result.outcome is Outcome.RETRY


async def test_an_unreachable_push_service_is_retry(
    runtime: Runtime, make_member: MakeMember, push_service: FakePushService
) -> None:
    member = await make_member()
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    device = push_service.subscribe()
    device.endpoint = f"http://127.0.0.1:{port}/push/nobody"
    await add_device(runtime, member, device)
    sender = WebPushSender(timeout_seconds=2.0)
    try:
        result = await send(runtime, sender, member)
    finally:
        await sender.close()

    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert "ConnectError" in result.error


async def test_no_subscriptions_is_skipped_with_a_reason(
    runtime: Runtime, make_member: MakeMember, sender: WebPushSender
) -> None:
    member = await make_member()

    result = await send(runtime, sender, member)

    assert result == SendResult.skipped(NO_SUBSCRIPTIONS)


async def test_without_vapid_keys_nothing_is_sent(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    await add_device(runtime, member, push_service.subscribe())

    result = await send(runtime, sender, member, vapid_public_key=None, vapid_private_key=None)

    assert result == SendResult.skipped(NOT_CONFIGURED)
    assert push_service.requests == 0


async def test_mismatched_or_broken_vapid_settings_fail_without_sending(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    await add_device(runtime, member, push_service.subscribe())

    mismatched = await send(
        runtime, sender, member, vapid_public_key=generate_vapid_keys().public_key
    )
    broken = await send(runtime, sender, member, vapid_private_key="not-a-key")
    bad_subject = await send(runtime, sender, member, vapid_subject="ops team")

    assert mismatched.outcome is Outcome.FAILED
    assert "is not the public half" in (mismatched.error or "")
    assert broken.outcome is Outcome.FAILED
    assert "NOTIFLOW_VAPID_PRIVATE_KEY" in (broken.error or "")
    assert bad_subject.outcome is Outcome.FAILED
    assert "NOTIFLOW_VAPID_SUBJECT" in (bad_subject.error or "")
    assert push_service.requests == 0


async def test_a_subscription_made_with_another_server_key_is_refused_not_deleted(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    device = push_service.subscribe(application_server_key=generate_vapid_keys().public_key)
    await add_device(runtime, member, device)

    result = await send(runtime, sender, member)

    assert result.outcome is Outcome.FAILED
    assert "403 Forbidden" in (result.error or "")
    assert device.endpoint in await stored(runtime)


async def test_a_large_notification_is_shortened_to_fit_one_push(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    device = push_service.subscribe()
    await add_device(runtime, member, device)
    notification = make_notification(
        member, message="é" * 9000, data={"blob": "x" * 15000}, action_url="https://x.example/a"
    )

    result = await send(runtime, sender, member, notification)

    assert result.outcome is Outcome.SENT
    assert push_service.rejections == []
    [push] = push_service.received_by(device)
    assert len(push.payload) <= MAX_PAYLOAD_BYTES
    payload = push.json()
    assert payload["truncated"] is True
    assert payload["data"] is None
    assert payload["message"].startswith("é" * 100)
    assert payload["message"].endswith("…")
    assert payload["url"] == "https://x.example/a"


async def test_vapid_token_is_reused_per_push_service(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    await add_device(runtime, member, push_service.subscribe())
    await add_device(runtime, member, push_service.subscribe())

    await send(runtime, sender, member)
    await send(runtime, sender, member)

    tokens = {push.headers["authorization"] for push in push_service.received}
    assert len(push_service.received) == 4
    assert len(tokens) == 1


def test_status_classification() -> None:
    assert [classify_status(code) for code in (200, 201, 202)] == [DeviceOutcome.ACCEPTED] * 3
    assert [classify_status(code) for code in (404, 410)] == [DeviceOutcome.GONE] * 2
    assert [classify_status(code) for code in (408, 429, 500, 502, 503)] == [
        DeviceOutcome.RETRYABLE
    ] * 5
    assert [classify_status(code) for code in (301, 400, 401, 403, 413)] == [
        DeviceOutcome.REJECTED
    ] * 5


# --------------------------------------------------------------------------- the routes


async def test_register_list_and_send_through_the_api(
    runtime: Runtime,
    make_member: MakeMember,
    client: httpx.AsyncClient,
    push_service: FakePushService,
    sender: WebPushSender,
) -> None:
    member = await make_member()
    device = push_service.subscribe(application_server_key=VAPID.public_key)

    response = await client.post(
        URL,
        json=device.to_json(),
        headers={**member.headers, "User-Agent": "Mozilla/5.0 (X11; Linux) Firefox/128.0"},
    )

    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["endpoint"] == device.endpoint
    uuid.UUID(data["id"])
    assert data["created_at"].endswith("Z")
    listed = (await client.get(URL, headers=member.headers)).json()["data"]
    assert [(item["id"], item["user_agent"]) for item in listed] == [
        (data["id"], "Mozilla/5.0 (X11; Linux) Firefox/128.0")
    ]
    assert (await send(runtime, sender, member)).outcome is Outcome.SENT
    assert len(push_service.received_by(device)) == 1


async def test_re_registering_updates_keys_and_moves_between_users(
    runtime: Runtime,
    make_member: MakeMember,
    client: httpx.AsyncClient,
    push_service: FakePushService,
) -> None:
    first, second = await make_member(), await make_member()
    device = push_service.subscribe()
    created = await client.post(URL, json=device.to_json(), headers=first.headers)
    renewed = push_service.subscribe()
    renewed.endpoint = device.endpoint  # same endpoint, new keys (the browser re-subscribed)

    again = await client.post(URL, json=renewed.to_json(), headers=first.headers)

    assert again.status_code == 201
    assert again.json()["data"]["id"] == created.json()["data"]["id"]
    [row] = (await stored(runtime)).values()
    assert (row.p256dh, row.auth) == (renewed.p256dh, renewed.auth)

    moved = await client.post(URL, json=renewed.to_json(), headers=second.headers)

    assert moved.status_code == 201
    assert (await client.get(URL, headers=first.headers)).json()["data"] == []
    assert [
        item["endpoint"] for item in (await client.get(URL, headers=second.headers)).json()["data"]
    ] == [device.endpoint]


async def test_delete_removes_only_the_callers_subscription(
    runtime: Runtime,
    make_member: MakeMember,
    client: httpx.AsyncClient,
    push_service: FakePushService,
) -> None:
    owner, stranger = await make_member(), await make_member("other-tenant")
    device = push_service.subscribe()
    await client.post(URL, json=device.to_json(), headers=owner.headers)

    foreign = await client.request(
        "DELETE", URL, json={"endpoint": device.endpoint}, headers=stranger.headers
    )
    assert foreign.status_code == 404
    assert foreign.json()["error"]["code"] == "not_found"
    assert device.endpoint in await stored(runtime)

    deleted = await client.request("DELETE", URL, json=device.to_json(), headers=owner.headers)
    assert deleted.status_code == 204
    assert await stored(runtime) == {}

    missing = await client.request(
        "DELETE", URL, json={"endpoint": device.endpoint}, headers=owner.headers
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"endpoint": "ftp://push.example.com/x"}, "endpoint"),
        ({"endpoint": "http://push.example.com/x"}, "endpoint"),
        ({"endpoint": "https://10.0.0.5/x"}, "endpoint"),
        ({"endpoint": "https://user:pw@push.example.com/x"}, "endpoint"),
        ({"endpoint": "not a url"}, "endpoint"),
        ({"p256dh": "BAAA"}, "keys.p256dh"),  # 3 bytes
        ({"p256dh": "A" * 44}, "keys.p256dh"),  # 33 bytes: a compressed point
        ({"p256dh": "BP" + "A" * 85}, "keys.p256dh"),  # 65 bytes, not on the curve
        ({"p256dh": "!!not base64!!"}, "keys.p256dh"),
        ({"auth": "AAAAAAAAAAA"}, "keys.auth"),  # 8 bytes
        ({"auth": None}, "keys.auth"),
        ({"expirationTime": 1000}, "expirationTime"),  # 1970: already expired
    ],
)
async def test_bad_subscriptions_are_422(
    runtime: Runtime,
    make_member: MakeMember,
    client: httpx.AsyncClient,
    push_service: FakePushService,
    change: dict[str, Any],
    where: str,
) -> None:
    member = await make_member()
    body = push_service.subscribe().to_json()
    for key, value in change.items():
        if key in ("p256dh", "auth"):
            body["keys"][key] = value
        else:
            body[key] = value

    response = await client.post(URL, json=body, headers=member.headers)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["message"].startswith(f"{where}:")
    assert await stored(runtime) == {}


async def test_missing_keys_and_no_token(
    make_member: MakeMember, client: httpx.AsyncClient, push_service: FakePushService
) -> None:
    member = await make_member()
    device = push_service.subscribe()

    no_keys = await client.post(URL, json={"endpoint": device.endpoint}, headers=member.headers)
    anonymous = await client.post(URL, json=device.to_json())

    assert no_keys.status_code == 422
    assert no_keys.json()["error"]["message"].startswith("keys:")
    assert anonymous.status_code == 401
    assert (await client.get(URL)).status_code == 401


async def test_production_refuses_local_endpoints(
    runtime: Runtime, make_member: MakeMember, push_service: FakePushService
) -> None:
    member = await make_member()
    production = dataclasses.replace(
        runtime,
        settings=push_settings(runtime, env=Environment.PRODUCTION, smtp_host="mail.example.com"),
    )
    transport = httpx.ASGITransport(app=create_app(runtime=production))
    async with httpx.AsyncClient(transport=transport, base_url="http://notiflow.test") as client:
        response = await client.post(
            URL, json=push_service.subscribe().to_json(), headers=member.headers
        )

    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("endpoint:")


async def test_a_user_keeps_at_most_the_most_recent_subscriptions(
    runtime: Runtime, make_member: MakeMember, push_service: FakePushService
) -> None:
    member = await make_member()
    devices = [push_service.subscribe() for _ in range(MAX_SUBSCRIPTIONS_PER_USER + 2)]
    for device in devices:
        await add_device(runtime, member, device)

    kept = await stored(runtime)

    assert len(kept) == MAX_SUBSCRIPTIONS_PER_USER
    assert devices[-1].endpoint in kept
    assert devices[0].endpoint not in kept


async def test_vapid_public_key_route(
    runtime: Runtime, make_member: MakeMember, client: httpx.AsyncClient
) -> None:
    member = await make_member()
    missing = await client.get(f"{URL}/vapid-public-key", headers=member.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "webpush_not_configured"
    assert "notiflow webpush keys" in missing.json()["error"]["message"]
    assert (await client.get(f"{URL}/vapid-public-key")).status_code == 401

    for settings in (
        push_settings(runtime),
        push_settings(runtime, vapid_public_key=None),  # derived from the private key
    ):
        configured = dataclasses.replace(runtime, settings=settings)
        transport = httpx.ASGITransport(app=create_app(runtime=configured))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as keyed:
            response = await keyed.get(f"{URL}/vapid-public-key", headers=member.headers)
        assert response.status_code == 200
        assert response.json() == {"data": {"public_key": VAPID.public_key}}
        assert len(b64url_decode(response.json()["data"]["public_key"])) == 65

    broken = dataclasses.replace(
        runtime, settings=push_settings(runtime, vapid_public_key=generate_vapid_keys().public_key)
    )
    transport = httpx.ASGITransport(app=create_app(runtime=broken))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as keyed:
        response = await keyed.get(f"{URL}/vapid-public-key", headers=member.headers)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webpush_misconfigured"


# --------------------------------------------------------------------------- the CLI


async def test_cli_keys_sign_pushes_the_push_service_accepts(
    runtime: Runtime,
    make_member: MakeMember,
    push_service: FakePushService,
    sender: WebPushSender,
    tmp_path: Path,
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("NOTIFLOW_")}
    process = await asyncio.create_subprocess_exec(
        NOTIFLOW,
        "webpush",
        "keys",
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    [line] = stdout.decode().strip().splitlines()
    keys = json.loads(line)
    assert len(b64url_decode(keys["public_key"])) == 65
    assert b64url_decode(keys["public_key"])[0] == 0x04
    assert keys["env"] == (
        f"NOTIFLOW_VAPID_PUBLIC_KEY={keys['public_key']}\n"
        f"NOTIFLOW_VAPID_PRIVATE_KEY={keys['private_key']}"
    )
    # pywebpush / py-vapid take the private key as printed.
    vapid = Vapid02.from_string(keys["private_key"])
    assert (
        b64urlencode(
            vapid.public_key.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )
        == keys["public_key"]
    )

    member = await make_member()
    device = push_service.subscribe(application_server_key=keys["public_key"])
    await add_device(runtime, member, device)
    result = await send(
        runtime,
        sender,
        member,
        vapid_public_key=keys["public_key"],
        vapid_private_key=keys["private_key"],
    )

    assert result.outcome is Outcome.SENT
    assert push_service.rejections == []
    [push] = push_service.received_by(device)
    assert push.vapid_public_key == keys["public_key"]
