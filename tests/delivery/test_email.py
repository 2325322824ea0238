"""The email channel against a real SMTP server: what arrives, how problems are classified,
and that one connection serves many messages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from sqlalchemy.ext.asyncio import async_sessionmaker

from notiflow.config import Settings
from notiflow.delivery.channels import DeliveryContext, Outcome, SendResult
from notiflow.delivery.email import EmailSender, render_email
from notiflow.delivery.unsubscribe import read_unsubscribe_token
from notiflow.models import Notification, User
from notiflow.notifications.types import TYPE_REGISTRY, Category, NotificationType
from tests.conftest import make_settings
from tests.delivery.conftest import SMTP_PUBLIC_URL, RecordingHandler, SmtpServer

ADA = "ada@acme.example"


def make_user(*, email: str = ADA, name: str = "Ada Lovelace", locale: str = "en") -> User:
    return User(id=uuid.uuid4(), email=email, name=name, locale=locale)


def make_notification(
    *,
    type: NotificationType = NotificationType.POST_FAILED,
    title: str = "Your post could not be published",
    message: str = "Mastodon answered 503.\nWe will not retry automatically.",
    action_url: str | None = "/posts/42",
) -> Notification:
    return Notification(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        type=type.value,
        channel="in_app",
        title=title,
        message=message,
        action_url=action_url,
        event_id=uuid.uuid4(),
    )


def make_context(
    settings: Settings,
    *,
    user: User | None = None,
    notification: Notification | None = None,
    delivery_id: uuid.UUID | None = None,
    attempt: int = 1,
    commit_point: Callable[[], Awaitable[None]] | None = None,
) -> DeliveryContext:
    return DeliveryContext(
        delivery_id=delivery_id or uuid.uuid4(),
        attempt=attempt,
        notification=notification or make_notification(),
        user=user or make_user(),
        settings=settings,
        sessionmaker=async_sessionmaker(),  # the email sender never touches the database
        commit_point=commit_point,
    )


@pytest.fixture
async def sender(smtp_server: SmtpServer) -> AsyncIterator[EmailSender]:
    email_sender = EmailSender(smtp_server.settings())
    yield email_sender
    await email_sender.close()


async def send(
    sender: EmailSender, smtp_server: SmtpServer, **context: Any
) -> tuple[SendResult, EmailMessage | None]:
    """Send one email; return the result and, when one arrived, the message as received."""
    before = len(smtp_server.received)
    result = await sender.send(make_context(smtp_server.settings(), **context))
    arrived = smtp_server.received[before:]
    return result, arrived[-1].message if arrived else None


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


# ---------------------------------------------------------------------------- what arrives


async def test_email_arrives_with_both_parts_and_one_click_unsubscribe(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    user = make_user()
    result, message = await send(sender, smtp_server, user=user)

    assert result.outcome is Outcome.SENT
    assert message is not None
    [received] = smtp_server.received
    assert received.rcpt_tos == [ADA]
    assert received.mail_from == "no-reply@notiflow.example"
    assert message["Subject"] == "Your post could not be published"
    assert message["From"] == "notiflow <no-reply@notiflow.example>"
    assert message["To"] == f"Ada Lovelace <{ADA}>"
    assert message["Message-ID"] == result.provider_message_id
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]

    # RFC 8058: an https URL in angle brackets on one line, and the one-click POST marker.
    header = message["List-Unsubscribe"]
    assert header.startswith(f"<{SMTP_PUBLIC_URL}/unsubscribe/")
    assert header.endswith(">")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_link = header[1:-1]
    target = read_unsubscribe_token(smtp_server.settings(), unsubscribe_link.rsplit("/", 1)[1])
    assert target is not None
    assert (target.user_id, target.notification_type) == (user.id, NotificationType.POST_FAILED)

    text, html = parts(message)
    for body in (text, html):
        assert "Your post could not be published" in body
        assert "Hi Ada Lovelace," in body
        assert "Mastodon answered 503." in body
        assert (
            "You receive this email because email notifications for “Post failed to publish”"
            in (body)
        )
        assert unsubscribe_link in body
    assert f"View post: {SMTP_PUBLIC_URL}/posts/42" in text
    assert f'<a href="{SMTP_PUBLIC_URL}/posts/42"' in html
    assert "Mastodon answered 503.<br>We will not retry automatically." in html
    assert '<html lang="en">' in html


async def test_azerbaijani_user_reads_azerbaijani(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    user = make_user(name="Aysel Məmmədova", locale="az")
    notification = make_notification(
        type=NotificationType.NEW_MENTION,
        title="Sizi paylaşımda qeyd etdilər",
        message="Leyla sizi «Yay kampaniyası» paylaşımında qeyd etdi.",
        action_url="/inbox/7",
    )
    result, message = await send(sender, smtp_server, user=user, notification=notification)

    assert result.outcome is Outcome.SENT
    assert message is not None
    assert message["Subject"] == "Sizi paylaşımda qeyd etdilər"
    assert message["To"] == f"Aysel Məmmədova <{ADA}>"
    assert message["Content-Language"] == "az"
    text, html = parts(message)
    for body in (text, html):
        assert "Salam, Aysel Məmmədova!" in body
        assert "Leyla sizi «Yay kampaniyası» paylaşımında qeyd etdi." in body
        assert "Bu e-poçtu ona görə aldınız ki" in body
        assert "“Sizi qeyd etdilər” bildirişləri üçün e-poçt aktivdir" in body
        assert "Abunəlikdən çıx" in body
        assert "Hi " not in body
        assert "Unsubscribe" not in body
    assert f"Gələnlər qutusunu aç: {SMTP_PUBLIC_URL}/inbox/7" in text
    assert '<html lang="az">' in html


async def test_markup_in_the_title_and_message_is_escaped_in_html(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    notification = make_notification(
        title="<script>alert('x')</script> & more", message='<img src=x onerror="alert(1)">'
    )
    _, message = await send(sender, smtp_server, notification=notification)

    assert message is not None
    assert message["Subject"] == "<script>alert('x')</script> & more"
    text, html = parts(message)
    assert "<script>" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    # The plain-text part is text: shown as written.
    assert "<script>alert('x')</script> & more" in text


async def test_a_display_name_cannot_add_headers_or_recipients(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    user = make_user(email="o'brien@acme.example", name="Eve\r\nBcc: eve@evil.example")

    result, message = await send(sender, smtp_server, user=user)

    assert result.outcome is Outcome.SENT
    assert message is not None
    assert message["Bcc"] is None
    assert message["To"] == '"Eve Bcc: eve@evil.example" <o\'brien@acme.example>'
    assert smtp_server.received[-1].rcpt_tos == ["o'brien@acme.example"]


@pytest.mark.parametrize(
    ("action_url", "expected"),
    [
        ("/posts/42?tab=comments&x=1", f"{SMTP_PUBLIC_URL}/posts/42?tab=comments&x=1"),
        ("https://mastodon.example/@ada/1", "https://mastodon.example/@ada/1"),
        (None, None),
        ("javascript:alert(1)", None),
    ],
)
def test_action_link(action_url: str | None, expected: str | None) -> None:
    settings = make_settings(public_url=SMTP_PUBLIC_URL + "/")
    _, text, html = render_email(
        make_notification(action_url=action_url), make_user(), "https://u.example/x", settings
    )

    if expected is None:
        assert "View post" not in text
        assert "View post" not in html
        assert "javascript:" not in html
    else:
        assert f"View post: {expected}" in text
        assert f'<a href="{expected.replace("&", "&amp;")}"' in html


@pytest.mark.parametrize("category", list(Category))
@pytest.mark.parametrize("locale", ["en", "az"])
def test_every_category_renders_in_both_languages(category: Category, locale: str) -> None:
    notification_type = next(t for t, spec in TYPE_REGISTRY.items() if spec.category is category)
    subject, text, html = render_email(
        make_notification(type=notification_type, title="T", message="M"),
        make_user(locale=locale),
        "https://notiflow.example/unsubscribe/token",
        make_settings(),
    )

    assert subject == "T"
    greeting = "Hi Ada Lovelace," if locale == "en" else "Salam, Ada Lovelace!"
    for body in (text, html):
        assert greeting in body
        assert "https://notiflow.example/unsubscribe/token" in body
    assert "{" not in text  # no untranslated placeholder left behind
    assert "{" not in html.split("</head>", 1)[1]


def test_unknown_locale_falls_back_to_english() -> None:
    _, text, _ = render_email(
        make_notification(), make_user(locale="de-DE"), "https://u.example/x", make_settings()
    )

    assert "Hi Ada Lovelace," in text
    assert "Unsubscribe: https://u.example/x" in text


async def test_every_attempt_of_a_delivery_carries_the_same_message_id(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    delivery_id = uuid.uuid4()
    first, _ = await send(sender, smtp_server, delivery_id=delivery_id, attempt=1)
    second, _ = await send(sender, smtp_server, delivery_id=delivery_id, attempt=2)
    other, _ = await send(sender, smtp_server)

    assert first.provider_message_id == f"<{delivery_id}@notiflow.example>"
    assert second.provider_message_id == first.provider_message_id
    assert other.provider_message_id != first.provider_message_id


# ---------------------------------------------------------------------------- classification


async def test_mailbox_unavailable_fails_for_good(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    smtp_server.refuse(ADA, "550 5.1.1 mailbox unavailable")

    result, message = await send(sender, smtp_server)

    assert result.outcome is Outcome.FAILED
    assert result.error == "550 5.1.1 mailbox unavailable"
    assert message is None


async def test_greylisting_is_retried(smtp_server: SmtpServer, sender: EmailSender) -> None:
    smtp_server.refuse(ADA, "451 4.7.1 greylisted, try again later")

    result, message = await send(sender, smtp_server)

    assert result.outcome is Outcome.RETRY
    assert result.error == "451 4.7.1 greylisted, try again later"
    assert message is None


async def test_a_refused_recipient_does_not_spoil_the_connection(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    smtp_server.refuse("gone@acme.example", "550 5.1.1 mailbox unavailable")

    refused, _ = await send(sender, smtp_server, user=make_user(email="gone@acme.example"))
    delivered, message = await send(sender, smtp_server)

    assert refused.outcome is Outcome.FAILED
    assert delivered.outcome is Outcome.SENT
    assert message is not None
    assert smtp_server.session_count == 1


async def test_message_rejected_at_data_fails(smtp_server: SmtpServer, sender: EmailSender) -> None:
    smtp_server.handler.data_reply = "554 5.7.1 message rejected as spam"

    result, _ = await send(sender, smtp_server)

    assert result.outcome is Outcome.FAILED
    assert result.error == "message rejected: 554 5.7.1 message rejected as spam"


async def test_message_deferred_at_data_is_retried(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    smtp_server.handler.data_reply = "452 4.3.1 insufficient system storage"

    result, _ = await send(sender, smtp_server)

    assert result.outcome is Outcome.RETRY
    assert result.error == "message deferred: 452 4.3.1 insufficient system storage"


async def test_server_down_is_retried(smtp_server: SmtpServer, sender: EmailSender) -> None:
    smtp_server.stop()

    result, _ = await send(sender, smtp_server)

    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert result.error.startswith("cannot reach the mail server")
    assert str(smtp_server.port) in result.error


async def test_silent_server_times_out_and_is_retried() -> None:
    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_timeout_seconds=0.2)
    sender = EmailSender(settings)
    try:
        result = await sender.send(make_context(settings))
    finally:
        await sender.close()
        server.close()
        await server.wait_closed()

    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert "timed out" in result.error.lower()


async def test_invalid_address_fails_without_a_connection(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    result, _ = await send(sender, smtp_server, user=make_user(email="not-an-address"))

    assert result.outcome is Outcome.FAILED
    assert result.error == "invalid email address: 'not-an-address'"
    assert sender.connections_opened == 0


# ---------------------------------------------------------------------------- the connection


async def test_one_connection_serves_many_messages(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    first, _ = await send(sender, smtp_server)
    second, _ = await send(sender, smtp_server)

    assert (first.outcome, second.outcome) == (Outcome.SENT, Outcome.SENT)
    assert [mail.session_number for mail in smtp_server.received] == [1, 1]
    assert smtp_server.session_count == 1
    assert sender.connections_opened == 1


async def test_concurrent_sends_share_the_connection_in_turn(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    results = await asyncio.gather(
        *(sender.send(make_context(smtp_server.settings())) for _ in range(5))
    )

    assert [result.outcome for result in results] == [Outcome.SENT] * 5
    assert len(smtp_server.received) == 5
    assert smtp_server.session_count == 1


async def test_reconnects_after_the_server_dropped_the_connection(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    first, _ = await send(sender, smtp_server)
    smtp_server.stop()
    smtp_server.start()
    await asyncio.sleep(0.05)  # the client notices the closed socket as soon as its loop runs

    second, message = await send(sender, smtp_server)

    assert (first.outcome, second.outcome) == (Outcome.SENT, Outcome.SENT)
    assert message is not None
    assert smtp_server.session_count == 2


async def test_recovers_when_the_server_comes_back(
    smtp_server: SmtpServer, sender: EmailSender
) -> None:
    smtp_server.stop()
    down, _ = await send(sender, smtp_server)
    smtp_server.start()

    up, message = await send(sender, smtp_server)

    assert down.outcome is Outcome.RETRY
    assert up.outcome is Outcome.SENT
    assert message is not None


async def test_idle_connection_is_probed_and_replaced_when_dead(
    smtp_server: SmtpServer,
) -> None:
    sender = EmailSender(smtp_server.settings(), probe_after_idle=0.0)
    try:
        first, _ = await send(sender, smtp_server)
        again, _ = await send(sender, smtp_server)  # probed with NOOP, still alive
        smtp_server.stop()
        smtp_server.start()
        last, _ = await send(sender, smtp_server)
    finally:
        await sender.close()

    assert [first.outcome, again.outcome, last.outcome] == [Outcome.SENT] * 3
    assert [mail.session_number for mail in smtp_server.received] == [1, 1, 2]


# ---------------------------------------------------------------------------- the commit point


class TakesDataWithoutReplying(RecordingHandler):
    """Takes the whole message (the final ``.`` included), then hangs up, or with ``silent``
    says nothing, instead of the ``250``: whether the message was taken cannot be known."""

    def __init__(self, *, silent: bool = False) -> None:
        super().__init__()
        self.silent = silent

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await super().handle_DATA(server, session, envelope)
        if self.silent:
            await asyncio.sleep(30)  # the client times out first; stopping the server cancels
        elif server.transport is not None:
            server.transport.close()
        return "250 2.0.0 OK: queued"  # never reaches the client


async def _send_with_commit_point(
    server: SmtpServer,
    *,
    smtp_timeout: float = 5.0,
    on_commit: Callable[[], Awaitable[None]] | None = None,
) -> tuple[SendResult, int]:
    """Send one email the way the delivery worker does; returns the result and how many times
    the commit point ran."""
    commits = 0

    async def commit_point() -> None:
        nonlocal commits
        commits += 1
        if on_commit is not None:
            await on_commit()

    sender = EmailSender(server.settings(smtp_timeout_seconds=smtp_timeout))
    try:
        result = await sender.send(
            make_context(server.settings(), commit_point=commit_point, delivery_id=uuid.uuid4())
        )
    finally:
        await sender.close()
    return result, commits


@pytest.mark.parametrize("silent", [False, True], ids=["hangs_up", "stays_silent"])
async def test_a_message_taken_without_a_reply_has_an_unknown_outcome(silent: bool) -> None:
    server = SmtpServer()
    server.handler = TakesDataWithoutReplying(silent=silent)
    server.start()
    try:
        result, commits = await _send_with_commit_point(server, smtp_timeout=0.5)
    finally:
        server.stop()

    assert result.outcome is Outcome.UNKNOWN
    assert commits == 1, "recorded as handed over before the final dot"
    assert result.error is not None
    assert result.error.startswith("the mail server took the message but gave no reply")
    assert ("timed out" in result.error.lower()) is silent
    assert len(server.received) == 1
    assert result.provider_message_id == server.received[0].message["Message-ID"]


async def test_a_connection_lost_before_the_final_dot_is_retried(smtp_server: SmtpServer) -> None:
    async def server_goes_away() -> None:
        smtp_server.stop()
        await asyncio.sleep(0.1)  # the client's loop sees the connection close

    result, commits = await _send_with_commit_point(smtp_server, on_commit=server_goes_away)

    assert result.outcome is Outcome.RETRY, "the server never had the whole message"
    assert commits == 1
    assert smtp_server.received == []


@pytest.mark.parametrize("refused_at", ["rcpt", "end_of_data"])
async def test_after_a_refusal_the_same_connection_sends_the_next_email(
    smtp_server: SmtpServer, sender: EmailSender, refused_at: str
) -> None:
    """As the delivery worker sends (with a commit point): after a refused recipient the
    transaction is ended (RSET), so the next email on the kept connection is not refused with
    "503 nested MAIL command"; a message refused at its end leaves the connection usable too."""

    async def commit_point() -> None:
        return None

    if refused_at == "rcpt":
        smtp_server.refuse(ADA, "550 5.1.1 mailbox unavailable")
    else:
        smtp_server.handler.data_reply = "554 5.7.1 rejected"
    settings = smtp_server.settings()
    first = await sender.send(make_context(settings, commit_point=commit_point))
    assert first.outcome is Outcome.FAILED
    smtp_server.handler.recipient_replies.clear()
    smtp_server.handler.data_reply = None

    second = await sender.send(make_context(settings, commit_point=commit_point))

    assert second.outcome is Outcome.SENT, second.error
    assert [mail.rcpt_tos for mail in smtp_server.received] == [[ADA]]
    assert sender.connections_opened == 1


# ---------------------------------------------------------------------------- login


@pytest.fixture
def smtp_server_with_login() -> Any:
    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (b"mailer", b"s3cret")
        return AuthResult(success=ok, handled=False)  # aiosmtpd then sends the 235 or 535

    server = SmtpServer(authenticator=authenticate, auth_require_tls=False)
    server.start()
    yield server
    server.stop()


async def test_logs_in_when_a_username_is_set(smtp_server_with_login: SmtpServer) -> None:
    settings = smtp_server_with_login.settings(smtp_username="mailer", smtp_password="s3cret")
    sender = EmailSender(settings)
    try:
        result = await sender.send(make_context(settings))
    finally:
        await sender.close()

    assert result.outcome is Outcome.SENT
    assert len(smtp_server_with_login.received) == 1
    assert smtp_server_with_login.handler.sessions[0].authenticated


async def test_refused_login_is_retried(smtp_server_with_login: SmtpServer) -> None:
    settings = smtp_server_with_login.settings(smtp_username="mailer", smtp_password="wrong")
    sender = EmailSender(settings)
    try:
        result = await sender.send(make_context(settings))
    finally:
        await sender.close()

    assert result.outcome is Outcome.RETRY
    assert result.error is not None
    assert result.error.startswith("SMTP login refused: 535")
    assert smtp_server_with_login.received == []


async def test_the_aiosmtplib_internals_the_commit_point_relies_on_are_there() -> None:
    """The commit point splits DATA with aiosmtplib's private command lock and reply flag
    (pyproject.toml keeps aiosmtplib below 6 for that). A version that renames them fails here,
    by name, rather than in the middle of a send."""
    server = SmtpServer()
    server.start()
    try:
        client = aiosmtplib.SMTP(hostname=server.host, port=server.port, timeout=5)
        await client.connect()
        try:
            protocol = client.protocol
            assert protocol is not None
            assert isinstance(protocol._command_lock, asyncio.Lock)
            assert isinstance(protocol._response_pending, bool)
        finally:
            client.close()
        result, commits = await _send_with_commit_point(server)
    finally:
        server.stop()
    assert result.outcome is Outcome.SENT, result.error
    assert commits == 1
    assert len(server.received) == 1, "one copy, sent through the split DATA exchange"
