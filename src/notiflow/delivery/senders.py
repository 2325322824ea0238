"""The channel senders of a process, built from settings."""

from __future__ import annotations

from notiflow.config import Settings
from notiflow.delivery.channels import ChannelSender
from notiflow.delivery.mail_folder import build_email_sender
from notiflow.delivery.sms import build_sms_sender
from notiflow.delivery.webpush import WebPushSender


def build_senders(settings: Settings) -> dict[str, ChannelSender]:
    senders: dict[str, ChannelSender] = {
        "email": build_email_sender(settings),
        "sms": build_sms_sender(settings),
        "push": WebPushSender(),
    }
    return senders
