"""The SMS channel: a gateway protocol, a Twilio-compatible HTTP gateway, a log gateway, the sender.

Usage::

    sender = build_sms_sender(settings)  # NOTIFLOW_SMS_DRIVER=log|twilio
    result = await sender.send(context)  # SendResult: sent / retry / failed, never raises
    await sender.close()

Gateways speak to providers and raise :class:`SmsError` (``retryable`` says whether a later try
may work); :class:`SmsSender` turns notifications into short texts, sends them only to verified
phone numbers and classifies every problem into a :class:`SendResult`.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
import structlog

from notiflow.config import Settings
from notiflow.delivery.channels import DeliveryContext, SendResult
from notiflow.kit.ids import new_id
from notiflow.models import Notification
from notiflow.notifications.types import NotificationChannel

__all__ = [
    "DEFAULT_MAX_TEXT_CHARS",
    "LogSmsGateway",
    "SmsConfigurationError",
    "SmsError",
    "SmsGateway",
    "SmsSender",
    "TwilioSmsGateway",
    "build_sms_body",
    "build_sms_sender",
]

log = structlog.get_logger(__name__)

# Two concatenated GSM-7 segments hold 306 characters, so 320 keeps most texts to 2-3 segments.
DEFAULT_MAX_TEXT_CHARS = 320
# Three dots, not "…": a single character outside GSM-7 switches the whole text to UCS-2 and
# cuts each segment from 160 characters to 70.
_ELLIPSIS = "..."
# 408 and 429 say "not now"; 5xx are the provider's trouble. Every other 4xx will never work.
_RETRYABLE_STATUSES = frozenset({408, 429})


class SmsError(Exception):
    """A provider refused or could not take a message. ``retryable``: a later try may work."""

    def __init__(
        self,
        retryable: bool,
        message: str,
        *,
        status_code: int | None = None,
        provider_code: int | str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.message = message
        self.status_code = status_code
        self.provider_code = provider_code


class SmsConfigurationError(ValueError):
    """The SMS settings cannot work (raised when the sender is built, not on the first send)."""


class SmsGateway(Protocol):
    async def send_sms(self, to: str, body: str) -> str:
        """Send ``body`` to ``to`` (E.164); return the provider's message id or raise SmsError."""
        ...

    async def close(self) -> None: ...


class TwilioSmsGateway:
    """Twilio's Programmable Messaging API (or any server speaking it, e.g. a local fake).

    ``sender`` is a phone number (``From``) or a Messaging Service SID starting with ``MG``
    (``MessagingServiceSid``, which lets Twilio pick the number).
    """

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        timeout_seconds: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.sender = sender
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_seconds)

    async def send_sms(self, to: str, body: str) -> str:
        form = {"To": to, "Body": body}
        if self.sender.startswith("MG"):
            form["MessagingServiceSid"] = self.sender
        else:
            form["From"] = self.sender
        try:
            response = await self._client.post(self._url, data=form, auth=self._auth)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            raise SmsError(True, f"cannot reach Twilio at {self._url}: {error!r}") from error
        except httpx.TimeoutException as error:
            # The request may have reached Twilio (it has no idempotency key for messages), so a
            # retry risks a duplicate text; losing the text for good would be worse.
            raise SmsError(
                True, f"no reply from Twilio in time ({error!r}); the message may have been sent"
            ) from error
        except httpx.HTTPError as error:
            raise SmsError(True, f"request to Twilio failed: {error!r}") from error
        return _message_sid(response)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _message_sid(response: httpx.Response) -> str:
    """The sid of an accepted message, or the SmsError the response means."""
    payload = _json_object(response)
    status = response.status_code
    if 200 <= status < 300:
        sid = payload.get("sid")
        if isinstance(sid, str) and sid:
            return sid
        # Accepted, so it may go out: retrying could send it twice.
        raise SmsError(
            False,
            f"Twilio accepted the message (HTTP {status}) but returned no sid",
            status_code=status,
        )
    code = payload.get("code")
    detail = payload.get("message") or response.reason_phrase or "no details"
    text = f"Twilio HTTP {status}: {detail}"
    if code is not None:
        text += f" (code {code})"
    retryable = status in _RETRYABLE_STATUSES or status >= 500
    raise SmsError(retryable, text, status_code=status, provider_code=code)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


