"""Social network adapters behind one contract (:mod:`notiflow.social.providers.base`)."""

from __future__ import annotations

from notiflow.config import Settings
from notiflow.social.providers.base import Provider


def build_providers(settings: Settings) -> dict[str, Provider]:
    """Every adapter notiflow ships, by the name accounts are connected with."""
    providers: dict[str, Provider] = {}
    return providers
