"""Fixtures of the delivery tests.

``smtp_server``: a real SMTP server (aiosmtpd, in a thread) on 127.0.0.1 and a free port, which
records what it receives, counts SMTP sessions, can be told to refuse recipients (``550``,
``451``, ...) or messages, and can be stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import email.policy
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from notiflow.config import Settings
from tests.conftest import make_settings
from tests.delivery.processes import free_port

SMTP_PUBLIC_URL = "https://notiflow.example"
SMTP_MAIL_FROM = "notiflow <no-reply@notiflow.example>"


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    session_number: int  # 1 for the first SMTP session the server saw

    @property
    def message(self) -> EmailMessage:
        """The message as a mail client parses it."""
        parsed = BytesParser(policy=email.policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed


class RecordingHandler:
    """aiosmtpd handler: accepts everything unless told otherwise, and remembers it."""

    def __init__(self) -> None:
        self.received: list[ReceivedMail] = []
        # Kept (not just counted) so that a finished session's id() is never reused.
        self.sessions: list[Session] = []
        # Recipient address (lower case) -> the reply to its RCPT, e.g. "550 5.1.1 unknown".
        self.recipient_replies: dict[str, str] = {}
        # A reply to the end of DATA instead of accepting the message, e.g. "554 5.7.1 spam".
        self.data_reply: str | None = None
        # A pause before answering RCPT: makes a batch take time without widening the moment
        # between the server accepting a message and the client hearing it.
        self.rcpt_delay = 0.0

    def _session_number(self, session: Session) -> int:
        for number, known in enumerate(self.sessions, start=1):
            if known is session:
                return number
        self.sessions.append(session)
        return len(self.sessions)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the hook takes over this duty from aiosmtpd
        self._session_number(session)
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        reply = self.recipient_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        content = envelope.original_content or envelope.content
        assert isinstance(content, bytes)
        assert isinstance(envelope.mail_from, str)
        self.received.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                raw=content,
                session_number=self._session_number(session),
            )
        )
        return "250 2.0.0 OK: queued"


class SmtpServer:
    def __init__(self, **controller_options: Any) -> None:
        self.handler = RecordingHandler()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.controller_options = controller_options
        self._controller: Controller | None = None

    def start(self) -> None:
        """Listen (again) on this server's port."""
        assert self._controller is None, "already running"
        controller = Controller(
            self.handler, hostname=self.host, port=self.port, **self.controller_options
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening and drop open sessions: connecting now is refused."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received

    @property
    def session_count(self) -> int:
        return len(self.handler.sessions)

    def refuse(self, address: str, reply: str) -> None:
        """Answer ``reply`` to ``RCPT TO:<address>``."""
        self.handler.recipient_replies[address.lower()] = reply

    def settings(self, **overrides: Any) -> Settings:
        """Test settings that send email to this server."""
        values: dict[str, Any] = {
            "smtp_host": self.host,
            "smtp_port": self.port,
            "smtp_timeout_seconds": 5.0,
            "public_url": SMTP_PUBLIC_URL,
            "mail_from": SMTP_MAIL_FROM,
            **overrides,
        }
        return make_settings(**values)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