class _EventLogger(Protocol):
    def info(self, event: str, /, **fields: Any) -> Any: ...


class LogSmsGateway:
    """Writes one structured log line per message instead of sending it (development, demos)."""

    def __init__(self, logger: _EventLogger | None = None) -> None:
        self._log: _EventLogger = logger if logger is not None else log

    async def send_sms(self, to: str, body: str) -> str:
        message_id = f"log-{new_id().hex}"
        self._log.info("sms_logged", message_id=message_id, to=_mask_phone(to), body=body)
        return message_id

    async def close(self) -> None:
        return None


def _mask_phone(number: str) -> str:
    """Keep the last four digits: enough to recognise a number, not enough to leak it."""
    if len(number) <= 4:
        return "*" * len(number)
    return "*" * (len(number) - 4) + number[-4:]


def build_sms_body(
    notification: Notification, public_url: str, *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
) -> str:
    """Title and message (shortened to ``max_text_chars``), then the action link if any.

    The link is never cut: a truncated URL is worse than none.
    """
    title = notification.title.strip()
    message = " ".join(notification.message.split())
    text = f"{title}: {message}" if title and message else title or message
    if len(text) > max_text_chars:
        text = text[: max_text_chars - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
    link = _action_link(notification.action_url, public_url)
    return f"{text}\n{link}" if link else text


def _action_link(action_url: str | None, public_url: str) -> str | None:
    if not action_url:
        return None
    if action_url.startswith(("http://", "https://")):
        return action_url
    return f"{public_url.rstrip('/')}/{action_url.lstrip('/')}"


class SmsSender:
    """The SMS :class:`~notiflow.delivery.channels.ChannelSender`."""

    channel = NotificationChannel.SMS

    def __init__(self, gateway: SmsGateway, *, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS):
        self.gateway = gateway
        self.max_text_chars = max_text_chars

    async def send(self, context: DeliveryContext) -> SendResult:
        user = context.user
        if not user.phone_number or user.phone_verified_at is None:
            return SendResult.failed("no verified phone number")
        body = build_sms_body(
            context.notification, context.settings.public_url, max_text_chars=self.max_text_chars
        )
        try:
            message_id = await self.gateway.send_sms(user.phone_number, body)
        except SmsError as error:
            if error.retryable:
                return SendResult.retry(error.message)
            return SendResult.failed(error.message)
        except Exception as error:  # a bug or an unexpected library error: the contract says retry
            log.exception(
                "sms_send_error", delivery_id=str(context.delivery_id), error=type(error).__name__
            )
            return SendResult.retry(f"unexpected error: {type(error).__name__}: {error}")
        return SendResult.sent(message_id)

    async def close(self) -> None:
        await self.gateway.close()


def build_sms_sender(settings: Settings) -> SmsSender:
    """The sender for ``NOTIFLOW_SMS_DRIVER``; raise SmsConfigurationError when it cannot work."""
    if settings.sms_driver == "log":
        return SmsSender(LogSmsGateway())
    if settings.sms_driver == "twilio":
        sid, token, sender = settings.sms_account_sid, settings.sms_auth_token, settings.sms_from
        if not (sid and token and sender):
            missing = [
                name
                for name, value in (
                    ("NOTIFLOW_SMS_ACCOUNT_SID", sid),
                    ("NOTIFLOW_SMS_AUTH_TOKEN", token),
                    ("NOTIFLOW_SMS_FROM", sender),
                )
                if not value
            ]
            raise SmsConfigurationError(
                f"NOTIFLOW_SMS_DRIVER=twilio needs {', '.join(missing)} "
                "(the account SID, its auth token and the sender number or Messaging Service SID)"
            )
        return SmsSender(
            TwilioSmsGateway(
                base_url=settings.sms_base_url, account_sid=sid, auth_token=token, sender=sender
            )
        )
    raise SmsConfigurationError(f"unknown NOTIFLOW_SMS_DRIVER {settings.sms_driver!r} (log|twilio)")
