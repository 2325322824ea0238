"""The SMS channel against a local Twilio-compatible server: sent, retried, failed, never raised."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
import uvicorn
from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from notiflow.config import Settings
from notiflow.delivery.channels import DeliveryContext, Outcome
from notiflow.delivery.sms import (
    DEFAULT_MAX_TEXT_CHARS,
    LogSmsGateway,
    SmsConfigurationError,
    SmsSender,
    TwilioSmsGateway,
    build_sms_body,
    build_sms_sender,
)
from notiflow.kit.ids import utcnow
from notiflow.models import Notification, User
from notiflow.notifications.types import NotificationChannel
from tests.conftest import make_settings

ACCOUNT_SID = "AC" + "0" * 30 + "42"
AUTH_TOKEN = "twilio-test-auth-token"
FROM_NUMBER = "+15005550006"
USER_NUMBER = "+14155550123"
PUBLIC_URL = "https://app.notiflow.example"


@dataclass
class Fault:
    status: int
    code: int | None = None
    message: str | None = None
    delay_seconds: float = 0.0


@dataclass
class FakeTwilio:
    """Twilio's Messages API as far as notiflow uses it: Basic auth, form fields, JSON errors."""

    base_url: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    requests: int = 0

    def fail_next(self, status: int, code: int | None = None, message: str | None = None) -> None:
        self.faults.append(Fault(status, code, message))

    def stall_next(self, seconds: float) -> None:
        self.faults.append(Fault(201, delay_seconds=seconds))

    async def create_message(self, request: Request) -> Response:
        self.requests += 1
        raw_body = await request.body()
        if self.faults:
            fault = self.faults.pop(0)
            await asyncio.sleep(fault.delay_seconds)
            if fault.status >= 300:
                if fault.code is None:
                    return PlainTextResponse("upstream trouble", status_code=fault.status)
                return _twilio_error(fault.status, fault.code, fault.message or "")
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return _twilio_error(401, 20003, "Authenticate")
        if request.path_params["sid"] != ACCOUNT_SID:
            return _twilio_error(404, 20404, "The requested resource was not found")
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return _twilio_error(400, 21620, "form-encoded body expected")
        form = {key: values[0] for key, values in parse_qs(raw_body.decode()).items()}
        if "To" not in form:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if "From" not in form and "MessagingServiceSid" not in form:
            return _twilio_error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
        if not form.get("Body"):
            return _twilio_error(400, 21602, "Message body is required.")
        sid = "SM" + uuid.uuid4().hex
        self.messages.append({"sid": sid, **form})
        return JSONResponse(
            {"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]},
            status_code=201,
        )


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


@pytest.fixture(scope="module")
async def twilio_server() -> AsyncIterator[FakeTwilio]:
    """One server for the module (uvicorn takes a while to stop); state is reset per test."""
    fake = FakeTwilio()
    app = Starlette(
        routes=[
            Route("/2010-04-01/Accounts/{sid}/Messages.json", fake.create_message, methods=["POST"])
        ]
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    # The test process keeps its own signal handlers.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def twilio(twilio_server: FakeTwilio) -> FakeTwilio:
    twilio_server.messages.clear()
    twilio_server.faults.clear()
    twilio_server.requests = 0
    return twilio_server


def twilio_settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "public_url": PUBLIC_URL,
        "sms_driver": "twilio",
        "sms_base_url": base_url,
        "sms_account_sid": ACCOUNT_SID,
        "sms_auth_token": AUTH_TOKEN,
        "sms_from": FROM_NUMBER,
        **overrides,
    }
    return make_settings(**values)


def make_user(*, phone_number: str | None = USER_NUMBER, verified: bool = True) -> User:
    return User(
        id=uuid.uuid4(),
        email="ada@acme.example",
        name="Ada",
        phone_number=phone_number,
        phone_verified_at=utcnow() if verified else None,
    )


def make_notification(
    *,
    title: str = "Post failed",
    message: str = "Your post to Mastodon could not be published.",
    action_url: str | None = "/posts/42",
) -> Notification:
    return Notification(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        type="post_failed",
        channel="in_app",
        title=title,
        message=message,
        action_url=action_url,
        event_id=uuid.uuid4(),
    )


def make_context(
    settings: Settings, *, user: User | None = None, notification: Notification | None = None
) -> DeliveryContext:
    return DeliveryContext(
        delivery_id=uuid.uuid4(),
        attempt=1,
        notification=notification or make_notification(),
        user=user or make_user(),
        settings=settings,
        sessionmaker=async_sessionmaker(),  # the SMS sender never touches the database
    )


@pytest.fixture
async def sender(twilio: FakeTwilio) -> AsyncIterator[SmsSender]:
    sms = build_sms_sender(twilio_settings(twilio.base_url))
    yield sms
    await sms.close()


async def test_sends_to_verified_number(twilio: FakeTwilio, sender: SmsSender) -> None:
    result = await sender.send(make_context(twilio_settings(twilio.base_url)))

    assert result.outcome is Outcome.SENT
    assert sender.channel is NotificationChannel.SMS
    [message] = twilio.messages
    assert result.provider_message_id == message["sid"]
    assert message["To"] == USER_NUMBER
    assert message["From"] == FROM_NUMBER
    assert message["Body"] == (
        f"Post failed: Your post to Mastodon could not be published.\n{PUBLIC_URL}/posts/42"
    )


async def test_messaging_service_sid_is_sent_instead_of_from(twilio: FakeTwilio) -> None:
    settings = twilio_settings(twilio.base_url, sms_from="MG" + "1" * 32)
    sms = build_sms_sender(settings)
    try:
        result = await sms.send(make_context(settings))
    finally:
        await sms.close()

    assert result.outcome is Outcome.SENT
    [message] = twilio.messages
    assert message["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in message


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (500, None, "Twilio HTTP 500"),
        (503, None, "Twilio HTTP 503"),
        (429, 20429, "Too Many Requests (code 20429)"),
    ],
)
async def test_provider_trouble_is_retried(
    twilio: FakeTwilio, sender: SmsSender, status: int, code: int | None, expected: str
) -> None:
    settings = twilio_settings(twilio.base_url)
    twilio.fail_next(status, code, "Too Many Requests" if code else None)

    first = await sender.send(make_context(settings))
    assert first.outcome is Outcome.RETRY
    assert first.error is not None
    assert expected in first.error
    assert twilio.messages == []

    second = await sender.send(make_context(settings))
    assert second.outcome is Outcome.SENT
    assert len(twilio.messages) == 1


