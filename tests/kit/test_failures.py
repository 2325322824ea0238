"""Giving up: a failed_jobs row in the caller's transaction, the failure hook, and one alert
once the row is committed (none when the transaction rolls back)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from notiflow.admin.alerts import Alerter
from notiflow.kit.after_commit import commit_and_flush_effects
from notiflow.kit.failures import FinalFailure, give_up
from notiflow.main.runtime import Runtime
from notiflow.models import FailedJob
from tests.admin.webhook_receiver import WebhookReceiver


def failure_of(error: BaseException, tenant: uuid.UUID, **args: str) -> FinalFailure:
    try:
        raise error
    except type(error) as raised:
        return FinalFailure.of_error(
            "privacy.export", {"tenant_id": str(tenant), **args}, raised, attempts=3
        )


async def failed_jobs(runtime: Runtime) -> list[FailedJob]:
    async with runtime.sessionmaker() as session:
        return list((await session.scalars(select(FailedJob))).all())


async def test_giving_up_records_runs_the_hook_and_alerts_once(runtime: Runtime) -> None:
    receiver = await WebhookReceiver().start()
    alerter = Alerter(slack_webhook_url=receiver.url)
    tenant, workspace = uuid.uuid4(), uuid.uuid4()
    hook_calls: list[str] = []
    alerted_before_commit: list[int] = []

    async def hook() -> None:
        hook_calls.append("export marked failed")

    failure = failure_of(
        RuntimeError("disk full"), tenant, request_id="r1", workspace_id=str(workspace)
    )
    try:
        async with runtime.sessionmaker() as session:
            await give_up(session, failure, alerter=alerter, on_failure=hook)
            alerted_before_commit.append(len(receiver.received))
            await commit_and_flush_effects(session)
    finally:
        await alerter.close()
        await receiver.stop()

    assert hook_calls == ["export marked failed"]
    [row] = await failed_jobs(runtime)
    assert (row.job_name, row.attempts, row.tenant_id, row.workspace_id) == (
        "privacy.export",
        3,
        tenant,
        workspace,
    )
    assert row.args == {
        "tenant_id": str(tenant),
        "request_id": "r1",
        "workspace_id": str(workspace),
    }
    assert row.exception == "RuntimeError: disk full"
    assert row.traceback is not None
    assert "failure_of" in row.traceback, "the traceback says where the error was raised"
    assert alerted_before_commit == [0], "no alert before the row is committed"
    [alert] = receiver.received
    assert "privacy.export" in alert["text"]
    assert "RuntimeError: disk full" in alert["text"]
    assert str(tenant) in alert["text"]


async def test_a_rolled_back_give_up_records_nothing_and_alerts_no_one(runtime: Runtime) -> None:
    receiver = await WebhookReceiver().start()
    alerter = Alerter(slack_webhook_url=receiver.url)
    try:
        async with runtime.sessionmaker() as session:
            await give_up(session, failure_of(ValueError("bad"), uuid.uuid4()), alerter=alerter)
            await session.rollback()
    finally:
        await alerter.close()
        await receiver.stop()
    assert await failed_jobs(runtime) == []
    assert receiver.received == []


async def test_a_failing_hook_or_alert_does_not_undo_the_record(runtime: Runtime) -> None:
    class DownAlerter:
        calls = 0

        async def job_failed(
            self, job_name: str, error: str, tenant_id: uuid.UUID | None = None
        ) -> bool:
            self.calls += 1
            raise ConnectionError("alert webhook unreachable")

    async def broken_hook() -> None:
        raise RuntimeError("the hook broke too")

    alerter = DownAlerter()
    async with runtime.sessionmaker() as session:
        await give_up(
            session,
            failure_of(RuntimeError("boom"), uuid.uuid4()),
            alerter=alerter,
            on_failure=broken_hook,
        )
        await commit_and_flush_effects(session)
    [row] = await failed_jobs(runtime)
    assert row.exception == "RuntimeError: boom"
    assert alerter.calls == 1


async def test_a_delivery_failure_says_which_delivery_and_to_whom(runtime: Runtime) -> None:
    receiver = await WebhookReceiver().start()
    alerter = Alerter(slack_webhook_url=receiver.url)
    delivery, user, tenant = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    failure = FinalFailure(
        job_name="delivery.send",
        args={"delivery_id": str(delivery), "channel": "sms"},
        error="carrier refused",
        attempts=3,
        tenant_id=tenant,
        alert_error=f"sms to user {user}: carrier refused",
    )
    try:
        async with runtime.sessionmaker() as session:
            await give_up(session, failure, alerter=alerter)
            await commit_and_flush_effects(session)
    finally:
        await alerter.close()
        await receiver.stop()
    [row] = await failed_jobs(runtime)
    assert (row.exception, row.traceback, row.workspace_id) == ("carrier refused", None, None)
    [alert] = receiver.received
    assert f"sms to user {user}: carrier refused" in alert["text"]


@pytest.mark.parametrize("size", [10, 5_000])
def test_a_long_error_is_kept_to_its_start(size: int) -> None:
    failure = failure_of(RuntimeError("x" * size), uuid.uuid4())
    assert len(failure.error) == min(size + len("RuntimeError: "), 2000)
    assert failure.alert_error == f"RuntimeError: {'x' * size}"
