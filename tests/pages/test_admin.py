"""/admin in a real browser against a real ``notiflow serve``: failed jobs retried, the ledger,
sending, members, the mail folder, a member refused, Azerbaijani."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from notiflow.main.demo import DEMO_WORKSPACE
from tests.delivery.conftest import SmtpServer
from tests.delivery.processes import NOTIFLOW, NotiflowProcess, free_port, notiflow_env
from tests.pages.conftest import NewPage, Server, User, sign_in, start_server

# Retrying waits for the worker and the mail server: longer than one page update.
OUTCOME_TIMEOUT_MS = 60_000


async def open_admin(page: Page, user: User) -> None:
    """Open /admin, sign in with email and password, and wait until it has loaded."""
    await page.goto("/admin")
    await page.get_by_label("Email", exact=True).fill(user.email)
    await page.get_by_label("Password", exact=True).fill(user.password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.locator("body")).to_have_attribute("data-state", "signed-in")
    await expect(page.locator("#nf-updated")).to_contain_text("Updated")


async def send_to(server: Server, sender: User, recipient: User, *, type: str, title: str) -> None:
    """``sender`` (an owner or admin) sends ``recipient`` a notification through the REST API."""
    body = {"user_ids": [recipient.id], "type": type, "title": title, "message": f"{title}."}
    await server.api("POST", "/api/v1/notifications/send", sender, json=body)


def tenant_name() -> str:
    return f"Admin page {uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def smtp() -> AsyncIterator[SmtpServer]:
    mail_server = SmtpServer()
    mail_server.start()
    try:
        yield mail_server
    finally:
        mail_server.stop()


@pytest.fixture(scope="module")
async def smtp_served(
    smtp: SmtpServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """A served notiflow whose email goes to the ``smtp`` server (aiosmtpd, a free port)."""
    served = await start_server(
        tmp_path_factory.mktemp("smtp-served"),
        smtp_host=smtp.host,
        smtp_port=str(smtp.port),
        smtp_timeout_seconds="5",
    )
    try:
        yield served
    finally:
        served.process.stop()


async def test_a_failed_email_is_seen_retried_and_then_shows_as_sent(
    browser: Browser, smtp: SmtpServer, smtp_served: Server
) -> None:
    tenant = tenant_name()
    owner = smtp_served.user(role="owner", tenant=tenant)
    alice = smtp_served.user(role="member", tenant=tenant)
    smtp.refuse(alice.email, "550 5.1.1 mailbox unavailable")
    pages = NewPage(browser, smtp_served)
    try:
        page = await pages()
        await open_admin(page, owner)
        await expect(page.locator("#nf-failed-list")).to_contain_text("No failed jobs.")

        await send_to(smtp_served, owner, alice, type="payment_failed", title="Card declined")

        failed = page.locator("#nf-failed-list tbody tr")
        await expect(failed).to_have_count(1, timeout=OUTCOME_TIMEOUT_MS)
        await expect(failed).to_contain_text("delivery.send (Email)")
        await expect(failed).to_contain_text("550 5.1.1 mailbox unavailable")
        ledger = page.locator("#nf-ledger tbody tr").filter(has_text="Card declined")
        await page.get_by_role("button", name="Search").click()
        await expect(ledger.locator("[data-status=failed]")).to_be_visible()

        smtp.handler.recipient_replies.clear()  # the mailbox is back
        await page.get_by_role("button", name="Retry delivery.send (Email)").click()
        await expect(page.locator("#nf-failed-status")).to_have_text(
            "delivery.send (Email) will run again."
        )
        await expect(page.locator("#nf-failed-list")).to_contain_text("No failed jobs.")
        await expect(ledger.locator("[data-status=sent]")).to_be_visible(timeout=OUTCOME_TIMEOUT_MS)
        # Alice's email, once (the owner also got the failure alert).
        assert [mail.rcpt_tos for mail in smtp.received].count([alice.email]) == 1
        # The audit log says who retried it.
        await page.get_by_role("link", name="Audit log").click()
        await expect(page.locator("#nf-audit-list")).to_contain_text("failed_job.retried")
    finally:
        await pages.close()
    assert pages.problems == [], "\n".join(pages.problems)


async def test_a_member_opening_admin_is_told_it_is_not_for_them_and_the_api_refuses(
    server: Server, new_page: NewPage
) -> None:
    tenant = tenant_name()
    server.user(role="owner", tenant=tenant)
    member = server.user(role="member", tenant=tenant)
    page = await new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))

    await page.goto("/admin")
    await page.get_by_label("Email", exact=True).fill(member.email)
    await page.get_by_label("Password", exact=True).fill(member.password)
    await page.get_by_role("button", name="Sign in", exact=True).click()

    await expect(page.get_by_role("heading", name="Not for your account")).to_be_visible()
    await expect(page.locator("#nf-forbidden-text")).to_contain_text("(member)")
    await expect(page.get_by_role("heading", name="Failed jobs")).to_be_hidden()
    assert [url for url in asked if "/api/v1/admin/" in url or "/api/v1/tenant/" in url] == []
    async with httpx.AsyncClient(base_url=server.url, headers=member.headers) as client:
        for path in (
            "/api/v1/admin/failed-jobs",
            "/api/v1/admin/jobs",
            "/api/v1/admin/audit-log",
            "/api/v1/admin/mail",
            "/api/v1/tenant/deliveries",
            "/api/v1/tenant/members",
        ):
            response = await client.get(path)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["error"]["code"] == "forbidden"


async def test_admin_is_in_azerbaijani_for_an_azerbaijani_browser(
    server: Server, new_page: NewPage
) -> None:
    owner = server.user()
    page = await new_page(locale="az-AZ")
    # Signed in as the sign-in form would leave it: the token in the browser's storage.
    await page.context.add_init_script(
        f"window.localStorage.setItem('notiflow:token', '{owner.token}')"
    )
    await page.goto("/admin")
    await expect(page.locator("html")).to_have_attribute("lang", "az")
    await expect(page.get_by_role("heading", name="İdarəetmə", exact=True)).to_be_visible()
    await expect(page.get_by_role("heading", name="Uğursuz tapşırıqlar")).to_be_visible()
    await expect(page.get_by_role("heading", name="Bildiriş göndərin")).to_be_visible()
    await expect(page.locator("#nf-failed-list")).to_have_text("Uğursuz tapşırıq yoxdur.")
    await expect(page.get_by_role("button", name="Hamısını təkrarlayın")).to_be_visible()
    await expect(page.locator("#nf-updated")).to_contain_text("Yeniləndi")

    await page.get_by_label("Dil", exact=True).select_option("en")
    await expect(page.get_by_role("heading", name="Failed jobs")).to_be_visible()


async def test_a_notification_sent_from_the_form_is_found_in_the_ledger(
    server: Server, new_page: NewPage
) -> None:
    tenant = tenant_name()
    owner = server.user(role="owner", tenant=tenant)
    member = server.user(role="member", tenant=tenant)
    page = await new_page()
    await open_admin(page, owner)

    form = page.locator("#nf-send-form")
    await form.get_by_label("Member", exact=True).select_option(member.id)
    await form.get_by_label("Type", exact=True).select_option("payment_failed")
    await form.get_by_label("Title", exact=True).fill("Renew your card")
    await form.get_by_label("Message", exact=True).fill("The card on file has expired.")
    await form.get_by_role("button", name="Send").click()
    await expect(page.locator("#nf-send-status")).to_have_text("Sent. Notifications created: 1.")

    search = page.locator("#nf-ledger-form")
    await search.get_by_label("User", exact=True).select_option(member.id)
    await search.get_by_label("Channel", exact=True).select_option("email")
    await search.get_by_role("button", name="Search").click()
    rows = page.locator("#nf-ledger tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("Renew your card")
    await expect(rows).to_contain_text(member.email)
    await expect(rows.locator("[data-status=sent]")).to_be_visible(timeout=OUTCOME_TIMEOUT_MS)

    # A status the delivery does not have finds nothing.
    await search.get_by_label("Status", exact=True).select_option("failed")
    await search.get_by_role("button", name="Search").click()
    await expect(page.locator("#nf-ledger")).to_have_text("No deliveries match.")


async def test_the_mail_folder_lists_the_email_in_development(
    server: Server, new_page: NewPage
) -> None:
    tenant = tenant_name()
    owner = server.user(role="owner", tenant=tenant)
    member = server.user(role="member", tenant=tenant)
    await send_to(server, owner, member, type="payment_failed", title="Invoice unpaid")
    page = await new_page()
    await open_admin(page, owner)

    await page.get_by_role("link", name="Mail", exact=True).click()
    listed = page.locator("#nf-mail-list tbody tr").filter(has_text="Invoice unpaid")
    await expect(listed).to_have_count(1, timeout=OUTCOME_TIMEOUT_MS)
    await expect(listed).to_contain_text(member.email)
    await listed.get_by_role("button", name=re.compile("^Open")).click()
    message = page.locator("#nf-mail-message")
    await expect(message).to_be_focused()
    await expect(message.locator("#nf-mail-to")).to_have_text(member.email)
    await expect(message.locator("#nf-mail-text")).to_contain_text("Invoice unpaid")


async def test_members_and_invitations_are_managed_and_the_change_is_audited(
    server: Server, new_page: NewPage
) -> None:
    tenant = tenant_name()
    owner = server.user(role="owner", tenant=tenant)
    member = server.user(role="member", tenant=tenant)
    await server.api(
        "PUT",
        "/api/v1/notifications/preferences",
        member,
        json={"notification_type": "new_comment", "email_enabled": False},
    )
    page = await new_page()
    await open_admin(page, owner)

    preference = page.locator("#nf-audit-list tbody tr").filter(
        has_text="notification_preference.updated"
    )
    await expect(preference).to_contain_text(f"{member.email}> · New comment")
    await expect(preference).to_contain_text("→ false")
    members = page.locator("#nf-members tbody tr")
    await expect(members.filter(has_text=member.email)).to_have_count(1)
    await page.get_by_label("Role of Ayla Həsənova").select_option("admin")
    await expect(page.locator("#nf-members-status")).to_have_text("Ayla Həsənova is now Admin.")
    audit = page.locator("#nf-audit-list tbody tr").filter(has_text="member.role_changed")
    await expect(audit).to_have_count(1)
    await expect(audit).to_contain_text('role: "member" → "admin"')

    invited = f"new-{uuid.uuid4().hex[:8]}@example.com"
    await page.get_by_label("Email to invite").fill(invited)
    await page.get_by_role("button", name="Invite", exact=True).click()
    row = page.locator("#nf-invitations tbody tr").filter(has_text=invited)
    await expect(row).to_contain_text("Waiting for an answer")
    await row.get_by_role("button", name=f"Revoke the invitation of {invited}").click()
    await row.get_by_role("button", name=re.compile("press again to confirm$")).click()
    await expect(row).to_contain_text("Revoked")


async def test_the_notification_center_links_to_admin_for_owners_and_admins_only(
    server: Server, new_page: NewPage
) -> None:
    tenant = tenant_name()
    admin = server.user(role="admin", tenant=tenant)
    member = server.user(role="member", tenant=tenant)
    page = await new_page()
    await sign_in(page, member)
    await expect(page.get_by_role("link", name="Operations")).to_be_hidden()
    await page.get_by_role("button", name="Sign out").click()

    await sign_in(page, admin)
    await page.get_by_role("link", name="Operations").click()
    await expect(page).to_have_url(f"{server.url}/admin")
    await expect(page.get_by_role("heading", name="Failed jobs")).to_be_visible()


async def test_failed_jobs_are_forgotten_or_all_retried(
    browser: Browser, smtp: SmtpServer, smtp_served: Server
) -> None:
    tenant = tenant_name()
    owner = smtp_served.user(role="owner", tenant=tenant)
    bob = smtp_served.user(role="member", tenant=tenant)
    cleo = smtp_served.user(role="member", tenant=tenant)
    for member in (bob, cleo):
        smtp.refuse(member.email, "550 5.1.1 mailbox unavailable")
    pages = NewPage(browser, smtp_served)
    try:
        page = await pages()
        await open_admin(page, owner)
        await send_to(smtp_served, owner, bob, type="payment_failed", title="For Bob")
        await send_to(smtp_served, owner, cleo, type="payment_failed", title="For Cleo")
        failed = page.locator("#nf-failed-list tbody tr")
        await expect(failed).to_have_count(2, timeout=OUTCOME_TIMEOUT_MS)

        # Forget asks once more, then forgets.
        await failed.first.get_by_role("button", name=re.compile("^Forget")).click()
        await expect(failed).to_have_count(2)
        await failed.first.get_by_role("button", name=re.compile("press again to confirm$")).click()
        await expect(failed).to_have_count(1)
        await expect(page.locator("#nf-failed-status")).to_have_text(
            "delivery.send (Email) forgotten."
        )

        smtp.handler.recipient_replies.clear()
        await page.get_by_role("button", name="Retry all").click()
        await expect(page.locator("#nf-failed-status")).to_have_text("Jobs to run again: 1.")
        await expect(page.locator("#nf-failed-list")).to_contain_text("No failed jobs.")
        await expect(page.get_by_role("button", name="Retry all")).to_be_disabled()
        sent = page.locator("#nf-ledger tbody tr").filter(has=page.locator("[data-status=sent]"))
        await expect(sent).to_have_count(1, timeout=OUTCOME_TIMEOUT_MS)
        forgotten = page.locator("#nf-ledger tbody tr").filter(
            has=page.locator("[data-status=failed]")
        )
        await expect(forgotten).to_have_count(1)
        audit = page.locator("#nf-audit-list")
        await expect(audit).to_contain_text("failed_job.forgotten")
        await expect(audit).to_contain_text("failed_job.retried")
    finally:
        await pages.close()
    assert pages.problems == [], "\n".join(pages.problems)


async def test_a_workspace_job_is_run_now_from_the_schedule(
    server: Server, new_page: NewPage
) -> None:
    owner = server.user()
    await server.api(
        "POST", "/api/v1/workspaces", owner, json={"name": "Baku office", "timezone": "Asia/Baku"}
    )
    page = await new_page()
    await open_admin(page, owner)

    schedule = page.locator("#nf-schedule tbody tr")
    archive = schedule.filter(has_text="inbox.archive_old").filter(has_text="Baku office")
    await expect(archive).to_contain_text("(Asia/Baku)")
    await expect(archive).to_contain_text("Archives old inbox items of the workspace")
    await expect(schedule.filter(has_text="notifications.cleanup")).to_contain_text(
        "All organisations"
    )
    await archive.get_by_role("button", name="Run inbox.archive_old now for Baku office").click()
    await expect(archive.get_by_role("button")).to_have_text("Queued")
    await expect(page.locator("#nf-admin-announcer")).to_have_text("inbox.archive_old is queued.")
    await expect(page.locator("#nf-audit-list")).to_contain_text("scheduled_job.run_now")


async def test_the_demo_owner_token_opens_admin(browser: Browser, tmp_path: Path) -> None:
    port, ws_port = free_port(), free_port()
    env = notiflow_env(env="development", database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db")
    process = await asyncio.create_subprocess_exec(
        NOTIFLOW,
        "serve",
        "--demo",
        "--port",
        str(port),
        "--ws-port",
        str(ws_port),
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while line := (await process.stdout.readline()).decode():
            lines.append(line)
            if line.rstrip() == "}":
                break
        demo = json.loads("".join(lines))["demo"]
        assert demo["admin"] == f"http://127.0.0.1:{port}/admin"
        # The served demo, for the page's base URL (this process object starts nothing).
        server = Server(NotiflowProcess([], env), f"http://127.0.0.1:{port}")
        server.process.stop()  # closes the log file it opened
        pages = NewPage(browser, server)
        page = await pages()
        await page.goto(demo["admin"])
        await page.get_by_text("Use a token instead").click()
        await page.get_by_label("API token").fill(demo["owner_token"])
        await page.get_by_role("button", name="Use this token").click()
        await expect(page.locator("#nf-schedule")).to_contain_text(DEMO_WORKSPACE)
        await expect(page.locator("#nf-members tbody tr")).to_have_count(2)
        await pages.close()
        assert pages.problems == []
    finally:
        process.terminate()
        await process.wait()


async def test_another_tenants_data_is_never_shown(server: Server, new_page: NewPage) -> None:
    ours, theirs = tenant_name(), tenant_name()
    owner = server.user(role="owner", tenant=ours)
    member = server.user(role="member", tenant=ours)
    other_owner = server.user(role="owner", tenant=theirs)
    other_member = server.user(role="member", tenant=theirs)
    await send_to(server, owner, member, type="payment_failed", title="Ours to see")
    await send_to(server, other_owner, other_member, type="payment_failed", title="Theirs alone")
    page = await new_page()
    await open_admin(page, owner)

    await expect(page.locator("#nf-ledger")).to_contain_text("Ours to see")
    await expect(page.locator("#nf-mail-list")).to_contain_text(
        "Ours to see", timeout=OUTCOME_TIMEOUT_MS
    )
    members = page.locator("#nf-members tbody tr")
    await expect(members).to_have_count(2)
    for section in ("#nf-ledger", "#nf-mail-list", "#nf-members", "#nf-audit-list"):
        await expect(page.locator(section)).not_to_contain_text("Theirs alone")
        await expect(page.locator(section)).not_to_contain_text(other_member.email)


async def test_signing_out_of_admin_leaves_nothing_on_the_page(
    server: Server, new_page: NewPage
) -> None:
    tenant = tenant_name()
    owner = server.user(role="owner", tenant=tenant)
    member = server.user(role="member", tenant=tenant)
    await send_to(server, owner, member, type="payment_failed", title="Before sign-out")
    page = await new_page()
    await open_admin(page, owner)
    await expect(page.locator("#nf-ledger")).to_contain_text("Before sign-out")

    await page.get_by_role("button", name="Sign out").click()

    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    for section in ("#nf-ledger", "#nf-members", "#nf-audit-list", "#nf-mail-list"):
        await expect(page.locator(section)).to_be_empty()
    await expect(page.get_by_text(member.email)).to_have_count(0)
