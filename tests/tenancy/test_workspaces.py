"""Workspaces: the API, and daily/weekly jobs at each workspace's own local time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from notiflow.kit.queue import WorkspacePayload
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, Workspace, WorkspaceSchedule
from notiflow.models.tenancy import Role
from notiflow.schedule import due_workspace_jobs
from tests.conftest import MakeMember


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, timezone: str
) -> dict[str, object]:
    response = await client.post(
        "/api/v1/workspaces", json={"name": name, "timezone": timezone}, headers=headers
    )
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()["data"]
    return data


async def test_admins_create_workspaces_members_list_them(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    member = await make_member("acme")
    created = await _create(client, admin.headers, "Brand", "Asia/Baku")
    assert created["timezone"] == "Asia/Baku"
    assert created["utc_offset"] == "+04:00"

    listed = await client.get("/api/v1/workspaces", headers=member.headers)
    assert [item["name"] for item in listed.json()["data"]] == ["Brand"]
    one = await client.get(f"/api/v1/workspaces/{created['id']}", headers=member.headers)
    assert one.status_code == 200

    refused = await client.post(
        "/api/v1/workspaces", json={"name": "Mine", "timezone": "UTC"}, headers=member.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"
    async with runtime.sessionmaker() as session:
        actions = (await session.scalars(select(AuditLog.action))).all()
    assert "workspace.created" in actions


async def test_bad_input_is_refused_and_creates_nothing(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    admin = await make_member("acme", role=Role.OWNER)
    for body, code in [
        ({"name": "X", "timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"name": "X", "timezone": "+04:00"}, "invalid_timezone"),
        ({"name": "   ", "timezone": "UTC"}, "validation_failed"),
        ({"timezone": "UTC"}, "validation_failed"),
    ]:
        response = await client.post("/api/v1/workspaces", json=body, headers=admin.headers)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == code
    await _create(client, admin.headers, "Brand", "UTC")
    duplicate = await client.post(
        "/api/v1/workspaces", json={"name": "Brand", "timezone": "UTC"}, headers=admin.headers
    )
    assert duplicate.status_code == 409
    async with runtime.sessionmaker() as session:
        assert len((await session.scalars(select(Workspace))).all()) == 1


async def test_another_tenants_workspace_is_not_found(
    client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    ours = await make_member("acme", role=Role.ADMIN)
    theirs = await make_member("globex", role=Role.ADMIN)
    created = await _create(client, theirs.headers, "Secret", "UTC")
    for method in ("GET", "PATCH"):
        response = await client.request(
            method,
            f"/api/v1/workspaces/{created['id']}",
            json={"name": "Taken"} if method == "PATCH" else None,
            headers=ours.headers,
        )
        assert response.status_code == 404
    missing = await client.get(f"/api/v1/workspaces/{uuid.uuid4()}", headers=ours.headers)
    assert missing.status_code == 404
    listed = await client.get("/api/v1/workspaces", headers=ours.headers)
    assert listed.json()["data"] == []


async def test_daily_jobs_run_at_each_workspaces_local_hour_across_dst(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    baku = await _create(client, admin.headers, "Baku", "Asia/Baku")
    new_york = await _create(client, admin.headers, "New York", "America/New_York")
    # Saturday 2026-10-31 12:00 UTC; New York leaves daylight saving time on Sunday at 02:00.
    start = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
    assert await due_workspace_jobs(runtime, start) == []  # rows created, nothing due yet

    async with runtime.sessionmaker() as session:
        rows = (await session.scalars(select(WorkspaceSchedule))).all()
    next_runs = {(str(row.workspace_id), row.job_name): row.next_run_at for row in rows}
    # 03:00 in Baku (UTC+4, no DST) is 23:00 UTC the day before.
    assert next_runs[(baku["id"], "social.refresh_tokens")] == datetime(
        2026, 10, 31, 23, 0, tzinfo=UTC
    )
    # 03:00 in New York on the day DST ends is 08:00 UTC (EST), not 07:00 (EDT).
    assert next_runs[(new_york["id"], "social.refresh_tokens")] == datetime(
        2026, 11, 1, 8, 0, tzinfo=UTC
    )
    # Weekly archiving: Sunday 03:00 local.
    assert next_runs[(new_york["id"], "inbox.archive_old")] == datetime(
        2026, 11, 1, 8, 0, tzinfo=UTC
    )

    # Sunday 03:00 in Baku is Saturday 23:00 UTC: both the daily and the weekly job.
    at_baku = await due_workspace_jobs(runtime, datetime(2026, 10, 31, 23, 0, 5, tzinfo=UTC))
    payload = WorkspacePayload(workspace_id=baku["id"], tenant_id=admin.tenant_id)
    assert sorted(at_baku, key=lambda item: item[0]) == [
        ("inbox.archive_old", payload),
        ("social.refresh_tokens", payload),
    ]
    # Claimed once: asking again at the same moment hands out nothing.
    assert await due_workspace_jobs(runtime, datetime(2026, 10, 31, 23, 0, 6, tzinfo=UTC)) == []

    at_new_york = await due_workspace_jobs(runtime, datetime(2026, 11, 1, 8, 0, 1, tzinfo=UTC))
    assert sorted(job for job, _ in at_new_york) == ["inbox.archive_old", "social.refresh_tokens"]
    assert {str(payload.workspace_id) for _, payload in at_new_york} == {new_york["id"]}
    async with runtime.sessionmaker() as session:
        moved = await session.scalar(
            select(WorkspaceSchedule.next_run_at).where(
                WorkspaceSchedule.workspace_id == uuid.UUID(str(new_york["id"])),
                WorkspaceSchedule.job_name == "social.refresh_tokens",
            )
        )
    assert moved == datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


async def test_a_scheduler_down_for_days_runs_a_missed_job_once(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    await _create(client, admin.headers, "Brand", "Europe/Berlin")
    start = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    await due_workspace_jobs(runtime, start)
    later = start + timedelta(days=5)
    jobs = await due_workspace_jobs(runtime, later)
    assert sorted(job for job, _ in jobs) == ["inbox.archive_old", "social.refresh_tokens"]
    assert await due_workspace_jobs(runtime, later + timedelta(minutes=1)) == []


async def test_changing_the_timezone_moves_the_next_local_runs(
    client: httpx.AsyncClient, make_member: MakeMember, runtime: Runtime
) -> None:
    admin = await make_member("acme", role=Role.ADMIN)
    created = await _create(client, admin.headers, "Brand", "UTC")
    await due_workspace_jobs(runtime)
    response = await client.patch(
        f"/api/v1/workspaces/{created['id']}",
        json={"timezone": "Asia/Tokyo"},
        headers=admin.headers,
    )
    assert response.status_code == 200
    assert response.json()["data"]["utc_offset"] == "+09:00"
    async with runtime.sessionmaker() as session:
        runs = (
            await session.scalars(
                select(WorkspaceSchedule.next_run_at).where(
                    WorkspaceSchedule.job_name == "social.refresh_tokens"
                )
            )
        ).all()
    assert [run.hour for run in runs] == [18]  # 03:00 in Tokyo is 18:00 UTC
