"""Secrets at rest: social-network tokens are stored as Fernet tokens (AES-128-CBC + HMAC).

Keys come from ``NOTIFLOW_ENCRYPTION_KEYS`` (comma-separated Fernet keys, the first encrypts,
all decrypt, so a key can be rotated); when unset, one key is derived from
``NOTIFLOW_SECRET_KEY`` with HKDF (which is itself refused as a placeholder outside development).

    cipher = TokenCipher.from_settings(settings)
    stored = cipher.encrypt("access-token")
    cipher.decrypt(stored) == "access-token"
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from notiflow.config import Settings

__all__ = ["InvalidToken", "TokenCipher", "derive_key"]


def derive_key(secret_key: str) -> bytes:
    """A Fernet key derived from the application secret (HKDF-SHA256, fixed context)."""
    material = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"notiflow token encryption"
    ).derive(secret_key.encode())
    return base64.urlsafe_b64encode(material)


class TokenCipher:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        configured = [key.strip() for key in (settings.encryption_keys or "").split(",")]
        keys = [key.encode() for key in configured if key]
        return cls(keys or [derive_key(settings.secret_key)])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The plain value; raises :class:`InvalidToken` if no key fits or it was tampered with."""
        return self._fernet.decrypt(token.encode()).decode()

    def encrypt_optional(self, plaintext: str | None) -> str | None:
        return None if plaintext is None else self.encrypt(plaintext)

    def decrypt_optional(self, token: str | None) -> str | None:
        return None if token is None else self.decrypt(token)
