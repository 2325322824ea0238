"""The delivery ledger's vocabulary, shared by the send path and the delivery worker."""

from __future__ import annotations

# Ledger reasons of a push delivery with nothing to deliver to (as notiflow.delivery.webpush).
WEB_PUSH_NOT_CONFIGURED = "webpush_not_configured"
NO_PUSH_SUBSCRIPTION = "no_push_subscription"


class DeliveryStatus:
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


__all__ = ["NO_PUSH_SUBSCRIPTION", "WEB_PUSH_NOT_CONFIGURED", "DeliveryStatus"]
