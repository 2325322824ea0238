"""Issuing and checking personal access tokens and passwords.

Tokens look like Sanctum's: ``<token id>|<secret>``. Only a SHA-256 of the secret is stored; the
secret has 256 bits of entropy, so a fast hash is enough and keeps every request cheap. Passwords,
which people choose, are hashed with argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.errors import Unauthorized
from notiflow.kit.ids import utcnow
from notiflow.models import Membership, PersonalAccessToken, User
from notiflow.models.tenancy import Role

_password_hasher = PasswordHasher()
# Compared against when the email is unknown, so a login takes as long either way.
_DUMMY_HASH = _password_hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class AuthContext:
    """The authenticated caller: a user acting within one tenant."""

    user: User
    tenant_id: uuid.UUID
    role: Role
    token_id: uuid.UUID


def hash_password(password: str) -> str:
    return _password_hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _password_hasher.verify(password_hash or _DUMMY_HASH, password) and bool(
            password_hash
        )
    except (VerificationError, InvalidHashError):
        return False


def _hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue_token(
    session: AsyncSession, user_id: uuid.UUID, tenant_id: uuid.UUID, name: str = "api"
) -> str:
    """Create a token and return its plain text (shown once, never stored)."""
    secret = secrets.token_urlsafe(32)
    token = PersonalAccessToken(
        user_id=user_id, tenant_id=tenant_id, name=name, token_hash=_hash_secret(secret)
    )
    session.add(token)
    await session.flush()
    return f"{token.id}|{secret}"


async def authenticate_token(session: AsyncSession, plain_token: str) -> AuthContext:
    token_id_text, separator, secret = plain_token.partition("|")
    if not separator or not secret:
        raise Unauthorized("malformed token: expected '<id>|<secret>'")
    try:
        token_id = uuid.UUID(token_id_text)
    except ValueError:
        raise Unauthorized("malformed token: expected '<id>|<secret>'") from None
    row = (
        await session.execute(
            select(PersonalAccessToken, User, Membership.role)
            .join(User, User.id == PersonalAccessToken.user_id)
            .join(
                Membership,
                (Membership.user_id == PersonalAccessToken.user_id)
                & (Membership.tenant_id == PersonalAccessToken.tenant_id),
            )
            .where(PersonalAccessToken.id == token_id)
        )
    ).first()
    if row is None or not hmac.compare_digest(row[0].token_hash, _hash_secret(secret)):
        raise Unauthorized("invalid or revoked token")
    token, user, role = row
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise Unauthorized("token expired")
    return AuthContext(user=user, tenant_id=token.tenant_id, role=Role(role), token_id=token.id)


async def login(
    session: AsyncSession, email: str, password: str, tenant_id: uuid.UUID | None = None
) -> tuple[str, User, uuid.UUID]:
    """Check a password and issue a token for one of the user's tenants."""
    user = await session.scalar(select(User).where(User.email == email.strip().lower()))
    if not verify_password(user.password_hash if user else None, password) or user is None:
        raise Unauthorized("email or password is incorrect", code="invalid_credentials")
    memberships = select(Membership.tenant_id).where(Membership.user_id == user.id)
    if tenant_id is not None:
        memberships = memberships.where(Membership.tenant_id == tenant_id)
    chosen = await session.scalar(memberships.order_by(Membership.created_at).limit(1))
    if chosen is None:
        raise Unauthorized("email or password is incorrect", code="invalid_credentials")
    token = await issue_token(session, user.id, chosen, name="login")
    return token, user, chosen
