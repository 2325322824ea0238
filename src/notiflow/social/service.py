"""Social accounts: connect, list, disconnect, and the account state changes jobs make."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlsplit

import structlog
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit.service import record
from notiflow.auth.actor import Actor
from notiflow.config import Environment
from notiflow.kit.bulk import dialect_insert
from notiflow.kit.crypto import TokenCipher
from notiflow.kit.errors import InvalidInput, NotFound, NotiflowError
from notiflow.kit.ids import new_id, utcnow
from notiflow.kit.pagination import Page
from notiflow.models import SocialAccount, Workspace
from notiflow.models.platform import AccountStatus
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.types import NotificationType
from notiflow.social.ports import PlatformContext
from notiflow.social.providers.base import (
    AccountProfile,
    Credentials,
    NeedsReauthError,
    PermanentError,
    ProviderError,
)
from notiflow.tenancy.service import admin_user_ids

log = structlog.get_logger(__name__)

# Providers whose accounts live on an instance the user names (no fixed endpoint).
NEEDS_INSTANCE_URL = frozenset({"mastodon"})
MASTODON_VISIBILITIES = frozenset({"public", "unlisted", "private", "direct"})
SANDBOX_RATES = ("failure_rate", "unknown_rate", "read_failure_rate")
SANDBOX_ERRORS = frozenset({"retryable", "needs_reauth", "permanent"})


class ProviderUnavailable(NotiflowError):
    """The network could not be asked (down, rate limited, no answer): try again later."""

    status_code = 502
    code = "provider_unavailable"


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    provider: str
    access_token: str
    refresh_token: str | None = None
    token_expires_at: datetime | None = None
    instance_url: str | None = None
    options: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    account: SocialAccount
    created: bool


def title_of(text: str) -> str:
    """A notification title fits its column (200 characters), whatever the handle's length."""
    return text if len(text) <= 200 else text[:199] + "…"


def account_path(account: SocialAccount) -> str:
    """Where the UI shows the account (the ``action_url`` of its notifications)."""
    return f"/workspaces/{account.workspace_id}/social-accounts/{account.id}"


async def notify_admins(
    context: PlatformContext,
    session: AsyncSession,
    tenant_id: uuid.UUID,
    payload: NotificationPayload,
) -> None:
    """Tell the tenant's owners and admins (nothing to do when it has none)."""
    recipients = await admin_user_ids(session, tenant_id)
    if recipients:
        await context.notification_service(session).send_to_users(
            recipients, payload, tenant_id=tenant_id
        )


