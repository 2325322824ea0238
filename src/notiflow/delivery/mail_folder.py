"""Email written to a folder instead of sent: the mail driver of development (``file``).

With no SMTP server configured in development, every email notiflow would send — notifications,
failed-job alerts, the GDPR deletion notice — is written to ``NOTIFLOW_MAIL_DIR`` (default
``./var/mail``) as one ``.eml`` file per message, exactly the bytes an SMTP server would have
received. Any mail client opens them, and so does the admin API in development
(:mod:`notiflow.delivery.mail_outbox`)::

    sender = FolderMailSender(Path("var/mail"))
    result = await sender.send(context)  # SendResult.sent(<Message-ID>), the file written

A file appears whole or not at all (written under a temporary name, then renamed), so a reader
watching the folder never sees half a message. A file is named after its delivery (a
time-ordered id, so names sort by time): a try repeated after a crash rewrites its own file
rather than adding a second copy.
"""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage
from pathlib import Path

import structlog

from notiflow.config import MailDriver, Settings
from notiflow.delivery.channels import DeliveryContext, SendResult
from notiflow.delivery.email import (
    EmailSender,
    build_email,
    delivery_message_id,
    looks_like_address,
)
from notiflow.kit.ids import new_id
from notiflow.notifications.types import NotificationChannel

log = structlog.get_logger(__name__)


def _write(directory: Path, name: str, content: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{name}.eml"
    partial = directory / f".{name}.eml.partial"
    partial.write_bytes(content)
    partial.replace(final)
    return final


async def write_message(
    directory: Path, message: EmailMessage, key: uuid.UUID | None = None
) -> Path:
    """Write ``message`` as ``<key>.eml`` in ``directory`` (created if missing), off the event
    loop; ``key`` defaults to a new time-ordered id."""
    name = str(key or new_id())
    return await asyncio.to_thread(_write, directory, name, bytes(message))


class FolderMailSender:
    """The email channel's sender when the mail driver is ``file``."""

    channel = NotificationChannel.EMAIL

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, context: DeliveryContext) -> SendResult:
        user = context.user
        if not looks_like_address(user.email):
            return SendResult.failed(f"invalid email address: {user.email!r}")
        message_id = delivery_message_id(context)
        message = build_email(context.notification, user, context.settings, message_id=message_id)
        try:
            path = await write_message(self.directory, message, context.delivery_id)
        except OSError as error:
            return SendResult.retry(f"could not write to the mail folder: {error}")
        log.debug("email_written", delivery_id=str(context.delivery_id), path=str(path))
        return SendResult.sent(message_id)

    async def probe(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def build_email_sender(settings: Settings) -> EmailSender | FolderMailSender:
    """The email sender the settings ask for (``Settings.mail_transport``)."""
    if settings.mail_transport is MailDriver.FILE:
        return FolderMailSender(settings.mail_dir)
    return EmailSender(settings)


def describe_mail_transport(settings: Settings) -> dict[str, str]:
    """What start-up logs say about where email goes."""
    if settings.mail_transport is MailDriver.FILE:
        return {"mail": "file", "mail_dir": str(settings.mail_dir.resolve())}
    return {"mail": "smtp", "smtp": f"{settings.smtp_host}:{settings.smtp_port}"}
