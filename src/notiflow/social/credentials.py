"""From a stored account to the :class:`Credentials` an adapter takes, and back for new tokens."""

from __future__ import annotations

from notiflow.kit.crypto import TokenCipher
from notiflow.models import SocialAccount
from notiflow.social.providers.base import Credentials, TokenGrant


def credentials_of(account: SocialAccount, cipher: TokenCipher) -> Credentials:
    return Credentials(
        access_token=cipher.decrypt_optional(account.access_token_encrypted),
        refresh_token=cipher.decrypt_optional(account.refresh_token_encrypted),
        token_expires_at=account.token_expires_at,
        external_account_id=account.external_account_id,
        instance_url=account.instance_url,
        options=dict(account.options or {}),
    )


def store_grant(account: SocialAccount, cipher: TokenCipher, grant: TokenGrant) -> None:
    """Keep a refreshed token (encrypted). A grant without a refresh token keeps the old one."""
    account.access_token_encrypted = cipher.encrypt(grant.access_token)
    if grant.refresh_token is not None:
        account.refresh_token_encrypted = cipher.encrypt(grant.refresh_token)
    account.token_expires_at = grant.expires_at
