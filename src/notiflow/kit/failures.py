"""Giving up: the one path of a job, delivery or publish run that has no tries left.

Its failure hook runs (e.g. mark the post failed and tell its author), a ``failed_jobs`` row
records it in the caller's transaction (``notiflow jobs failed`` lists it, ``notiflow jobs
retry`` runs it again), and once that transaction has committed the admins are alerted (the
alerter holds back repeats of one job within its window)::

    failure = FinalFailure.of_error("privacy.export", args, error, attempts=3)
    async with unit_of_work(sessionmaker) as session:
        await give_up(session, failure, alerter=alerter, on_failure=hook)
    # committed: the row is there, then the alert went out

A rolled-back transaction records nothing and alerts no one.
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.kit.after_commit import after_commit
from notiflow.models import FailedJob

__all__ = ["FailureHook", "FinalFailure", "JobAlerter", "give_up"]

log = structlog.get_logger(__name__)

# What a failed_jobs row keeps of the error and of its traceback (the end, where it was raised).
ERROR_CHARS = 2000
TRACEBACK_CHARS = 10_000

FailureHook = Callable[[], Awaitable[None]]


class JobAlerter(Protocol):
    """Tells the admins that a job gave up (:class:`notiflow.admin.alerts.Alerter`)."""

    async def job_failed(
        self, job_name: str, error: str, tenant_id: uuid.UUID | None = None
    ) -> bool: ...


@dataclass(frozen=True, slots=True)
class FinalFailure:
    """A job that gave up: what its ``failed_jobs`` row and its alert say."""

    job_name: str
    # What ``notiflow jobs retry`` needs to run it again.
    args: dict[str, Any]
    error: str
    attempts: int
    tenant_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None
    traceback: str | None = None
    # The alert's text when it says more than ``error`` (which delivery, to whom).
    alert_error: str | None = None

    @classmethod
    def of_error(
        cls, job_name: str, args: dict[str, Any], error: BaseException, *, attempts: int
    ) -> FinalFailure:
        """The failure of a queued job that raised ``error`` (with the tenant and workspace
        its payload names)."""
        return cls(
            job_name=job_name,
            args=args,
            error=f"{type(error).__name__}: {error}"[:ERROR_CHARS],
            attempts=attempts,
            tenant_id=_uuid_or_none(args.get("tenant_id")),
            workspace_id=_uuid_or_none(args.get("workspace_id")),
            traceback="".join(traceback.format_exception(error))[-TRACEBACK_CHARS:],
            alert_error=f"{type(error).__name__}: {error}",
        )

    def row(self) -> FailedJob:
        return FailedJob(
            job_name=self.job_name,
            args=self.args,
            tenant_id=self.tenant_id,
            workspace_id=self.workspace_id,
            exception=self.error,
            traceback=self.traceback,
            attempts=self.attempts,
        )


def _uuid_or_none(value: object) -> uuid.UUID | None:
    """The id a payload names, or None when it names none (or one that is not an id: a payload
    that failed validation is recorded all the same)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def give_up(
    session: AsyncSession,
    failure: FinalFailure,
    *,
    alerter: JobAlerter | None,
    on_failure: FailureHook | None = None,
) -> None:
    """Run the failure hook, add the ``failed_jobs`` row to ``session`` and alert once it has
    committed (the caller's :func:`~notiflow.kit.uow.unit_of_work` runs the alert after it).

    The hook runs first, in its own transactions (it must not wait on locks ``session`` may
    hold, so callers whose transaction already locked rows pass none); a hook that fails is
    logged and the failure still recorded. An alert that cannot go out is logged too: it must
    not undo the record.
    """
    if on_failure is not None:
        try:
            await on_failure()
        except Exception:
            log.exception("job_failure_hook_failed", job=failure.job_name)
    session.add(failure.row())
    if alerter is not None:
        after_commit(session, _alert(alerter, failure))


def _alert(alerter: JobAlerter, failure: FinalFailure) -> FailureHook:
    async def alert() -> None:
        try:
            await alerter.job_failed(
                failure.job_name, failure.alert_error or failure.error, failure.tenant_id
            )
        except Exception:
            log.exception("alert_failed", job=failure.job_name)

    return alert
