"""Social jobs: ``social.refresh_tokens``, daily per workspace at its local time."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.crypto import InvalidToken
from notiflow.kit.ids import utcnow
from notiflow.kit.locks import job_lease
from notiflow.kit.queue import Job, WorkspacePayload
from notiflow.kit.uow import unit_of_work
from notiflow.models import SocialAccount
from notiflow.models.platform import AccountStatus
from notiflow.notifications.sending import NotificationPayload
from notiflow.notifications.types import NotificationType
from notiflow.social.credentials import credentials_of, store_grant
from notiflow.social.ports import PlatformContext
from notiflow.social.providers.base import (
    NeedsReauthError,
    PermanentError,
    ProviderError,
    TokenGrant,
)
from notiflow.social.service import account_path, mark_needs_reauth, notify_admins, title_of

log = structlog.get_logger(__name__)

JOB_NAME = "social.refresh_tokens"
# One run per workspace at a time (so one refresh per account at a time: a rotated refresh
# token is never used twice); a holder that dies frees it after this long.
LEASE_SECONDS = 900.0


class Outcome(StrEnum):
    REFRESHED = "refreshed"
    RETRY = "retry"  # the network could not refresh now; kept active, told once
    CANNOT_REFRESH = "cannot_refresh"  # the network has no refresh; told once to reconnect
    NEEDS_REAUTH = "needs_reauth"
    SKIPPED = "skipped"  # no longer due, changed meanwhile, or an unknown provider


class TokenRefreshIncomplete(Exception):
    """Some accounts could not be refreshed now: the queue retries the run (with backoff)."""


async def refresh_tokens(context: PlatformContext, payload: WorkspacePayload) -> None:
    """Refresh the workspace's active tokens that expire within the refresh window.

    Each account is refreshed in its own transaction and one account's failure never stops the
    others. A network refusal (401/invalid grant) or a token already past its expiry marks the
    account ``needs_reauth`` (``account_token_expired``, once per incident); a temporary failure
    keeps it active, records why, tells the owners once that it is expiring
    (``account_token_expiring``, via ``expiry_notified_at``) and makes the run retry later.
    """
    workspace_id = payload.workspace_id
    async with job_lease(
        context.sessionmaker, f"{JOB_NAME}:{workspace_id}", seconds=LEASE_SECONDS
    ) as held:
        if not held:
            log.info("token_refresh_skipped", job=JOB_NAME, workspace_id=str(workspace_id))
            return
        now = utcnow()
        horizon = now + timedelta(days=context.settings.token_refresh_window_days)
        async with context.sessionmaker() as session:
            account_ids = list(
                (
                    await session.scalars(
                        select(SocialAccount.id)
                        .where(
                            SocialAccount.workspace_id == workspace_id,
                            SocialAccount.status == AccountStatus.ACTIVE.value,
                            SocialAccount.token_expires_at.is_not(None),
                            SocialAccount.token_expires_at <= horizon,
                        )
                        .order_by(SocialAccount.token_expires_at)
                    )
                ).all()
            )
        outcomes: dict[str, int] = {}
        crashed = 0
        for account_id in account_ids:
            try:
                outcome = await refresh_account(context, account_id)
            except Exception:  # one account's failure must not stop the others
                log.exception("token_refresh_crashed", job=JOB_NAME, account_id=str(account_id))
                crashed += 1
                continue
            outcomes[outcome.value] = outcomes.get(outcome.value, 0) + 1
        log.info(
            "token_refresh",
            job=JOB_NAME,
            workspace_id=str(workspace_id),
            tenant_id=str(payload.tenant_id),
            due=len(account_ids),
            crashed=crashed,
            **outcomes,
        )
        if crashed or outcomes.get(Outcome.RETRY.value):
            raise TokenRefreshIncomplete(
                f"{outcomes.get(Outcome.RETRY.value, 0)} token(s) could not be refreshed now "
                f"and {crashed} failed unexpectedly in workspace {workspace_id}"
            )


async def refresh_account(context: PlatformContext, account_id: uuid.UUID) -> Outcome:
    """Refresh one account's token (re-checked here: the job may run late or twice)."""
    cipher = context.token_cipher()
    window = timedelta(days=context.settings.token_refresh_window_days)
    async with unit_of_work(context.sessionmaker) as session:
        now = utcnow()
        account = await session.get(SocialAccount, account_id)
        if (
            account is None
            or account.status != AccountStatus.ACTIVE.value
            or account.token_expires_at is None
            or account.token_expires_at > now + window
        ):
            return Outcome.SKIPPED
        if account.token_expires_at <= now:
            expired = account.token_expires_at.isoformat(timespec="minutes")
            await mark_needs_reauth(
                context, session, account, f"the access token expired at {expired}"
            )
            return Outcome.NEEDS_REAUTH
        provider = context.providers.get(account.provider)
        if provider is None:
            log.warning("token_refresh_unknown_provider", provider=account.provider)
            return Outcome.SKIPPED
        try:
            credentials = credentials_of(account, cipher)
        except InvalidToken:
            await mark_needs_reauth(
                context, session, account, "the stored token cannot be decrypted with our keys"
            )
            return Outcome.NEEDS_REAUTH
        stored_token = account.access_token_encrypted

    # No transaction stays open while the network answers.
    grant: TokenGrant | None = None
    failure: ProviderError | None = None
    try:
        grant = await provider.refresh_token(credentials)
    except ProviderError as error:
        failure = error

    async with unit_of_work(context.sessionmaker) as session:
        now = utcnow()
        refreshed = await session.get(SocialAccount, account_id)
        if (
            refreshed is None
            or refreshed.status != AccountStatus.ACTIVE.value
            or refreshed.access_token_encrypted != stored_token
        ):
            return Outcome.SKIPPED  # disconnected or reconnected meanwhile: theirs wins
        if isinstance(failure, NeedsReauthError | PermanentError):
            await mark_needs_reauth(
                context, session, refreshed, f"token refresh refused: {failure.message}"
            )
            outcome = Outcome.NEEDS_REAUTH
        elif failure is not None:
            refreshed.status_reason = f"token refresh failed, will retry: {failure.message}"
            await _tell_expiring_once(context, session, refreshed, now, failure.message)
            outcome = Outcome.RETRY
        elif grant is None:
            await _tell_expiring_once(context, session, refreshed, now, None)
            outcome = Outcome.CANNOT_REFRESH
        else:
            store_grant(refreshed, cipher, grant)
            refreshed.last_refresh_at = now
            refreshed.status_reason = None
            refreshed.expiry_notified_at = None
            outcome = Outcome.REFRESHED
        await session.flush()
    log.info(
        "token_refresh_account",
        job=JOB_NAME,
        account_id=str(account_id),
        provider=refreshed.provider,
        outcome=outcome.value,
        error=failure.message if failure is not None else None,
    )
    return outcome


