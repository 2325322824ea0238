"""Social network adapters behind one contract (:mod:`notiflow.social.providers.base`)."""

from __future__ import annotations

from notiflow.config import Settings
from notiflow.social.providers.base import Provider
from notiflow.social.providers.mastodon import MastodonProvider
from notiflow.social.providers.sandbox import SandboxProvider


def build_providers(settings: Settings) -> dict[str, Provider]:
    """Every adapter notiflow ships, by the name accounts are connected with."""
    return {
        "sandbox": SandboxProvider(),
        "mastodon": MastodonProvider(timeout_seconds=settings.provider_timeout_seconds),
    }