async def test_server_down_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more: the connection is refused.
    settings = twilio_settings(f"http://127.0.0.1:{port}")
    sms = build_sms_sender(settings)
    try:
        result = await sms.send(make_context(settings))
    finally:
        await sms.close()

    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert "cannot reach Twilio" in result.error


async def test_no_reply_in_time_is_retried(twilio: FakeTwilio) -> None:
    settings = twilio_settings(twilio.base_url)
    gateway = TwilioSmsGateway(
        base_url=twilio.base_url,
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        sender=FROM_NUMBER,
        timeout_seconds=0.2,
    )
    sms = SmsSender(gateway)
    twilio.stall_next(0.5)
    try:
        result = await sms.send(make_context(settings))
    finally:
        await sms.close()

    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert "may have been sent" in result.error
    # And so it was: the slow server still took the message (why the error says so).
    for _ in range(200):
        if twilio.messages:
            break
        await asyncio.sleep(0.01)
    assert len(twilio.messages) == 1


async def test_rejected_number_fails_with_twilios_message(
    twilio: FakeTwilio, sender: SmsSender
) -> None:
    twilio.fail_next(400, 21211, "The 'To' number +1415555 is not a valid phone number.")

    result = await sender.send(make_context(twilio_settings(twilio.base_url)))

    assert result.outcome is Outcome.FAILED
    assert result.error == (
        "Twilio HTTP 400: The 'To' number +1415555 is not a valid phone number. (code 21211)"
    )
    assert twilio.messages == []


async def test_wrong_credentials_fail(twilio: FakeTwilio) -> None:
    settings = twilio_settings(twilio.base_url, sms_auth_token="not-the-token")
    sms = build_sms_sender(settings)
    try:
        result = await sms.send(make_context(settings))
    finally:
        await sms.close()

    assert result.outcome is Outcome.FAILED
    assert result.error == "Twilio HTTP 401: Authenticate (code 20003)"
    assert twilio.messages == []


@pytest.mark.parametrize(
    "user",
    [make_user(phone_number=None), make_user(verified=False), make_user(phone_number="")],
    ids=["no-number", "unverified", "empty-number"],
)
async def test_no_verified_phone_fails_without_sending(
    twilio: FakeTwilio, sender: SmsSender, user: User
) -> None:
    result = await sender.send(make_context(twilio_settings(twilio.base_url), user=user))

    assert result.outcome is Outcome.FAILED
    assert result.error == "no verified phone number"
    assert twilio.requests == 0


def test_long_message_is_shortened_but_the_link_is_whole() -> None:
    notification = make_notification(message="word " * 200, action_url="/inbox/items/7")

    body = build_sms_body(notification, PUBLIC_URL + "/")

    text, link = body.split("\n")
    assert len(text) <= DEFAULT_MAX_TEXT_CHARS
    assert text.startswith("Post failed: word word")
    assert text.endswith("...")
    assert link == f"{PUBLIC_URL}/inbox/items/7"


def test_body_without_link_and_with_absolute_link() -> None:
    assert build_sms_body(make_notification(action_url=None), PUBLIC_URL) == (
        "Post failed: Your post to Mastodon could not be published."
    )
    absolute = make_notification(action_url="https://mastodon.example/@ada/1")
    assert build_sms_body(absolute, PUBLIC_URL).endswith("\nhttps://mastodon.example/@ada/1")


@dataclass
class RecordingLogger:
    lines: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def info(self, event: str, /, **fields: Any) -> None:
        self.lines.append((event, fields))


async def test_log_driver_writes_one_line_per_message() -> None:
    settings = make_settings(public_url=PUBLIC_URL)  # sms_driver defaults to "log"
    built = build_sms_sender(settings)
    assert isinstance(built.gateway, LogSmsGateway)
    logger = RecordingLogger()
    sms = SmsSender(LogSmsGateway(logger))

    result = await sms.send(make_context(settings))
    await sms.close()

    assert result.outcome is Outcome.SENT
    assert result.provider_message_id is not None
    assert result.provider_message_id.startswith("log-")
    [(event, fields)] = logger.lines
    assert event == "sms_logged"
    assert fields["message_id"] == result.provider_message_id
    assert fields["to"] == "********0123"  # the number masked but recognisable
    assert fields["body"].endswith(f"\n{PUBLIC_URL}/posts/42")


async def test_log_driver_still_requires_a_verified_number() -> None:
    settings = make_settings()
    logger = RecordingLogger()
    sms = SmsSender(LogSmsGateway(logger))

    result = await sms.send(make_context(settings, user=make_user(verified=False)))

    assert result.outcome is Outcome.FAILED
    assert logger.lines == []


def test_twilio_driver_without_credentials_fails_at_build_time() -> None:
    settings = make_settings(sms_driver="twilio", sms_account_sid=ACCOUNT_SID)

    with pytest.raises(SmsConfigurationError, match="NOTIFLOW_SMS_AUTH_TOKEN, NOTIFLOW_SMS_FROM"):
        build_sms_sender(settings)