async def mark_needs_reauth(
    context: PlatformContext, session: AsyncSession, account: SocialAccount, reason: str
) -> None:
    """The network refused the account's token: mark it ``needs_reauth`` and tell the owners.

    One incident, one notification: only the caller that moves the account out of ``active``
    (a conditional UPDATE, so two jobs hitting the same 401 at once cannot both win) sends
    ``account_token_expired``; the others see it already marked and do nothing. A reconnect
    makes it active again, and the next refusal is a new incident. Flushes, never commits.
    """
    reason = reason[:1000]
    await session.flush()
    now = utcnow()
    result = await session.execute(
        update(SocialAccount)
        .where(
            SocialAccount.id == account.id,
            SocialAccount.status == AccountStatus.ACTIVE.value,
        )
        .values(status=AccountStatus.NEEDS_REAUTH.value, status_reason=reason, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    await session.refresh(account)
    if getattr(result, "rowcount", 0) != 1:
        return
    await record(
        session,
        action="social_account.needs_reauth",
        subject_type="social_account",
        subject_id=account.id,
        before={"status": AccountStatus.ACTIVE.value},
        after={"status": AccountStatus.NEEDS_REAUTH.value, "reason": reason},
        actor_id=None,
        tenant_id=account.tenant_id,
    )
    await notify_admins(
        context,
        session,
        account.tenant_id,
        NotificationPayload(
            type=NotificationType.ACCOUNT_TOKEN_EXPIRED,
            title=title_of(f"Reconnect {account.handle}"),
            message=(
                f"{account.provider} no longer accepts notiflow's access to {account.handle} "
                f"({reason}). Scheduled posts and inbox sync for this account are paused "
                "until someone reconnects it."
            ),
            data={
                "social_account_id": str(account.id),
                "workspace_id": str(account.workspace_id),
                "provider": account.provider,
                "handle": account.handle,
                "reason": reason,
            },
            action_url=account_path(account),
            dedupe_key=f"account_reauth:{account.id}:{int(now.timestamp() * 1000)}",
        ),
    )


def public_fields(account: SocialAccount) -> dict[str, Any]:
    """What the audit trail keeps of an account: never a token."""
    return {
        "provider": account.provider,
        "external_account_id": account.external_account_id,
        "handle": account.handle,
        "instance_url": account.instance_url,
        "status": account.status,
        "token_expires_at": (
            account.token_expires_at.isoformat() if account.token_expires_at else None
        ),
    }


async def verify_credentials(
    context: PlatformContext, provider_name: str, credentials: Credentials
) -> AccountProfile:
    """Ask the network whose token this is; its refusals become 4xx/5xx in the one error shape."""
    provider = context.provider(provider_name)
    try:
        return await provider.verify(credentials)
    except NeedsReauthError as error:
        raise InvalidInput(
            f"{provider_name} refused this access token ({error.message}); "
            "check the token and its scopes, or create a new one",
            code="token_rejected",
            details=[{"loc": ["body", "access_token"], "msg": error.message}],
        ) from None
    except PermanentError as error:
        raise InvalidInput(
            f"{provider_name} refused the connection: {error.message}",
            code="provider_rejected",
        ) from None
    except ProviderError as error:
        log.warning("social_verify_unavailable", provider=provider_name, error=error.message)
        raise ProviderUnavailable(
            f"could not reach {provider_name} to check the token ({error.message}); "
            "nothing was saved, try again later",
            details={"retry_after": error.retry_after},
        ) from None


def normalized_instance_url(provider: str, instance_url: str | None) -> str | None:
    if instance_url is None:
        if provider in NEEDS_INSTANCE_URL:
            raise InvalidInput(
                f"instance_url is required for {provider} (e.g. https://mastodon.social)",
                details=[{"loc": ["body", "instance_url"], "msg": "field required"}],
            )
        return None
    return instance_url.rstrip("/")


async def check_public_instance(instance_url: str) -> None:
    """In production an instance must be a public https host: a tenant admin must not make
    notiflow call its own network (localhost, private, link-local addresses)."""
    parts = urlsplit(instance_url)
    host = parts.hostname or ""

    def refuse(msg: str) -> InvalidInput:
        return InvalidInput(
            f"instance_url: {msg}", details=[{"loc": ["body", "instance_url"], "msg": msg}]
        )

    if parts.scheme != "https":
        raise refuse("use https")
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443)
    except OSError:
        raise refuse(f"cannot resolve {host}") from None
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global:
            raise refuse(f"{host} is not a public address")


def option_errors(provider: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """What is wrong with a provider's options (empty when nothing is)."""
    errors: list[dict[str, Any]] = []

    def bad(key: str, msg: str) -> None:
        errors.append({"loc": ["body", "options", key], "msg": msg})

    if provider == "mastodon":
        visibility = options.get("visibility")
        if visibility is not None and visibility not in MASTODON_VISIBILITIES:
            bad("visibility", f"one of {', '.join(sorted(MASTODON_VISIBILITIES))}")
    if provider == "sandbox":
        for key in SANDBOX_RATES:
            value = options.get(key)
            if value is not None and not (_is_number(value) and 0 <= value <= 1):
                bad(key, "a number between 0 and 1")
        latency = options.get("latency_ms")
        if latency is not None and not (_is_number(latency) and 0 <= latency <= 10_000):
            bad("latency_ms", "a number of milliseconds between 0 and 10000")
        refresh_error = options.get("refresh_error")
        if refresh_error is not None and refresh_error not in SANDBOX_ERRORS:
            bad("refresh_error", f"one of {', '.join(sorted(SANDBOX_ERRORS))}")
    return errors


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


async def connect_account(
    context: PlatformContext,
    session: AsyncSession,
    workspace: Workspace,
    request: ConnectRequest,
    actor: Actor,
) -> Connected:
    """Verify the token with the network, then store the account with its tokens encrypted.

    The same network account connected again (same workspace, provider and external id) is
    updated and made active again: this is how an account that needs reauthentication is fixed.
    A reconnect without a refresh token keeps the stored one.
    """
    context.provider(request.provider)  # 422 for an unknown provider, before any call
    instance_url = normalized_instance_url(request.provider, request.instance_url)
    options = dict(request.options or {})
    errors = option_errors(request.provider, options)
    if request.token_expires_at is not None and request.token_expires_at <= utcnow():
        errors.append(
            {"loc": ["body", "token_expires_at"], "msg": "already past: this token has expired"}
        )
    if errors:
        where = ".".join(str(part) for part in errors[0]["loc"][1:])
        raise InvalidInput(f"{where}: {errors[0]['msg']}", details=errors)
    if instance_url is not None and context.settings.env is Environment.PRODUCTION:
        await check_public_instance(instance_url)
    credentials = Credentials(
        access_token=request.access_token,
        refresh_token=request.refresh_token,
        token_expires_at=request.token_expires_at,
        instance_url=instance_url,
        options=options,
    )
    profile = await verify_credentials(context, request.provider, credentials)
    created = await _insert_if_missing(session, workspace, request.provider, profile)
    account = await _find(session, workspace.id, request.provider, profile.external_account_id)
    if account is None:  # pragma: no cover - inserted or found just above
        raise NotFound("social account not found")
    before = None if created else public_fields(account)
    account.handle = profile.handle
    _apply_connection(account, request, instance_url, options, context.token_cipher(), actor)
    await session.flush()
    await record(
        session,
        action="social_account.connected" if created else "social_account.reconnected",
        subject_type="social_account",
        subject_id=account.id,
        before=before,
        after=public_fields(account),
        actor_id=actor.user_id,
        tenant_id=workspace.tenant_id,
        ip_address=actor.ip_address,
    )
    await notify_admins(
        context,
        session,
        workspace.tenant_id,
        NotificationPayload(
            type=NotificationType.ACCOUNT_CONNECTED,
            title=title_of(f"{account.handle} {'connected' if created else 'reconnected'}"),
            message=(
                f"{account.provider} account {account.handle} is connected to "
                f"{workspace.name}: notiflow can publish to it and read its mentions."
            ),
            data={
                "social_account_id": str(account.id),
                "workspace_id": str(workspace.id),
                "provider": account.provider,
                "handle": account.handle,
                "reconnected": not created,
            },
            action_url=account_path(account),
        ),
    )
    return Connected(account=account, created=created)


def _apply_connection(
    account: SocialAccount,
    request: ConnectRequest,
    instance_url: str | None,
    options: dict[str, Any],
    cipher: TokenCipher,
    actor: Actor,
) -> None:
    account.access_token_encrypted = cipher.encrypt(request.access_token)
    if request.refresh_token is not None:
        account.refresh_token_encrypted = cipher.encrypt(request.refresh_token)
    account.token_expires_at = request.token_expires_at
    account.instance_url = instance_url
    if request.options is not None or account.options is None:
        account.options = options
    account.status = AccountStatus.ACTIVE.value
    account.status_reason = None
    account.disconnected_at = None
    account.expiry_notified_at = None
    account.connected_by = actor.user_id


async def _insert_if_missing(
    session: AsyncSession, workspace: Workspace, provider: str, profile: AccountProfile
) -> bool:
    """Insert the account row unless it exists (also when connected at this very moment by
    someone else: INSERT ... ON CONFLICT DO NOTHING, no savepoint). True if inserted."""
    table = cast(Table, SocialAccount.__table__)
    now = utcnow()
    statement = (
        dialect_insert(session, table)
        .values(
            id=new_id(),
            tenant_id=workspace.tenant_id,
            workspace_id=workspace.id,
            provider=provider,
            external_account_id=profile.external_account_id,
            handle=profile.handle,
            options={},
            status=AccountStatus.ACTIVE.value,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["workspace_id", "provider", "external_account_id"])
        .returning(table.c.id)
    )
    inserted = (await session.execute(statement)).scalar_one_or_none()
    return inserted is not None


async def _find(
    session: AsyncSession, workspace_id: uuid.UUID, provider: str, external_account_id: str
) -> SocialAccount | None:
    found: SocialAccount | None = await session.scalar(
        select(SocialAccount).where(
            SocialAccount.workspace_id == workspace_id,
            SocialAccount.provider == provider,
            SocialAccount.external_account_id == external_account_id,
        )
    )
    return found


async def get_account(
    session: AsyncSession, workspace: Workspace, account_id: uuid.UUID
) -> SocialAccount:
    """An account of this workspace (404 otherwise, also for another tenant's)."""
    account = await session.get(SocialAccount, account_id)
    if account is None or account.workspace_id != workspace.id:
        raise NotFound("social account not found")
    return account


async def list_accounts(
    session: AsyncSession,
    workspace: Workspace,
    *,
    status: AccountStatus | None = None,
    page: int = 1,
    per_page: int = 50,
) -> Page[SocialAccount]:
    query = select(SocialAccount).where(SocialAccount.workspace_id == workspace.id)
    if status is not None:
        query = query.where(SocialAccount.status == status.value)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = (
        await session.scalars(
            query.order_by(SocialAccount.created_at, SocialAccount.id)
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    ).all()
    return Page(items=list(rows), per_page=per_page, next_cursor=None, page=page, total=total or 0)


async def disconnect_account(
    context: PlatformContext,
    session: AsyncSession,
    workspace: Workspace,
    account_id: uuid.UUID,
    actor: Actor,
) -> SocialAccount:
    """Stop using the account and forget its tokens. Disconnecting twice changes nothing."""
    account = await get_account(session, workspace, account_id)
    if account.status == AccountStatus.DISABLED.value:
        return account
    before = public_fields(account)
    account.status = AccountStatus.DISABLED.value
    account.status_reason = "disconnected"
    account.access_token_encrypted = None
    account.refresh_token_encrypted = None
    account.token_expires_at = None
    account.disconnected_at = utcnow()
    await session.flush()
    await record(
        session,
        action="social_account.disconnected",
        subject_type="social_account",
        subject_id=account.id,
        before=before,
        after=public_fields(account),
        actor_id=actor.user_id,
        tenant_id=workspace.tenant_id,
        ip_address=actor.ip_address,
    )
    await notify_admins(
        context,
        session,
        workspace.tenant_id,
        NotificationPayload(
            type=NotificationType.ACCOUNT_DISCONNECTED,
            title=title_of(f"{account.handle} disconnected"),
            message=(
                f"{account.provider} account {account.handle} was disconnected from "
                f"{workspace.name}; its tokens were deleted. Posts scheduled for it will not "
                "be published until it is connected again."
            ),
            data={
                "social_account_id": str(account.id),
                "workspace_id": str(workspace.id),
                "provider": account.provider,
                "handle": account.handle,
            },
            action_url=account_path(account),
        ),
    )
    return account
