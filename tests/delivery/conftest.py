"""Fixtures of the delivery tests.

``smtp_server``: a real SMTP server (aiosmtpd, in a thread) on 127.0.0.1 and a free port, which
records what it receives, counts SMTP sessions, can be told to refuse recipients (``550``,
``451``, ...) or messages, can hold its replies (so that every client waits for it), and can be
stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import email.policy
import threading
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
        # While set, replies to RCPT and to the end of DATA wait (see SmtpServer.hold_replies).
        self.holding = threading.Event()
        self._lock = threading.Lock()
        self._in_transaction: set[int] = set()  # id() of sessions past RCPT, before DATA's reply
        self._waiting: set[int] = set()  # id() of sessions whose reply is held

    def every_transaction_waits(self) -> bool:
        """Some transaction is open and each open one waits for a held reply: no client is
        between two replies of the server (e.g. recording a delivery before the final dot)."""
        with self._lock:
            return bool(self._in_transaction) and self._in_transaction <= self._waiting

    async def _hold(self, session: Session) -> None:
        if not self.holding.is_set():
            return
        with self._lock:
            self._waiting.add(id(session))
        try:
            # Set and cleared from the test's thread: a threading.Event, polled.
            while self.holding.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        finally:
            with self._lock:
                self._waiting.discard(id(session))

    def _end_transaction(self, session: Session) -> None:
        with self._lock:
            self._in_transaction.discard(id(session))

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
        with self._lock:
            self._in_transaction.add(id(session))
        await self._hold(session)
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        reply = self.recipient_replies.get(address.lower())
        if reply is not None:
            self._end_transaction(session)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            self._end_transaction(session)
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
        # Received (the final dot came): a client killed while this reply is held has sent it.
        await self._hold(session)
        self._end_transaction(session)
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

    async def hold_replies(self, within: float = 90.0) -> None:
        """Hold the replies to RCPT and to the end of DATA, and return once every open SMTP
        transaction waits for one: no client is then between two replies of the server, such
        as in the instant between recording an email as sent and writing its final dot (the one
        gap a crash can fall into, docs/delivery.md)."""
        self.handler.holding.set()
        deadline = asyncio.get_running_loop().time() + within
        while not self.handler.every_transaction_waits():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"SMTP clients still busy after {within}s")
            await asyncio.sleep(0.01)

    def release_replies(self) -> None:
        self.handler.holding.clear()

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
