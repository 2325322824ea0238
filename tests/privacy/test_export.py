"""Data export: the request API, the zip the job writes, and the signed download link."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import uuid
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from notiflow.delivery.email import EmailSender
from notiflow.kit.errors import Conflict, Forbidden
from notiflow.kit.ids import utcnow
from notiflow.main.runtime import Runtime
from notiflow.models import AuditLog, DataExportRequest, Notification, User
from notiflow.models.platform import RequestStatus
from notiflow.privacy.downloads import open_download
from notiflow.privacy.jobs import export_data, export_failed
from notiflow.privacy.service import RequestPayload, export_file
from notiflow.privacy.tokens import make_download_token
from tests.conftest import MakeMember, commit
from tests.delivery.conftest import SmtpServer
from tests.privacy.conftest import Person, RecordingQueue, seed_person

SECTIONS = {
    "README.txt",
    "manifest.json",
    "profile.json",
    "memberships.json",
    "notifications.json",
    "notification_deliveries.json",
    "preferences.json",
    "push_subscriptions.json",
    "access_tokens.json",
    "posts.json",
    "inbox_items.json",
    "audit_log.json",
    "social_accounts.json",
    "privacy_requests.json",
}


async def _people(runtime: Runtime, make_member: MakeMember) -> tuple[Person, Person, Person]:
    ann = await seed_person(runtime, make_member, "acme", "ann")
    bob = await seed_person(runtime, make_member, "acme", "bob")
    cat = await seed_person(runtime, make_member, "globex", "cat")
    return ann, bob, cat


async def _completed_export(
    client: httpx.AsyncClient, runtime: Runtime, person: Person
) -> dict[str, Any]:
    response = await client.post("/api/v1/me/data-export", headers=person.member.headers)
    assert response.status_code == 202, response.text
    export_id = response.json()["data"]["id"]
    await export_data(
        runtime, RequestPayload(request_id=export_id, tenant_id=str(person.member.tenant_id))
    )
    shown = await client.get(f"/api/v1/me/data-export/{export_id}", headers=person.member.headers)
    assert shown.status_code == 200
    data: dict[str, Any] = shown.json()["data"]
    return data


async def test_export_request_is_accepted_once_and_woken_after_commit(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    queue: RecordingQueue,
) -> None:
    member = await make_member("acme")
    first = await client.post("/api/v1/me/data-export", headers=member.headers)
    assert first.status_code == 202
    body = first.json()["data"]
    assert body["status"] == "pending"
    assert body["download_url"] is None
    assert queue.named("privacy.export") == [
        {"request_id": body["id"], "tenant_id": str(member.tenant_id)}
    ]

    again = await client.post("/api/v1/me/data-export", headers=member.headers)
    assert again.status_code == 200
    assert again.json()["data"]["id"] == body["id"]
    assert len(queue.named("privacy.export")) == 1


async def test_simultaneous_requests_of_one_user_make_one_export(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    queue: RecordingQueue,
) -> None:
    member = await make_member("acme")
    answers = await asyncio.gather(
        *(client.post("/api/v1/me/data-export", headers=member.headers) for _ in range(4))
    )
    assert sorted(answer.status_code for answer in answers) == [200, 200, 200, 202]
    assert len({answer.json()["data"]["id"] for answer in answers}) == 1
    async with privacy_runtime.sessionmaker() as session:
        requests = (await session.scalars(select(DataExportRequest))).all()
    assert len(requests) == 1
    assert len(queue.named("privacy.export")) == 1


async def test_the_zip_holds_every_section_of_the_users_data_and_nobody_elses(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    ann, bob, cat = await _people(privacy_runtime, make_member)
    export = await _completed_export(client, privacy_runtime, ann)
    assert export["status"] == "completed"
    assert export["size_bytes"] > 0
    assert export["download_url"].startswith("https://notiflow.example/api/v1/me/data-export/")

    # The link works without a bearer token (it comes from an email).
    path = export["download_url"].removeprefix("https://notiflow.example")
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["cache-control"] == "no-store"
    raw = response.content
    assert hashlib.sha256(raw).hexdigest() == export["sha256"]
    assert len(raw) == export["size_bytes"]

    archive = zipfile.ZipFile(io.BytesIO(raw))
    assert set(archive.namelist()) == SECTIONS
    files = {name: archive.read(name).decode("utf-8") for name in archive.namelist()}
    documents = {name: json.loads(text) for name, text in files.items() if name.endswith(".json")}

    assert documents["profile.json"]["email"] == ann.email
    assert documents["profile.json"]["name"] == "Person ann"
    assert documents["memberships.json"] == [
        {
            "tenant_id": str(ann.member.tenant_id),
            "tenant_name": "acme",
            "role": "member",
            "joined_at": documents["memberships.json"][0]["joined_at"],
        }
    ]
    assert [row["title"] for row in documents["notifications.json"]] == ["mention for ann"]
    assert {row["channel"] for row in documents["notification_deliveries.json"]} >= {"email"}
    assert documents["preferences.json"]["global"] == {
        "email_notifications_enabled": True,
        "push_notifications_enabled": True,
    }
    assert [row["notification_type"] for row in documents["preferences.json"]["per_type"]] == [
        "new_comment"
    ]
    assert documents["push_subscriptions.json"] == [
        {
            "id": documents["push_subscriptions.json"][0]["id"],
            "endpoint": ann.push_endpoint,
            "user_agent": None,
            "created_at": documents["push_subscriptions.json"][0]["created_at"],
            "last_used_at": None,
        }
    ]
    assert len(documents["access_tokens.json"]) == 1
    (post,) = documents["posts.json"]
    assert post["content"] == "post by ann"
    assert post["targets"][0]["external_url"] == "https://social.example/ann/1"
    assert post["targets"][0]["handle"] == "@ann-brand"
    assert [row["text"] for row in documents["inbox_items.json"]] == ["comment for ann"]
    actions = [row["action"] for row in documents["audit_log.json"]]
    assert "user.notification_settings.updated" in actions
    assert "data_export.requested" in actions
    assert {row["ip_address"] for row in documents["audit_log.json"]} >= {"203.0.113.7"}
    assert [row["handle"] for row in documents["social_accounts.json"]] == ["@ann-brand"]
    assert [row["id"] for row in documents["privacy_requests.json"]["exports"]] == [export["id"]]
    assert documents["manifest.json"]["files"]["notifications.json"] == 1
    assert "notifications.json" in files["README.txt"]

    everything = "\n".join(files.values())
    # Nobody else's data: not the colleague in the same tenant, not the user of another tenant.
    for other in (bob, cat):
        for theirs in (
            str(other.id),
            other.email,
            f"Person {other.tag}",
            f"post by {other.tag}",
            f"mention for {other.tag}",
            f"comment for {other.tag}",
            f"@{other.tag}-brand",
            other.push_endpoint,
            str(other.member.tenant_id) if other is cat else str(other.workspace_id),
        ):
            assert theirs not in everything
    # No secrets: password hash, token hashes, push keys, social network tokens.
    async with privacy_runtime.sessionmaker() as session:
        user = await session.get(User, ann.id)
        assert user is not None
        assert user.password_hash
        password_hash = user.password_hash
    assert password_hash not in everything
    assert "password_hash" not in everything
    assert "token_hash" not in everything
    assert ann.push_keys[0] not in everything
    assert ann.push_keys[1] not in everything
    assert "p256dh" not in everything
    assert "SECRET-ACCESS" not in everything
    assert "SECRET-REFRESH" not in everything


async def test_the_export_ready_notification_carries_the_download_link(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    member = await make_member("acme")
    person_headers = member.headers
    response = await client.post("/api/v1/me/data-export", headers=person_headers)
    export_id = response.json()["data"]["id"]
    await export_data(privacy_runtime, RequestPayload(request_id=export_id))

    async with privacy_runtime.sessionmaker() as session:
        notification = await session.scalar(
            select(Notification).where(
                Notification.user_id == member.id, Notification.type == "data_export_ready"
            )
        )
        export = await session.get(DataExportRequest, uuid.UUID(export_id))
    assert notification is not None
    assert export is not None
    assert notification.tenant_id == member.tenant_id
    assert notification.action_url is not None
    assert notification.action_url.startswith(
        f"https://notiflow.example/api/v1/me/data-export/{export_id}/download?token="
    )
    assert notification.data is not None
    assert notification.data["sha256"] == export.sha256
    assert export.expires_at is not None
    assert export.completed_at is not None
    assert export.expires_at - export.completed_at == timedelta(hours=168)
    assert (
        await client.get(notification.action_url.removeprefix("https://notiflow.example"))
    ).status_code == 200

    # The job is safe to run twice: the second run finds nothing to do.
    await export_data(privacy_runtime, RequestPayload(request_id=export_id))
    async with privacy_runtime.sessionmaker() as session:
        again = await session.get(DataExportRequest, uuid.UUID(export_id))
    assert again is not None
    assert again.sha256 == export.sha256


async def test_bad_links_and_other_peoples_exports_are_refused(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme")
    colleague = await make_member("acme")
    stranger = await make_member("globex")
    response = await client.post("/api/v1/me/data-export", headers=owner.headers)
    export_id = response.json()["data"]["id"]
    await export_data(privacy_runtime, RequestPayload(request_id=export_id))
    shown = (await client.get(f"/api/v1/me/data-export/{export_id}", headers=owner.headers)).json()
    url = shown["data"]["download_url"].removeprefix("https://notiflow.example")
    base, _, token = url.partition("?token=")

    # Someone else's export is not found, whether by id or by bearer download.
    for other in (colleague, stranger):
        seen = await client.get(f"/api/v1/me/data-export/{export_id}", headers=other.headers)
        assert seen.status_code == 404
        assert seen.json()["error"]["code"] == "not_found"
        taken = await client.get(base, headers=other.headers)
        assert taken.status_code == 404

    # A tampered signature, a token for another export, garbage, nothing at all: 403.
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    other_export = make_download_token(
        privacy_runtime.settings, uuid.uuid4(), utcnow() + timedelta(hours=1)
    )
    for bad in (tampered, other_export, "not-a-token", "", "A" * 5000):
        refused = await client.get(base, params={"token": bad})
        assert refused.status_code == 403, bad
        assert refused.json()["error"]["code"] == "invalid_link"
    assert (await client.get(base)).status_code == 403

    # A genuine link past its expiry: 410.
    expired = make_download_token(
        privacy_runtime.settings, uuid.UUID(export_id), utcnow() - timedelta(seconds=1)
    )
    gone = await client.get(base, params={"token": expired})
    assert gone.status_code == 410
    assert gone.json()["error"] == {
        "code": "link_expired",
        "message": "this download link has expired; request a new export",
        "details": None,
    }

    # The owner may also download with their bearer token.
    mine = await client.get(base, headers=owner.headers)
    assert mine.status_code == 200
    assert mine.content[:2] == b"PK"


async def test_an_expired_export_is_gone_even_with_a_valid_looking_link(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme")
    response = await client.post("/api/v1/me/data-export", headers=owner.headers)
    export_id = uuid.UUID(response.json()["data"]["id"])
    await export_data(privacy_runtime, RequestPayload(request_id=str(export_id)))
    async with privacy_runtime.sessionmaker() as session:
        export = await session.get(DataExportRequest, export_id)
        assert export is not None
        export.status = RequestStatus.EXPIRED.value
        await session.commit()
    token = make_download_token(privacy_runtime.settings, export_id, utcnow() + timedelta(hours=1))
    gone = await client.get(f"/api/v1/me/data-export/{export_id}/download", params={"token": token})
    assert gone.status_code == 410
    assert gone.json()["error"]["code"] == "export_expired"
    shown = await client.get(f"/api/v1/me/data-export/{export_id}", headers=owner.headers)
    assert shown.json()["data"]["download_url"] is None


async def test_a_rerun_after_a_crash_overwrites_the_half_written_file(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme")
    response = await client.post("/api/v1/me/data-export", headers=owner.headers)
    export_id = response.json()["data"]["id"]
    directory = Path(privacy_runtime.settings.storage_dir) / "exports" / str(owner.id)
    directory.mkdir(parents=True)
    (directory / f"{export_id}.zip.part").write_bytes(b"half a zip from a run that died")
    # The crashed run left the request claimed long ago.
    async with privacy_runtime.sessionmaker() as session:
        export = await session.get(DataExportRequest, uuid.UUID(export_id))
        assert export is not None
        export.status = RequestStatus.PROCESSING.value
        export.updated_at = utcnow() - timedelta(hours=2)
        await session.commit()

    await export_data(privacy_runtime, RequestPayload(request_id=export_id))

    assert sorted(path.name for path in directory.iterdir()) == [f"{export_id}.zip"]
    with zipfile.ZipFile(directory / f"{export_id}.zip") as archive:
        assert archive.testzip() is None
        assert "profile.json" in archive.namelist()


async def test_a_run_in_progress_elsewhere_is_left_alone(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme")
    response = await client.post("/api/v1/me/data-export", headers=owner.headers)
    export_id = uuid.UUID(response.json()["data"]["id"])
    async with privacy_runtime.sessionmaker() as session:
        export = await session.get(DataExportRequest, export_id)
        assert export is not None
        export.status = RequestStatus.PROCESSING.value
        await session.commit()
    await export_data(privacy_runtime, RequestPayload(request_id=str(export_id)))
    async with privacy_runtime.sessionmaker() as session:
        export = await session.get(DataExportRequest, export_id)
    assert export is not None
    assert export.status == RequestStatus.PROCESSING.value
    assert export.file_path is None


async def test_the_failure_hook_marks_the_request_failed(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme")
    response = await client.post("/api/v1/me/data-export", headers=owner.headers)
    export_id = response.json()["data"]["id"]
    await export_failed(privacy_runtime, RequestPayload(request_id=export_id), OSError("disk full"))
    shown = await client.get(f"/api/v1/me/data-export/{export_id}", headers=owner.headers)
    assert shown.json()["data"]["status"] == "failed"
    # The technical error stays inside (it may name server paths); people get words.
    assert shown.json()["data"]["error"] == (
        "the export could not be prepared; please request a new one"
    )
    async with privacy_runtime.sessionmaker() as session:
        failed = await session.get(DataExportRequest, uuid.UUID(export_id))
    assert failed is not None
    assert failed.error == "OSError: disk full"
    # A failed export does not block asking again.
    again = await client.post("/api/v1/me/data-export", headers=owner.headers)
    assert again.status_code == 202


async def test_downloads_are_audited_under_the_owner(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme")
    export = await _completed_export(
        client,
        privacy_runtime,
        Person(owner, "x", uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "", ("", "")),
    )
    await client.get(export["download_url"].removeprefix("https://notiflow.example"))
    async with privacy_runtime.sessionmaker() as session:
        entry = await session.scalar(
            select(AuditLog).where(AuditLog.action == "data_export.downloaded")
        )
    assert entry is not None
    assert entry.actor_id == owner.id
    assert entry.after == {"via": "signed_link"}


async def test_the_export_ready_email_goes_out_through_the_outbox_with_a_working_link(
    privacy_runtime: Runtime,
    client: httpx.AsyncClient,
    make_member: MakeMember,
    smtp_server: SmtpServer,
) -> None:
    owner = await make_member("acme")
    response = await client.post("/api/v1/me/data-export", headers=owner.headers)
    export_id = response.json()["data"]["id"]
    await export_data(privacy_runtime, RequestPayload(request_id=export_id))

    sender = EmailSender(privacy_runtime.settings)
    privacy_runtime.senders = {"email": sender}
    try:
        worker = privacy_runtime.delivery_worker()
        outcomes = await worker.process(await worker.due())
    finally:
        await sender.close()

    assert outcomes["sent"] == 1  # the email (no Web Push sender is configured here)
    (mail,) = smtp_server.received
    assert mail.rcpt_tos == [owner.user.email]
    assert mail.message["Subject"] == "Your data export is ready"
    text = mail.message.get_body(("plain",))
    assert text is not None
    content = text.get_content()
    prefix = f"https://notiflow.example/api/v1/me/data-export/{export_id}/download?token="
    (link,) = [word for word in content.split() if word.startswith(prefix)]
    downloaded = await client.get(link.removeprefix("https://notiflow.example"))
    assert downloaded.status_code == 200
    assert downloaded.content[:2] == b"PK"


async def test_open_download_by_bearer_hands_over_the_zip_and_records_the_way_in(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme")
    export = await _completed_export(
        client,
        privacy_runtime,
        Person(owner, "x", uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "", ("", "")),
    )
    export_id = uuid.UUID(export["id"])
    settings = privacy_runtime.settings
    async with privacy_runtime.sessionmaker() as session:
        with pytest.raises(Forbidden) as refused:
            await open_download(
                session, settings, export_id, link_token=None, bearer=None, ip_address=None
            )
        assert refused.value.code == "invalid_link"
        download = await open_download(
            session,
            settings,
            export_id,
            link_token=None,
            bearer=owner.token,
            ip_address="198.51.100.4",
        )
        await commit(session)

    assert download.export.id == export_id
    assert download.path == str(export_file(settings, download.export))
    async with privacy_runtime.sessionmaker() as session:
        entry = await session.scalar(
            select(AuditLog).where(AuditLog.action == "data_export.downloaded")
        )
    assert entry is not None
    assert (entry.actor_id, entry.tenant_id, entry.ip_address, entry.after) == (
        owner.id,
        owner.tenant_id,
        "198.51.100.4",
        {"via": "bearer"},
    )


async def test_open_download_refuses_an_export_that_is_not_ready(
    privacy_runtime: Runtime, client: httpx.AsyncClient, make_member: MakeMember
) -> None:
    owner = await make_member("acme")
    response = await client.post("/api/v1/me/data-export", headers=owner.headers)
    export_id = uuid.UUID(response.json()["data"]["id"])
    token = make_download_token(privacy_runtime.settings, export_id, utcnow() + timedelta(hours=1))
    async with privacy_runtime.sessionmaker() as session:
        with pytest.raises(Conflict) as refused:
            await open_download(
                session,
                privacy_runtime.settings,
                export_id,
                link_token=token,
                bearer=None,
                ip_address=None,
            )
        assert refused.value.code == "export_not_ready"
        assert (
            await session.scalar(select(AuditLog.id).where(AuditLog.action.like("%downloaded")))
            is None
        )
