"""``privacy.sweep``: lost wake-ups, due deletions, expired exports, files of users who are gone."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

from notiflow.kit.ids import utcnow
from notiflow.kit.queue import run_job
from notiflow.main.jobs import ALL_JOBS
from notiflow.main.runtime import Runtime
from notiflow.models import DataDeletionRequest, DataExportRequest, User
from notiflow.models.platform import RequestStatus
from notiflow.privacy.jobs import export_data, sweep_once
from notiflow.privacy.service import RequestPayload
from tests.conftest import MakeMember
from tests.delivery.conftest import SmtpServer
from tests.privacy.conftest import RecordingQueue

JOBS = {job.name: job for job in ALL_JOBS}


async def test_the_privacy_jobs_are_registered() -> None:
    assert {"privacy.export", "privacy.delete", "privacy.sweep"} <= set(JOBS)


async def test_the_sweep_wakes_lost_exports_and_due_deletions_and_runs_them(
    privacy_runtime: Runtime,
    make_member: MakeMember,
    queue: RecordingQueue,
    smtp_server: SmtpServer,
) -> None:
    leaving = await make_member("acme")
    staying = await make_member("acme")
    waiting = await make_member("acme")
    now = utcnow()
    async with privacy_runtime.sessionmaker() as session:
        lost = DataExportRequest(
            user_id=staying.id, tenant_id=staying.tenant_id, created_at=now - timedelta(minutes=5)
        )
        fresh = DataExportRequest(user_id=waiting.id, tenant_id=waiting.tenant_id)
        due = DataDeletionRequest(
            user_id=leaving.id,
            tenant_id=leaving.tenant_id,
            scheduled_for=now - timedelta(minutes=1),
        )
        later = DataDeletionRequest(
            user_id=waiting.id, tenant_id=waiting.tenant_id, scheduled_for=now + timedelta(days=3)
        )
        cancelled = DataDeletionRequest(
            user_id=staying.id,
            tenant_id=staying.tenant_id,
            scheduled_for=now - timedelta(days=1),
            status=RequestStatus.CANCELLED.value,
        )
        session.add_all([lost, fresh, due, later, cancelled])
        await session.commit()

    summary = await sweep_once(privacy_runtime)

    assert summary["exports_woken"] == 1
    assert summary["deletions_woken"] == 1
    assert queue.enqueued == [
        ("privacy.export", {"request_id": str(lost.id), "tenant_id": str(staying.tenant_id)}),
        ("privacy.delete", {"request_id": str(due.id), "tenant_id": str(leaving.tenant_id)}),
    ]
    for name, payload in queue.enqueued:
        await run_job(privacy_runtime, JOBS[name], payload)

    async with privacy_runtime.sessionmaker() as session:
        assert await session.get(User, leaving.id) is None
        assert await session.get(User, staying.id) is not None
        exported = await session.get(DataExportRequest, lost.id)
        deleted = await session.get(DataDeletionRequest, due.id)
        untouched = await session.get(DataDeletionRequest, later.id)
    assert exported is not None
    assert exported.status == "completed"
    assert deleted is not None
    assert deleted.status == "completed"
    assert deleted.report["counts"]["users"] == 1
    assert untouched is not None
    assert untouched.status == "pending"
    assert [mail.rcpt_tos for mail in smtp_server.received] == [[leaving.user.email]]


async def test_the_sweep_expires_old_exports_and_removes_their_files(
    privacy_runtime: Runtime, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    ids = []
    async with privacy_runtime.sessionmaker() as session:
        for _ in range(2):
            request = DataExportRequest(user_id=member.id, tenant_id=member.tenant_id)
            session.add(request)
            await session.flush()
            ids.append(request.id)
        await session.commit()
    for request_id in ids:
        await export_data(privacy_runtime, RequestPayload(request_id=str(request_id)))
    old_id, current_id = ids
    async with privacy_runtime.sessionmaker() as session:
        old = await session.get(DataExportRequest, old_id)
        assert old is not None
        assert old.file_path is not None
        old_file = Path(privacy_runtime.settings.storage_dir) / old.file_path
        old.expires_at = utcnow() - timedelta(minutes=1)
        await session.commit()
    assert old_file.is_file()

    summary = await sweep_once(privacy_runtime)

    assert summary["exports_expired"] == 1
    assert not old_file.exists()
    async with privacy_runtime.sessionmaker() as session:
        old = await session.get(DataExportRequest, old_id)
        current = await session.get(DataExportRequest, current_id)
    assert old is not None
    assert old.status == "expired"
    assert old.file_path is None
    assert current is not None
    assert current.status == "completed"
    assert current.file_path is not None
    assert (Path(privacy_runtime.settings.storage_dir) / current.file_path).is_file()


async def test_the_sweep_removes_files_of_users_who_are_gone(
    privacy_runtime: Runtime, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    exports = Path(privacy_runtime.settings.storage_dir) / "exports"
    theirs = exports / str(member.id)
    orphan = exports / str(uuid.uuid4())
    for directory in (theirs, orphan):
        directory.mkdir(parents=True)
        (directory / "something.zip").write_bytes(b"PK")

    summary = await sweep_once(privacy_runtime)

    assert summary["orphan_directories_removed"] == 1
    assert theirs.is_dir()
    assert not orphan.exists()
