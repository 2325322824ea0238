"""Reading the mail folder back: what development's ``file`` mail driver wrote, for the admin API.

In development, notiflow writes every email it would send to ``NOTIFLOW_MAIL_DIR`` as one
``<id>.eml`` file (:mod:`notiflow.delivery.mail_folder`); the admin API lets a developer look at
them without a mail client. Only messages addressed to a current member of the caller's tenant
are listed or opened: a folder shared by every tenant of a development database still shows
each tenant only its own people's mail::

    page = await list_messages(settings.mail_dir, member_emails, limit=50)
    message = await read_message(settings.mail_dir, message_id, member_emails)  # or NotFound

Newest first (file names are time-ordered ids). Files are read off the event loop.
"""

from __future__ import annotations

import asyncio
import email.policy
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import NotFound
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Membership, User

__all__ = ["MailBody", "MailSummary", "list_messages", "member_emails", "read_message"]


@dataclass(frozen=True, slots=True)
class MailSummary:
    id: uuid.UUID  # the file is <id>.eml
    file_name: str
    to: list[str]
    subject: str
    date: datetime | None


@dataclass(frozen=True, slots=True)
class MailBody:
    summary: MailSummary
    sender: str
    text: str | None
    html: str | None


async def member_emails(session: AsyncSession, tenant_id: uuid.UUID) -> frozenset[str]:
    """The addresses of the tenant's members, lower case."""
    emails = await session.scalars(
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(in_tenant(Membership, tenant_id))
    )
    return frozenset(address.lower() for address in emails)


def _message_ids(directory: Path) -> list[uuid.UUID]:
    """Every finished message's id, newest first (a ``.partial`` file is still being written)."""
    if not directory.is_dir():
        return []
    found: list[uuid.UUID] = []
    for path in directory.glob("*.eml"):
        try:
            found.append(uuid.UUID(path.stem))
        except ValueError:
            continue  # not one of notiflow's
    return sorted(found, key=str, reverse=True)


def _parse(path: Path, *, headers_only: bool) -> EmailMessage | None:
    try:
        with path.open("rb") as file:
            parsed = BytesParser(policy=email.policy.default).parse(file, headersonly=headers_only)
    except FileNotFoundError:
        return None
    return parsed if isinstance(parsed, EmailMessage) else None


def _summary(message_id: uuid.UUID, path: Path, message: EmailMessage) -> MailSummary:
    date: datetime | None
    try:
        date = parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
    except (TypeError, ValueError):
        date = None
    return MailSummary(
        id=message_id,
        file_name=path.name,
        to=[address for _, address in getaddresses([str(message.get("To", ""))]) if address],
        subject=str(message.get("Subject", "")),
        date=date,
    )


def _addressed_to(summary: MailSummary, emails: frozenset[str]) -> bool:
    return any(address.lower() in emails for address in summary.to)


def _list(
    directory: Path, emails: frozenset[str], offset: int, limit: int
) -> tuple[list[MailSummary], bool]:
    shown: list[MailSummary] = []
    skipped = 0
    for message_id in _message_ids(directory):
        path = directory / f"{message_id}.eml"
        message = _parse(path, headers_only=True)
        if message is None:
            continue
        summary = _summary(message_id, path, message)
        if not _addressed_to(summary, emails):
            continue
        if skipped < offset:
            skipped += 1
            continue
        if len(shown) == limit:
            return shown, True
        shown.append(summary)
    return shown, False


async def list_messages(
    directory: Path, emails: frozenset[str], *, offset: int = 0, limit: int = 50
) -> tuple[list[MailSummary], bool]:
    """The messages addressed to ``emails``, newest first: ``limit`` of them after ``offset``,
    and whether there are more."""
    return await asyncio.to_thread(_list, directory, emails, offset, limit)


def _read(directory: Path, message_id: uuid.UUID, emails: frozenset[str]) -> MailBody | None:
    path = directory / f"{message_id}.eml"
    message = _parse(path, headers_only=False)
    if message is None:
        return None
    summary = _summary(message_id, path, message)
    if not _addressed_to(summary, emails):
        return None
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return MailBody(
        summary=summary,
        sender=str(message.get("From", "")),
        text=text.get_content() if isinstance(text, EmailMessage) else None,
        html=html.get_content() if isinstance(html, EmailMessage) else None,
    )


async def read_message(directory: Path, message_id: uuid.UUID, emails: frozenset[str]) -> MailBody:
    """One message with its text and HTML bodies; 404 when it is not there or not addressed
    to one of ``emails``."""
    found = await asyncio.to_thread(_read, directory, message_id, emails)
    if found is None:
        raise NotFound("message not found")
    return found
