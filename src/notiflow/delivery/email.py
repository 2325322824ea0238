"""The email channel: notification emails rendered from Jinja2 templates, sent over SMTP.

:class:`EmailSender` is the :class:`~notiflow.delivery.channels.ChannelSender` of the email
channel. It keeps one SMTP connection open between sends (reconnecting when it dropped) and
classifies every problem instead of raising::

    sender = EmailSender(settings)
    result = await sender.send(context)  # SendResult: sent / retry / failed / outcome_unknown
    await sender.close()

:func:`render_email` and :func:`build_email` do the rendering without any network, for previews
and tests. Emails are in the user's language (``en`` or ``az``; anything else gets English), carry
an HTML and a plain-text part, and a one-click unsubscribe link (RFC 8058) for their type.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
from collections.abc import Awaitable, Callable
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import structlog
from aiosmtplib.email import extract_sender, flatten_message
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from notiflow.config import Settings, SmtpTls
from notiflow.delivery.channels import DeliveryContext, SendResult
from notiflow.delivery.unsubscribe import make_unsubscribe_token
from notiflow.models import Notification, User
from notiflow.notifications.types import (
    TYPE_REGISTRY,
    Category,
    NotificationChannel,
    NotificationType,
)

log = structlog.get_logger(__name__)

APP_NAME = "notiflow"
DEFAULT_LOCALE = "en"

# ---------------------------------------------------------------------------------- translations

# Every string a person reads in an email or on the unsubscribe page, per language. Values are
# plain text (templates escape them); ``{name}``-style fields are filled by ``t(key, name=...)``.
# A key missing in a language falls back to English.
MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "heading": "Notification",
        "greeting": "Hi {name},",
        "button": "View notification",
        "link_fallback": "If the button does not work, open this link:",
        "footer_reason": (
            "You receive this email because email notifications for “{type}” are on in "
            "your {app} settings."
        ),
        "footer_unsubscribe_question": "Don't want these emails?",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Stop emails about “{type}” to {email}?",
        "unsubscribe_note": (
            "Only emails of this kind stop. Your other notification settings stay as they are."
        ),
        "unsubscribe_done_title": "You are unsubscribed",
        "unsubscribe_done": "You will no longer receive emails about “{type}”.",
        "unsubscribe_resubscribe": "You can turn them back on at any time in your notification "
        "settings.",
        "content.label": "Content & approval",
        "content.intro": "There is news about your content.",
        "content.button": "View post",
        "engagement.label": "Engagement",
        "engagement.intro": "Your audience is talking.",
        "engagement.button": "Open inbox",
        "team.label": "Team",
        "team.intro": "An update about your team.",
        "team.button": "Open team",
        "billing.label": "Billing",
        "billing.intro": "An update about your subscription and payments.",
        "billing.button": "Review billing",
        "billing.extra": "Amounts and invoices are always available in the billing section "
        "of the app.",
        "social_accounts.label": "Social accounts",
        "social_accounts.intro": "An update about your connected social accounts.",
        "social_accounts.button": "Manage accounts",
        "social_accounts.extra": "We never ask for your social network passwords by email.",
        "support.label": "Support",
        "support.intro": "An update on your support request.",
        "support.button": "View ticket",
        "privacy.label": "Data privacy",
        "privacy.intro": "An update about your personal data.",
        "privacy.button": "View details",
        "privacy.extra": "If you did not expect this, contact support right away.",
        "system.label": "System",
        "system.intro": "A message from the {app} team.",
        "system.button": "Learn more",
        "type.post_submitted": "Post submitted for approval",
        "type.post_approved": "Post approved",
        "type.post_rejected": "Post rejected",
        "type.post_published": "Post published",
        "type.post_failed": "Post failed to publish",
        "type.post_scheduled": "Post scheduled",
        "type.new_comment": "New comment",
        "type.new_mention": "New mention",
        "type.inbox_assigned": "Inbox item assigned to you",
        "type.invitation_received": "Invitation received",
        "type.invitation_accepted": "Invitation accepted",
        "type.member_added": "Member added",
        "type.member_removed": "Member removed",
        "type.role_changed": "Role changed",
        "type.subscription_created": "Subscription started",
        "type.subscription_renewed": "Subscription renewed",
        "type.subscription_cancelled": "Subscription cancelled",
        "type.payment_failed": "Payment failed",
        "type.trial_ending": "Trial ending soon",
        "type.trial_ended": "Trial ended",
        "type.account_connected": "Social account connected",
        "type.account_disconnected": "Social account disconnected",
        "type.account_token_expiring": "Social account access expiring",
        "type.account_token_expired": "Social account access expired",
        "type.ticket_created": "Support ticket created",
        "type.ticket_replied": "Reply to your support ticket",
        "type.ticket_resolved": "Support ticket resolved",
        "type.data_export_ready": "Data export ready",
        "type.data_deletion_scheduled": "Data deletion scheduled",
        "type.data_deletion_completed": "Data deletion completed",
        "type.system_announcement": "System announcement",
        "type.maintenance_scheduled": "Scheduled maintenance",
    },
    "az": {
        "heading": "Bildiriş",
        "greeting": "Salam, {name}!",
        "button": "Bildirişə bax",
        "link_fallback": "Düymə işləmirsə, bu keçidi açın:",
        "footer_reason": (
            "Bu e-poçtu ona görə aldınız ki, {app} ayarlarınızda “{type}” bildirişləri üçün "
            "e-poçt aktivdir."
        ),
        "footer_unsubscribe_question": "Bu e-poçtları almaq istəmirsiniz?",
        "unsubscribe": "Abunəlikdən çıx",
        "unsubscribe_title": "Abunəlikdən çıx",
        "unsubscribe_question": (
            "{email} ünvanına “{type}” bildirişləri ilə bağlı e-poçtların göndərilməsi "
            "dayandırılsın?"
        ),
        "unsubscribe_note": (
            "Yalnız bu növ e-poçtlar dayanacaq. Digər bildiriş ayarlarınız olduğu kimi qalır."
        ),
        "unsubscribe_done_title": "Abunəlikdən çıxdınız",
        "unsubscribe_done": "Artıq “{type}” bildirişləri ilə bağlı e-poçt almayacaqsınız.",
        "unsubscribe_resubscribe": "Onları istənilən vaxt bildiriş ayarlarınızdan yenidən "
        "aktiv edə bilərsiniz.",
        "content.label": "Məzmun və təsdiq",
        "content.intro": "Məzmununuzla bağlı yenilik var.",
        "content.button": "Paylaşıma bax",
        "engagement.label": "Qarşılıqlı əlaqə",
        "engagement.intro": "Auditoriyanızdan yeni reaksiya var.",
        "engagement.button": "Gələnlər qutusunu aç",
        "team.label": "Komanda",
        "team.intro": "Komandanızla bağlı yenilik var.",
        "team.button": "Komandaya bax",
        "billing.label": "Ödənişlər",
        "billing.intro": "Abunəliyiniz və ödənişlərinizlə bağlı yenilik var.",
        "billing.button": "Ödənişlərə bax",
        "billing.extra": "Məbləğlər və hesab-fakturalar həmişə tətbiqin ödənişlər bölməsində "
        "mövcuddur.",
        "social_accounts.label": "Sosial hesablar",
        "social_accounts.intro": "Qoşulmuş sosial hesablarınızla bağlı yenilik var.",
        "social_accounts.button": "Hesabları idarə et",
        "social_accounts.extra": "Biz heç vaxt e-poçt vasitəsilə sosial şəbəkə şifrələrinizi "
        "istəmirik.",
        "support.label": "Dəstək",
        "support.intro": "Dəstək sorğunuzla bağlı yenilik var.",
        "support.button": "Sorğuya bax",
        "privacy.label": "Məlumat məxfiliyi",
        "privacy.intro": "Şəxsi məlumatlarınızla bağlı yenilik var.",
        "privacy.button": "Ətraflı bax",
        "privacy.extra": "Bunu gözləmirdinizsə, dərhal dəstək xidmətinə müraciət edin.",
        "system.label": "Sistem",
        "system.intro": "{app} komandasından mesaj.",
        "system.button": "Ətraflı",
        "type.post_submitted": "Paylaşım təsdiqə göndərildi",
        "type.post_approved": "Paylaşım təsdiqləndi",
        "type.post_rejected": "Paylaşım rədd edildi",
        "type.post_published": "Paylaşım dərc edildi",
        "type.post_failed": "Paylaşım dərc edilmədi",
        "type.post_scheduled": "Paylaşım planlaşdırıldı",
        "type.new_comment": "Yeni şərh",
        "type.new_mention": "Sizi qeyd etdilər",
        "type.inbox_assigned": "Sizə təyin edilmiş mesaj",
        "type.invitation_received": "Dəvət alındı",
        "type.invitation_accepted": "Dəvət qəbul edildi",
        "type.member_added": "Üzv əlavə edildi",
        "type.member_removed": "Üzv çıxarıldı",
        "type.role_changed": "Rol dəyişdirildi",
        "type.subscription_created": "Abunəlik başladı",
        "type.subscription_renewed": "Abunəlik yeniləndi",
        "type.subscription_cancelled": "Abunəlik ləğv edildi",
        "type.payment_failed": "Ödəniş alınmadı",
        "type.trial_ending": "Sınaq müddəti bitmək üzrədir",
        "type.trial_ended": "Sınaq müddəti bitdi",
        "type.account_connected": "Sosial hesab qoşuldu",
        "type.account_disconnected": "Sosial hesabın əlaqəsi kəsildi",
        "type.account_token_expiring": "Sosial hesaba girişin müddəti bitir",
        "type.account_token_expired": "Sosial hesaba girişin müddəti bitdi",
        "type.ticket_created": "Dəstək sorğusu yaradıldı",
        "type.ticket_replied": "Dəstək sorğunuza cavab verildi",
        "type.ticket_resolved": "Dəstək sorğusu həll edildi",
        "type.data_export_ready": "Məlumatların ixracı hazırdır",
        "type.data_deletion_scheduled": "Məlumatların silinməsi planlaşdırıldı",
        "type.data_deletion_completed": "Məlumatların silinməsi tamamlandı",
        "type.system_announcement": "Sistem elanı",
        "type.maintenance_scheduled": "Planlı texniki işlər",
    },
}

Translate = Callable[..., str]


def normalize_locale(locale: str | None) -> str:
    """``"az"``, ``"az-AZ"`` and ``"az_Latn_AZ"`` are Azerbaijani; unknown languages get English."""
    language = (locale or "").replace("_", "-").split("-", 1)[0].strip().lower()
    return language if language in MESSAGES else DEFAULT_LOCALE


def translator(locale: str | None) -> Translate:
    """``t(key, **fields)`` in the given language, with English as the fallback per key."""
    strings = MESSAGES[normalize_locale(locale)]
    english = MESSAGES[DEFAULT_LOCALE]

    def t(key: str, **fields: Any) -> str:
        text = strings.get(key) or english[key]
        return text.format_map({"app": APP_NAME, **fields}) if "{" in text else text

    return t


def type_label(notification_type: str, locale: str | None) -> str:
    """A person's name for a notification type ("New mention", "Sizi qeyd etdilər")."""
    key = f"type.{notification_type}"
    if key not in MESSAGES[DEFAULT_LOCALE]:
        return notification_type.replace("_", " ")
    return translator(locale)(key)


