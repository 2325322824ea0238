"""What the platform's jobs and services (publishing, inbox sync, metrics, token refresh) need
from the process they run in: the social network adapters and the cipher of stored tokens, and
the notification service (an account that needs reconnecting tells its workspace's admins).

A Protocol, so that they depend on exactly this and never on the process's composition root
(:mod:`notiflow.main.runtime`), which satisfies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from notiflow.kit.crypto import TokenCipher
from notiflow.notifications.ports import NotifyingContext
from notiflow.social.providers.base import Provider


class PlatformContext(NotifyingContext, Protocol):
    @property
    def providers(self) -> Mapping[str, Provider]:
        """The social network adapters by name."""
        ...

    def provider(self, name: str) -> Provider:
        """The adapter called ``name``; an unknown name is invalid input (422)."""
        ...

    def token_cipher(self) -> TokenCipher:
        """How the access and refresh tokens of social accounts are kept at rest."""
        ...
