"""/api/v1/admin/mail: in development, a tenant's admins read the emails notiflow wrote to its
mail folder for their tenant's members, and nobody else's."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx

from notiflow.config import Environment
from notiflow.delivery.mail_folder import FolderMailSender
from notiflow.main.runtime import Runtime, wire_jobs
from notiflow.models.tenancy import Role
from tests.conftest import MakeMember, Member

MAIL = "/api/v1/admin/mail"


async def _send(client: httpx.AsyncClient, sender: Member, recipient: Member, title: str) -> None:
    response = await client.post(
        "/api/v1/notifications/send",
        json={
            "user_ids": [str(recipient.id)],
            "type": "payment_failed",
            "title": title,
            "message": "Update your card.",
        },
        headers=sender.headers,
    )
    assert response.status_code == 202, response.text


async def test_admins_read_the_mail_written_for_their_members_only(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember, tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    runtime.settings = runtime.settings.model_copy(
        update={"env": Environment.DEVELOPMENT, "mail_dir": folder}
    )
    runtime.senders = {"email": FolderMailSender(folder)}
    wire_jobs(runtime)
    assert runtime.queue is not None
    await runtime.queue.start(runtime)
    try:
        admin = await make_member("acme", role=Role.ADMIN)
        alice = await make_member("acme")
        outsider = await make_member("globex", role=Role.OWNER)
        await _send(client, admin, alice, "Payment failed")
        await _send(client, outsider, outsider, "Globex payment failed")
        for _ in range(500):
            if len(list(folder.glob("*.eml"))) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(list(folder.glob("*.eml"))) == 2
    finally:
        await runtime.queue.close()

    listed = await client.get(MAIL, headers=admin.headers)
    assert listed.status_code == 200, listed.text
    [summary] = listed.json()["data"]
    assert summary["to"] == [alice.user.email]
    assert summary["subject"] == "Payment failed"
    assert summary["date"]
    assert summary["file_name"] == f"{summary['id']}.eml"
    assert (folder / summary["file_name"]).is_file()
    assert listed.json()["meta"] == {"current_page": 1, "per_page": 50, "has_more": False}

    opened = await client.get(f"{MAIL}/{summary['id']}", headers=admin.headers)
    assert opened.status_code == 200, opened.text
    message = opened.json()["data"]
    assert "Update your card." in message["text"]
    assert message["html"] is not None
    assert "Update your card." in message["html"]
    assert message["sender"]

    [theirs] = (await client.get(MAIL, headers=outsider.headers)).json()["data"]
    assert theirs["subject"] == "Globex payment failed"
    for message_id in (theirs["id"], str(uuid.uuid4())):
        missing = await client.get(f"{MAIL}/{message_id}", headers=admin.headers)
        assert missing.status_code == 404, missing.text
        assert missing.json()["error"]["code"] == "not_found"
    bad = await client.get(f"{MAIL}/..%2F..%2Fetc%2Fpasswd", headers=admin.headers)
    assert bad.status_code in (404, 422)
    assert bad.json()["error"]["code"] in ("not_found", "validation_failed")
    assert (await client.get(MAIL, headers=alice.headers)).status_code == 403
    assert (
        await client.get(MAIL, params={"per_page": 101}, headers=admin.headers)
    ).status_code == 422

    second_page = await client.get(MAIL, params={"per_page": 1, "page": 2}, headers=admin.headers)
    assert second_page.json()["data"] == []


async def test_outside_development_the_mail_folder_is_not_found(
    client: httpx.AsyncClient, runtime: Runtime, make_member: MakeMember, tmp_path: Path
) -> None:
    runtime.settings = runtime.settings.model_copy(update={"mail_dir": tmp_path})
    admin = await make_member("acme", role=Role.OWNER)
    for path in (MAIL, f"{MAIL}/{uuid.uuid4()}"):
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
