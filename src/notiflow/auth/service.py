"""Issuing and checking personal access tokens and passwords.

Tokens look like Sanctum's: ``<token id>|<secret>``. Only a SHA-256 of the secret is stored; the
secret has 256 bits of entropy, so a fast hash is enough and keeps every request cheap. Passwords,
which people choose, are hashed with argon2: in worker threads, a few at a time (argon2 releases
the GIL), behind the login throttle (``notiflow.auth.throttle``): failed logins cannot freeze the
API.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from notiflow.audit import service as audit
from notiflow.auth.actor import AuthenticatedActor
from notiflow.auth.throttle import LoginThrottle, Refusal, address_bucket
from notiflow.kit.errors import NotiflowError, TooManyRequests, Unauthorized
from notiflow.kit.ids import utcnow
from notiflow.kit.tenant_scope import in_tenant
from notiflow.models import Membership, PersonalAccessToken, User
from notiflow.models.tenancy import Role

_password_hasher = PasswordHasher()
# Compared against when the email is unknown, so a login takes as long either way.
_DUMMY_HASH = _password_hasher.hash(secrets.token_urlsafe(16))


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


async def authenticate_token(session: AsyncSession, plain_token: str) -> AuthenticatedActor:
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
                & in_tenant(Membership, PersonalAccessToken.tenant_id),
            )
            .where(PersonalAccessToken.id == token_id)
        )
    ).first()
    if row is None or not hmac.compare_digest(row[0].token_hash, _hash_secret(secret)):
        raise Unauthorized("invalid or revoked token")
    token, user, role = row
    now = utcnow()
    if token.expires_at is not None and token.expires_at <= now:
        raise Unauthorized("token expired")
    await _record_use(session, token, now)
    return AuthenticatedActor(
        user=user, user_id=user.id, tenant_id=token.tenant_id, role=Role(role), token_id=token.id
    )


# How stale a token's ``last_used_at`` may get: it is written at most once per this per token,
# so a busy token costs one UPDATE a minute rather than making every read request a write.
LAST_USED_RESOLUTION = timedelta(seconds=60)


async def _record_use(session: AsyncSession, token: PersonalAccessToken, now: datetime) -> None:
    """Stamp ``last_used_at`` when the stored one is older than ``LAST_USED_RESOLUTION``.

    Committed with the request. Concurrent requests of the same token skip a row another one is
    stamping (SKIP LOCKED) instead of waiting for that request to end."""
    stale = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > stale:
        return
    claim = (
        select(PersonalAccessToken.id)
        .where(
            PersonalAccessToken.id == token.id,
            or_(
                PersonalAccessToken.last_used_at.is_(None),
                PersonalAccessToken.last_used_at <= stale,
            ),
        )
        .with_for_update(skip_locked=True)
    )
    await session.execute(
        update(PersonalAccessToken)
        .where(PersonalAccessToken.id.in_(claim.scalar_subquery()))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    # What this request reads of the token (its own listing) shows the stamp.
    set_committed_value(token, "last_used_at", now)


class PasswordChecker:
    """Verifies passwords in ``concurrency`` threads of its own (further checks wait their turn).

    The threads run at a lower CPU priority (niceness ``PASSWORD_THREAD_NICENESS``, Linux only):
    argon2 fills both cores for ~0.2 s per check, and under a login flood the event loop, at
    normal priority, still gets the CPU whenever a request needs it. Not the shared
    ``anyio.to_thread`` pool: a thread's niceness cannot be raised back, so it stays with the
    threads of this pool.
    """

    def __init__(self, concurrency: int | None = None) -> None:
        # Half the cores by default: one check already keeps two cores busy (measured: on 2 cores
        # two at once doubled the p99 of other requests during a login flood).
        self.concurrency = concurrency or max(1, (os.cpu_count() or 2) // 2)
        self._pool = ThreadPoolExecutor(
            max_workers=self.concurrency,
            thread_name_prefix="notiflow-password",
            initializer=_lower_thread_priority,
        )

    async def verify(self, password_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, verify_password, password_hash, password)


# Under contention a nice-10 thread gets ~1/10 of what a normal one gets: a login still takes
# about a second on a saturated machine, while requests keep their latency.
PASSWORD_THREAD_NICENESS = 10


def _lower_thread_priority() -> None:
    # argon2 computes its lanes in threads started from this one; they inherit its niceness.
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PASSWORD_THREAD_NICENESS)


@dataclass(frozen=True, slots=True)
class LoginAudit:
    """An audit entry about a refused login, written by the caller in a transaction of its own
    (the request's rolls back with the refusal). Never holds the password."""

    action: str
    subject_type: str
    subject_id: uuid.UUID | None
    after: dict[str, Any]
    ip_address: str | None


@dataclass(frozen=True, slots=True)
class LoginGuard:
    """What protects the password check: the throttle and the bounded thread pool."""

    throttle: LoginThrottle
    checker: PasswordChecker


class LoginRefused(Exception):
    """The login was refused with ``error``; ``entry`` is the audit entry to record, if any
    (with :func:`record_refused_login`)."""

    def __init__(self, error: NotiflowError, entry: LoginAudit | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.entry = entry


async def record_refused_login(session: AsyncSession, entry: LoginAudit) -> None:
    """Write the audit entry of a refused login. Give it a session of its own and commit that:
    the request's transaction rolls back with the refusal. No actor, no tenant: nobody is
    signed in."""
    await audit.record(
        session,
        action=entry.action,
        subject_type=entry.subject_type,
        subject_id=entry.subject_id,
        before=None,
        after=entry.after,
        actor_id=None,
        tenant_id=None,
        ip_address=entry.ip_address,
    )


def _invalid_credentials() -> Unauthorized:
    return Unauthorized("email or password is incorrect", code="invalid_credentials")


def _email_digest(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:16]


async def login(
    session: AsyncSession,
    email: str,
    password: str,
    tenant_id: uuid.UUID | None = None,
    *,
    guard: LoginGuard,
    address: str | None = None,
) -> tuple[str, User, uuid.UUID]:
    """Check a password and issue a token for one of the user's tenants.

    Raises :class:`LoginRefused`: 429 when a throttle limit is reached (no password is checked,
    not even the user looked up), 401 ``invalid_credentials`` otherwise, the same for an unknown
    email, a wrong password or a tenant the user is not in, and taking as long.
    """
    email = email.strip().lower()
    refusal = await guard.throttle.begin(email, address)
    if refusal is not None:
        raise LoginRefused(
            _throttled(refusal),
            await _throttle_audit(session, refusal, email, address) if refusal.first else None,
        )
    user = await session.scalar(select(User).where(User.email == email))
    # Nothing is written yet: hand the connection back to the pool while the password check
    # waits its turn, or a login flood would hold the pool and stall every other request.
    # (close() keeps the loaded user readable, detached; the session opens a new transaction.)
    await session.close()
    password_ok = await guard.checker.verify(user.password_hash if user else None, password)
    if not password_ok or user is None:
        reason = "unknown_email" if user is None else "wrong_password"
        if user is not None and not user.password_hash:
            reason = "no_password"
        raise LoginRefused(_invalid_credentials(), _failure_audit(user, email, address, reason))
    memberships = select(Membership.tenant_id).where(Membership.user_id == user.id)
    if tenant_id is not None:
        memberships = memberships.where(in_tenant(Membership, tenant_id))
    chosen = await session.scalar(memberships.order_by(Membership.created_at).limit(1))
    if chosen is None:
        raise LoginRefused(
            _invalid_credentials(), _failure_audit(user, email, address, "not_a_member")
        )
    await guard.throttle.succeeded(email, address)
    token = await issue_token(session, user.id, chosen, name="login")
    return token, user, chosen


def _throttled(refusal: Refusal) -> TooManyRequests:
    limit = refusal.limit
    whom = "this account" if limit.kind == "account" else "your address"
    return TooManyRequests(
        f"too many failed logins for {whom}: at most {limit.max_failures} per "
        f"{limit.window_seconds} s; try again later",
        retry_after=refusal.retry_after,
        details={"limit": limit.kind, "retry_after_seconds": max(1, round(refusal.retry_after))},
    )


def _failure_audit(user: User | None, email: str, address: str | None, reason: str) -> LoginAudit:
    if user is None:  # no account to file it under; the email is kept only as a digest
        return LoginAudit(
            "auth.login_failed",
            "login",
            None,
            {"reason": reason, "email_sha256": _email_digest(email)},
            address,
        )
    return LoginAudit("auth.login_failed", "user", user.id, {"reason": reason}, address)


async def _throttle_audit(
    session: AsyncSession, refusal: Refusal, email: str, address: str | None
) -> LoginAudit:
    limit = refusal.limit
    after: dict[str, Any] = {
        "limit": limit.kind,
        "max_failures": limit.max_failures,
        "window_seconds": limit.window_seconds,
    }
    if limit.kind == "address":
        after["address"] = address_bucket(address)
        return LoginAudit("auth.login_throttled", "login", None, after, address)
    # Once per window: worth a lookup to file it under the account.
    user_id = await session.scalar(select(User.id).where(User.email == email))
    if user_id is None:
        after["email_sha256"] = _email_digest(email)
        return LoginAudit("auth.login_throttled", "login", None, after, address)
    return LoginAudit("auth.login_throttled", "user", user_id, after, address)