async def _tell_expiring_once(
    context: PlatformContext,
    session: AsyncSession,
    account: SocialAccount,
    now: datetime,
    error: str | None,
) -> None:
    """``account_token_expiring`` to the owners and admins, once per expiry."""
    if account.expiry_notified_at is not None or account.token_expires_at is None:
        return
    account.expiry_notified_at = now
    expires = account.token_expires_at.strftime("%Y-%m-%d %H:%M UTC")
    why = (
        f"notiflow could not renew it ({error}) and will keep trying"
        if error is not None
        else f"{account.provider} does not let notiflow renew it"
    )
    await notify_admins(
        context,
        session,
        account.tenant_id,
        NotificationPayload(
            type=NotificationType.ACCOUNT_TOKEN_EXPIRING,
            title=title_of(f"{account.handle}: access expires {account.token_expires_at:%b %d}"),
            message=(
                f"The access to {account.provider} account {account.handle} expires on "
                f"{expires}; {why}. Reconnect the account before then to keep publishing."
            ),
            data={
                "social_account_id": str(account.id),
                "workspace_id": str(account.workspace_id),
                "provider": account.provider,
                "handle": account.handle,
                "expires_at": account.token_expires_at.isoformat(),
            },
            action_url=account_path(account),
            dedupe_key=f"account_expiring:{account.id}:{int(account.token_expires_at.timestamp())}",
        ),
    )


JOBS: list[Job[PlatformContext, Any]] = [
    Job(JOB_NAME, refresh_tokens, WorkspacePayload, max_attempts=3, backoff_seconds=300.0)
]