def category_of(notification_type: str) -> Category:
    try:
        return TYPE_REGISTRY[NotificationType(notification_type)].category
    except (ValueError, KeyError):
        return Category.SYSTEM


# ---------------------------------------------------------------------------------- rendering


@lru_cache(maxsize=1)
def template_environment() -> Environment:
    """The templates shipped in ``notiflow/delivery/templates``: ``.html`` autoescaped, ``.txt``
    not. Loaded once and cached (the first render reads the small files from disk)."""
    return Environment(
        loader=PackageLoader("notiflow.delivery", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html",), disabled_extensions=("txt",), default=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def absolute_url(settings: Settings, url: str | None) -> str | None:
    """``PUBLIC_URL`` + a path; absolute http(s) URLs as they are; anything else (other schemes,
    ``javascript:``) is dropped rather than put behind a button."""
    if not url or not url.strip():
        return None
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return url
    if parts.scheme or parts.netloc:
        return None
    return f"{settings.public_url.rstrip('/')}/{url.lstrip('/')}"


def unsubscribe_url(settings: Settings, user: User, notification_type: str) -> str:
    token = make_unsubscribe_token(settings, user.id, notification_type)
    return f"{settings.public_url.rstrip('/')}/unsubscribe/{token}"


def render_email(
    notification: Notification, user: User, unsubscribe_url: str, settings: Settings
) -> tuple[str, str, str]:
    """``(subject, text, html)`` of the email telling ``user`` about ``notification``."""
    locale = normalize_locale(user.locale)
    t = translator(locale)
    category = category_of(notification.type)
    subject = " ".join(notification.title.split())  # a header holds no line breaks
    message = notification.message.replace("\r\n", "\n").replace("\r", "\n")
    context: dict[str, Any] = {
        "t": t,
        "lang": locale,
        "app_name": APP_NAME,
        "title": subject,
        "message": message,
        "message_lines": message.split("\n"),
        "preheader": " ".join(message.split())[:140],
        "user_name": user.name,
        "category_label": t(f"{category.value}.label"),
        "type_label": type_label(notification.type, locale),
        "action_url": absolute_url(settings, notification.action_url),
        "unsubscribe_url": unsubscribe_url,
    }
    environment = template_environment()
    text = environment.get_template(f"email/{category.value}.txt").render(context)
    html = environment.get_template(f"email/{category.value}.html").render(context)
    return subject, text, html


class _OneLineHeader(UnstructuredHeader, BaseHeader):
    """A header written on one line exactly as given. The default folding turns a long
    unbreakable value into an RFC 2047 encoded word, and a List-Unsubscribe URL hidden in one is
    a link no mail client finds. RFC 5322 allows lines of up to 998 characters."""

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self}{policy.linesep}"


def _message_policy() -> email.policy.EmailPolicy[EmailMessage]:
    registry = HeaderRegistry()
    registry.map_to_type("list-unsubscribe", _OneLineHeader)
    return email.policy.SMTP.clone(header_factory=registry)


MESSAGE_POLICY = _message_policy()


def build_email(
    notification: Notification,
    user: User,
    settings: Settings,
    *,
    message_id: str | None = None,
) -> EmailMessage:
    """The complete message: headers (with List-Unsubscribe) and both parts."""
    link = unsubscribe_url(settings, user, notification.type)
    subject, text, html = render_email(notification, user, link, settings)
    message = EmailMessage(policy=MESSAGE_POLICY)
    message["Subject"] = subject
    message["From"] = settings.mail_from
    # A display name is text of our users: no line breaks may reach a header.
    message["To"] = email.utils.formataddr((" ".join(user.name.split()), user.email))
    message["Date"] = email.utils.formatdate(usegmt=True)
    message["Message-ID"] = message_id or email.utils.make_msgid(domain=mail_domain(settings))
    message["List-Unsubscribe"] = f"<{link}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    # RFC 3834: an automatic message; vacation responders must not answer it.
    message["Auto-Submitted"] = "auto-generated"
    # Quoted-printable: 7-bit safe for any relay, and still readable in the raw source.
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    # After the parts exist: making the message multipart moves Content-* headers into them.
    message["Content-Language"] = normalize_locale(user.locale)
    return message


def mail_domain(settings: Settings) -> str:
    _, address = email.utils.parseaddr(settings.mail_from)
    domain = address.rpartition("@")[2].strip()
    return domain or "notiflow.localhost"


def delivery_message_id(context: DeliveryContext) -> str:
    """The same Message-ID for every attempt of one delivery: a retry after an outcome-unknown
    timeout then looks like the same message, which receiving systems may collapse."""
    return f"<{context.delivery_id}@{mail_domain(context.settings)}>"


def looks_like_address(address: str) -> bool:
    """Refuse what no server could deliver to (or what would break the envelope); the rest is
    the receiving server's call."""
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and not any(
        character.isspace() or character in '<>,;"' for character in address
    )


# ---------------------------------------------------------------------------------- sending

# How ``last_error`` begins for a retry the mail server itself caused: it could not be reached,
# was slow, hung up, or answered 4xx to the connection, our login or sender, or the message as a
# whole. Such an email need not wait out its retry once the server answers again (the outbox
# brings it forward). A 4xx to one recipient (greylisting, a full mailbox) is not among them: a
# server that takes other people's email says nothing about that mailbox.
UNREACHABLE = "cannot reach the mail server"
TIMED_OUT = "mail server timed out"
REPLIED = "mail server replied"
CONNECTION_LOST = "mail server connection lost"
DEFERRED = "message deferred"
LOGIN_REFUSED = "SMTP login refused"
SENDER_REFUSED = "sender refused"
MAIL_SERVER_TROUBLE = (
    UNREACHABLE,
    TIMED_OUT,
    REPLIED,
    CONNECTION_LOST,
    DEFERRED,
    LOGIN_REFUSED,
    SENDER_REFUSED,
)
# A probe waits no longer than this for the server: it runs in the sweeper's round, which must
# not stall for NOTIFLOW_SMTP_TIMEOUT_SECONDS (30) while the server drops packets.
PROBE_TIMEOUT_SECONDS = 5.0


class EmailSender:
    """Sends notification emails over one reusable SMTP connection.

    Sends are serialized by a lock (one SMTP transaction at a time per connection); run several
    senders for parallel connections. A connection idle for more than ``probe_after_idle``
    seconds is checked with NOOP before use and replaced when it died quietly.
    """

    channel = NotificationChannel.EMAIL

    def __init__(self, settings: Settings, *, probe_after_idle: float = 5.0) -> None:
        self.settings = settings
        self.probe_after_idle = probe_after_idle
        self.connections_opened = 0
        self._client: aiosmtplib.SMTP | None = None
        self._local_hostname: str | None = None
        self._last_used = 0.0
        self._lock = asyncio.Lock()

    async def send(self, context: DeliveryContext) -> SendResult:
        user = context.user
        if not looks_like_address(user.email):
            return SendResult.failed(f"invalid email address: {user.email!r}")
        message_id = delivery_message_id(context)
        message = build_email(context.notification, user, context.settings, message_id=message_id)
        async with self._lock:
            try:
                client = await self._connection()
            except (aiosmtplib.SMTPException, OSError) as error:
                self._drop_connection()
                return _connect_problem(error)
            try:
                # The envelope names the user's address, whatever the To header's name holds.
                await _transact(client, message, user.email, context.commit_point)
            except NoReplyAfterData as error:
                self._drop_connection()
                log.warning(
                    "email_outcome_unknown",
                    delivery_id=str(context.delivery_id),
                    message_id=message_id,
                    error=str(error),
                )
                return SendResult.unknown(
                    f"the mail server took the message but gave no reply: {error}", message_id
                )
            except aiosmtplib.SMTPRecipientsRefused as error:
                return _recipient_refused(error)
            except aiosmtplib.SMTPRecipientRefused as error:
                reason = _reply(error)
                return SendResult.failed(reason) if error.code >= 500 else SendResult.retry(reason)
            except aiosmtplib.SMTPNotSupported as error:
                # Only raised here for an internationalized address the server cannot take.
                return SendResult.failed(f"the mail server refused the address: {error.message}")
            except aiosmtplib.SMTPDataError as error:
                if error.code >= 500:
                    return SendResult.failed(f"message rejected: {_reply(error)}")
                return SendResult.retry(f"{DEFERRED}: {_reply(error)}")
            except aiosmtplib.SMTPSenderRefused as error:
                # Our sender address or account, not this recipient: retry, and after the last
                # attempt the failure (with this reason) reaches the admins.
                return SendResult.retry(f"{SENDER_REFUSED}: {error.sender}: {_reply(error)}")
            except aiosmtplib.SMTPResponseException as error:
                if error.code == 421:  # the server is closing the connection
                    self._drop_connection()
                return SendResult.retry(f"{REPLIED} {_reply(error)}")
            except aiosmtplib.SMTPTimeoutError as error:
                self._drop_connection()
                return SendResult.retry(f"{TIMED_OUT}: {error.message}")
            except (aiosmtplib.SMTPException, OSError) as error:
                self._drop_connection()
                return SendResult.retry(f"{CONNECTION_LOST}: {_describe(error)}")
            finally:
                self._last_used = asyncio.get_running_loop().time()
        log.debug("email_sent", delivery_id=str(context.delivery_id), message_id=message_id)
        return SendResult.sent(message_id)

    async def probe(self) -> bool:
        """Whether the mail server takes a session now: connect (with STARTTLS and login as
        configured), EHLO, NOOP, QUIT, on a connection of its own (a send in progress keeps
        its own). No message is offered, so a probe is never a try of any email."""
        client = self._new_client(
            timeout=min(self.settings.smtp_timeout_seconds, PROBE_TIMEOUT_SECONDS)
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
            await client.noop()
        except (aiosmtplib.SMTPException, OSError) as error:
            client.close()
            log.debug("mail_server_probe_failed", error=_describe(error))
            return False
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()  # it answered; a QUIT it fumbles changes nothing
        return True

    async def close(self) -> None:
        """Say QUIT and close the connection (if one is open)."""
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()

    async def _connection(self) -> aiosmtplib.SMTP:
        client = self._client
        if client is not None and client.is_connected:
            idle = asyncio.get_running_loop().time() - self._last_used
            if idle <= self.probe_after_idle:
                return client
            try:
                await client.noop()
                return client
            except (aiosmtplib.SMTPException, OSError):
                self._drop_connection()
        client = self._new_client()
        await client.connect()
        self._client = client
        self._local_hostname = client.local_hostname
        self.connections_opened += 1
        return client

    def _new_client(self, timeout: float | None = None) -> aiosmtplib.SMTP:
        settings = self.settings
        return aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password if settings.smtp_username else None,
            use_tls=settings.smtp_tls is SmtpTls.TLS,
            # "none" means none: no opportunistic STARTTLS that could fail on a local relay.
            start_tls=settings.smtp_tls is SmtpTls.STARTTLS,
            timeout=settings.smtp_timeout_seconds if timeout is None else timeout,
            local_hostname=self._local_hostname,
        )

    def _drop_connection(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _reply(error: aiosmtplib.SMTPResponseException) -> str:
    return f"{error.code} {' '.join(error.message.split())}".strip()


def _describe(error: BaseException) -> str:
    text = error.message if isinstance(error, aiosmtplib.SMTPException) else str(error)
    return text or type(error).__name__


class NoReplyAfterData(Exception):
    """The final ``.`` of DATA went out and the reply never came (the connection closed or the
    reply timed out). The server may have accepted the message or not; SMTP has no way to ask."""


async def _transact(
    client: aiosmtplib.SMTP,
    message: EmailMessage,
    recipient: str,
    commit_point: Callable[[], Awaitable[None]] | None,
) -> None:
    """One SMTP transaction. With a commit point, the delivery is recorded as sent after the
    whole message has been transferred and before the final ``.`` that makes the server accept
    it: a crash before the dot leaves an unaccepted message (the server drops it, the delivery is
    sent again), a crash after it leaves a recorded delivery — never two copies. Without a reply
    to the dot, :class:`NoReplyAfterData`: whether the server took the message is unknown."""
    sender = extract_sender(message)
    if commit_point is None or sender is None or not (sender + recipient).isascii():
        await client.send_message(message, recipients=[recipient])
        return
    eight_bit = client.supports_extension("8bitmime")
    await client.mail(sender, options=["BODY=8BITMIME"] if eight_bit else None)
    try:
        await client.rcpt(recipient)
    except aiosmtplib.SMTPResponseException:
        # The transaction stays open after a refused RCPT: end it, or the next email on this
        # connection is refused with "503 nested MAIL command" (send_message does the same).
        await _reset(client)
        raise
    flat = flatten_message(message, utf8=False, cte_type="8bit" if eight_bit else "7bit")
    body = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(flat))
    protocol = client.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    # aiosmtplib's own DATA sends body and terminator in one write; this is the same exchange
    # with the commit point between them (its command lock keeps replies in order).
    async with protocol._command_lock:  # type: ignore[union-attr]
        protocol._response_pending = True
        protocol.write(b"DATA\r\n")
        start = await protocol.read_response(timeout=client.timeout)
    if start.code != 354:
        await _reset(client)
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    async with protocol._command_lock:  # type: ignore[union-attr]
        protocol.write(body)
        try:
            await commit_point()
        except BaseException:
            client.close()  # without the final dot the server discards the message
            raise
        protocol._response_pending = True
        protocol.write(b".\r\n")  # raises (nothing was accepted) when the connection is gone
        try:
            response = await protocol.read_response(timeout=client.timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as error:
            raise NoReplyAfterData(_describe(error)) from error
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)


async def _reset(client: aiosmtplib.SMTP) -> None:
    """End the open transaction (RSET); a connection that cannot is closed, and the next send
    opens another."""
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _recipient_refused(error: aiosmtplib.SMTPRecipientsRefused) -> SendResult:
    refusals = error.recipients
    if not refusals:  # pragma: no cover - aiosmtplib always names the refused recipients
        return SendResult.retry("recipient refused")
    reason = "; ".join(_reply(refusal) for refusal in refusals)
    if any(refusal.code >= 500 for refusal in refusals):
        return SendResult.failed(reason)
    return SendResult.retry(reason)


def _connect_problem(error: BaseException) -> SendResult:
    """Anything that went wrong before a message could be offered is worth another try: a server
    that is down, busy (421), slow, or refusing our credentials or TLS until someone fixes them."""
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return SendResult.retry(f"{LOGIN_REFUSED}: {_reply(error)}")
    if isinstance(error, aiosmtplib.SMTPTimeoutError):
        return SendResult.retry(f"{TIMED_OUT}: {error.message}")
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return SendResult.retry(f"{REPLIED} {_reply(error)}")
    return SendResult.retry(f"{UNREACHABLE}: {_describe(error)}")


__all__ = [
    "MAIL_SERVER_TROUBLE",
    "MESSAGES",
    "EmailSender",
    "NoReplyAfterData",
    "absolute_url",
    "build_email",
    "category_of",
    "delivery_message_id",
    "normalize_locale",
    "render_email",
    "template_environment",
    "translator",
    "type_label",
    "unsubscribe_url",
]
