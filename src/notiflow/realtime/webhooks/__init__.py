"""Pusher webhooks: channel_occupied / channel_vacated, member_added / member_removed,
client_event and cache_miss, batched, signed and retried from the database (docs/realtime.md,
"Webhooks").

- :mod:`~notiflow.realtime.webhooks.events`: the events, the body, the signature, the apps.
- :mod:`~notiflow.realtime.webhooks.tracking`: which events a node's changes make, once per
  cluster (the hub's :class:`~notiflow.realtime.hub.HubWebhooks`).
- :mod:`~notiflow.realtime.webhooks.outbox`: events into ``webhook_events`` rows.
- :mod:`~notiflow.realtime.webhooks.sender`: rows out to the receiver, retried, given up.
"""

from notiflow.realtime.webhooks.events import (
    WebhookApp,
    WebhookTiming,
    signed_headers,
    verify_signature,
    webhook_apps,
    webhook_body,
)
from notiflow.realtime.webhooks.outbox import StreamIngest, WebhookOutbox
from notiflow.realtime.webhooks.sender import WebhookSender
from notiflow.realtime.webhooks.tracking import ClusterWebhooks, LocalWebhooks

__all__ = [
    "ClusterWebhooks",
    "LocalWebhooks",
    "StreamIngest",
    "WebhookApp",
    "WebhookOutbox",
    "WebhookSender",
    "WebhookTiming",
    "signed_headers",
    "verify_signature",
    "webhook_apps",
    "webhook_body",
]
