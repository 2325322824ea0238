"""/api/v1/admin/failed-jobs: a tenant's admins list, retry and forget their tenant's failed
jobs, and only theirs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from notiflow.delivery.mail_folder import FolderMailSender
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime, wire_jobs
from notiflow.models import AuditLog, FailedJob, NotificationDelivery, User
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember, Member

FAILED = "/api/v1/admin/failed-jobs"


async def _failed(runtime: Runtime, tenant: Member | None, name: str, **fields: Any) -> FailedJob:
    async with runtime.sessionmaker() as session:
        job = FailedJob(
            job_name=name,
            args={"workspace_id": str(uuid.uuid4())},
            tenant_id=tenant.tenant_id if tenant else None,
            exception=f"RuntimeError: {name} broke",
            attempts=3,
            **fields,
        )
        session.add(job)
        await session.commit()
    return job


async def test_admins_list_their_tenants_failed_jobs_newest_first(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    outsider = await make_member("globex", role=Role.OWNER)
    older = await _failed(runtime, admin, "inbox.sync")
    newer = await _failed(runtime, admin, "social.refresh_tokens")
    await _failed(runtime, outsider, "inbox.archive_old")
    await _failed(runtime, None, "notifications.cleanup")  # platform-wide: nobody's

    response = await client.get(FAILED, headers=admin.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [row["id"] for row in body["data"]] == [str(newer.id), str(older.id)]
    assert body["meta"]["total"] == 2
    first = body["data"][0]
    assert first["job"] == "social.refresh_tokens"
    assert first["error"] == "RuntimeError: social.refresh_tokens broke"
    assert first["attempts"] == 3
    assert first["failed_at"]
    assert first["retried_at"] is None

    paged = (await client.get(FAILED, params={"per_page": 1}, headers=admin.headers)).json()
    assert [row["id"] for row in paged["data"]] == [str(newer.id)]
    by_cursor = await client.get(
        FAILED,
        params={"per_page": 1, "cursor": paged["meta"]["next_cursor"]},
        headers=admin.headers,
    )
    assert [row["id"] for row in by_cursor.json()["data"]] == [str(older.id)]

    one_job = await client.get(FAILED, params={"job": "inbox.sync"}, headers=admin.headers)
    assert [row["id"] for row in one_job.json()["data"]] == [str(older.id)]

    theirs = (await client.get(FAILED, headers=outsider.headers)).json()["data"]
    assert [row["job"] for row in theirs] == ["inbox.archive_old"]


async def test_members_may_not_see_or_touch_failed_jobs(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    job = await _failed(runtime, member, "inbox.sync")
    for method, path in [
        ("GET", FAILED),
        ("POST", f"{FAILED}/retry-all"),
        ("POST", f"{FAILED}/{job.id}/retry"),
        ("DELETE", f"{FAILED}/{job.id}"),
    ]:
        response = await client.request(method, path, headers=member.headers)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    assert (await client.get(FAILED)).status_code == 401


async def test_another_tenants_or_a_platform_job_is_not_found(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.OWNER)
    outsider = await make_member("globex", role=Role.OWNER)
    theirs = await _failed(runtime, outsider, "inbox.sync")
    platform = await _failed(runtime, None, "notifications.cleanup")
    for job in (theirs, platform, None):
        job_id = job.id if job else uuid.uuid4()
        for method, path in [
            ("POST", f"{FAILED}/{job_id}/retry"),
            ("DELETE", f"{FAILED}/{job_id}"),
        ]:
            response = await client.request(method, path, headers=admin.headers)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_found"
    async with runtime.sessionmaker() as session:
        rows = (await session.scalars(select(FailedJob))).all()
    assert {(row.id, row.retried_at) for row in rows} == {(theirs.id, None), (platform.id, None)}

    bad = await client.post(f"{FAILED}/not-an-id/retry", headers=admin.headers)
    assert bad.status_code == 404, "only an id names a failed job"
    assert bad.json()["error"]["code"] == "not_found"
    options = await client.options(f"{FAILED}/retry-all", headers=admin.headers)
    assert options.status_code == 405
    assert options.headers["allow"] == "POST"
    cursor = await client.get(FAILED, params={"cursor": "???"}, headers=admin.headers)
    assert cursor.status_code == 422
    assert cursor.json()["error"]["code"] == "validation_failed"


async def test_forget_deletes_the_job_and_is_audited(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    job = await _failed(runtime, admin, "inbox.sync")
    response = await client.delete(f"{FAILED}/{job.id}", headers=admin.headers)
    assert response.status_code == 204, response.text
    assert (await client.get(FAILED, headers=admin.headers)).json()["data"] == []
    again = await client.delete(f"{FAILED}/{job.id}", headers=admin.headers)
    assert again.status_code == 404
    async with runtime.sessionmaker() as session:
        [entry] = (await session.scalars(select(AuditLog))).all()
    assert (entry.action, entry.subject_id, entry.actor_id, entry.tenant_id) == (
        "failed_job.forgotten",
        str(job.id),
        admin.id,
        admin.tenant_id,
    )
    assert entry.before is not None
    assert entry.before["job"] == "inbox.sync"


async def test_retry_all_retries_only_the_tenants_jobs_not_retried_yet(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    outsider = await make_member("globex", role=Role.OWNER)
    mine = await _failed(runtime, admin, "inbox.sync")
    await _failed(runtime, admin, "inbox.archive_old", retried_at=utcnow())
    theirs = await _failed(runtime, outsider, "inbox.sync")
    response = await client.post(f"{FAILED}/retry-all", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert [row["id"] for row in response.json()["retried"]] == [str(mine.id)]
    assert response.json()["retried"][0]["retried_at"] is not None
    async with runtime.sessionmaker() as session:
        other = await session.get(FailedJob, theirs.id)
        assert other is not None
        assert other.retried_at is None
    listed = (await client.get(FAILED, headers=admin.headers)).json()["data"]
    assert listed == [], "retried jobs leave the list"
    everything = await client.get(FAILED, params={"include_retried": "true"}, headers=admin.headers)
    assert len(everything.json()["data"]) == 2


async def test_a_retried_failed_email_is_sent(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember, tmp_path: Path
) -> None:
    """A notification's email fails for good (the address was wrong); the address is fixed
    and an admin retries the failed job: the email is written to the mail folder and the
    ledger says sent."""
    mail = tmp_path / "mail"
    runtime.senders = {"email": FolderMailSender(mail)}
    wire_jobs(runtime)
    assert runtime.queue is not None
    await runtime.queue.start(runtime)
    try:
        admin = await make_member("acme", role=Role.ADMIN)
        alice = await make_member("acme")
        async with runtime.sessionmaker() as session:
            await session.execute(
                update(User).where(User.id == alice.id).values(email="alice-at-nowhere")
            )
            await session.commit()
        sent = await client.post(
            "/api/v1/notifications/send",
            json={
                "user_ids": [str(alice.id)],
                "type": "payment_failed",
                "title": "Payment failed",
                "message": "Update your card.",
            },
            headers=admin.headers,
        )
        assert sent.status_code == 202, sent.text
        job = await _eventually_one_failed_job(client, admin)
        assert job["job"] == "delivery.send"
        assert "invalid email address" in job["error"]
        assert list(mail.glob("*.eml")) == []

        async with runtime.sessionmaker() as session:
            await session.execute(
                update(User).where(User.id == alice.id).values(email="alice@acme.example")
            )
            await session.commit()
        retried = await client.post(f"{FAILED}/{job['id']}/retry", headers=admin.headers)
        assert retried.status_code == 200, retried.text
        delivery_id = uuid.UUID(job["args"]["delivery_id"])
        status = await _eventually_status(runtime, delivery_id, "sent")
        assert status == "sent"
        [written] = list(mail.glob("*.eml"))
        assert "alice@acme.example" in written.read_text()
        assert (await client.get(FAILED, headers=admin.headers)).json()["data"] == []
    finally:
        await runtime.queue.close()


async def _eventually_one_failed_job(client: httpx.AsyncClient, admin: Member) -> dict[str, Any]:
    for _ in range(500):
        rows = (await client.get(FAILED, headers=admin.headers)).json()["data"]
        if rows:
            [row] = rows
            return dict(row)
        await asyncio.sleep(0.02)
    raise AssertionError("the email never failed")


async def _eventually_status(runtime: Runtime, delivery_id: uuid.UUID, wanted: str) -> str:
    status = ""
    for _ in range(500):
        async with runtime.sessionmaker() as session:
            status = str(
                await session.scalar(
                    select(NotificationDelivery.status).where(
                        NotificationDelivery.id == delivery_id
                    )
                )
            )
        if status == wanted:
            return status
        await asyncio.sleep(0.02)
    return status
