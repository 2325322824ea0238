"""/admin passes axe-core (no serious or critical violation) signed out, for a member and with
data, at desktop and phone width, and is usable by keyboard; the same run writes
docs/screenshots/admin-desktop.png and admin-phone.png."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import ViewportSize, expect

from tests.pages.conftest import (
    DESKTOP,
    PHONE,
    NewPage,
    Server,
    axe_violations,
    screenshot,
)
from tests.pages.test_admin import OUTCOME_TIMEOUT_MS, open_admin, send_to


@pytest.mark.parametrize(
    ("viewport", "width_name"), [(DESKTOP, "desktop"), (PHONE, "phone")], ids=["desktop", "phone"]
)
async def test_admin_is_accessible_and_pictured(
    server: Server, new_page: NewPage, viewport: ViewportSize, width_name: str
) -> None:
    tenant = f"Northwind {uuid.uuid4().hex[:6]}"
    owner = server.user(role="owner", tenant=tenant)
    member = server.user(role="member", tenant=tenant)
    await send_to(server, owner, member, type="payment_failed", title="Payment failed")
    await send_to(server, owner, member, type="post_published", title="Spring launch is live")
    await send_to(server, owner, owner, type="new_comment", title="New comment")
    await server.api(
        "POST",
        "/api/v1/tenant/invitations",
        owner,
        json={"email": f"rauf-{uuid.uuid4().hex[:6]}@example.com", "role": "admin"},
    )

    page = await new_page(viewport=viewport)
    await page.goto("/admin")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await axe_violations(page) == []

    await open_admin(page, owner)
    await expect(page.locator("#nf-ledger tbody tr").first).to_be_visible()
    await expect(page.locator("#nf-outcomes-chart svg").first).to_be_visible()
    await expect(page.locator("#nf-audit-list tbody tr").first).to_be_visible()
    # Emails are written by the worker, maybe after the page loaded: the next refresh shows them.
    await expect(page.locator("#nf-mail-list tbody tr").first).to_be_visible(
        timeout=OUTCOME_TIMEOUT_MS
    )
    assert await axe_violations(page) == []
    await screenshot(page, f"admin-{width_name}")

    # The charts' numbers, opened, and a message of the mail folder, opened.
    for numbers in await page.locator(".chart__numbers summary").all():
        await numbers.click()
    await page.locator("#nf-mail-list tbody tr").first.get_by_role("button").click()
    await expect(page.locator("#nf-mail-message")).to_be_visible()
    assert await axe_violations(page) == []


async def test_a_member_sees_an_accessible_refusal(server: Server, new_page: NewPage) -> None:
    tenant = f"Refused {uuid.uuid4().hex[:6]}"
    server.user(role="owner", tenant=tenant)
    member = server.user(role="member", tenant=tenant)
    page = await new_page()
    await page.goto("/admin")
    await page.get_by_label("Email", exact=True).fill(member.email)
    await page.get_by_label("Password", exact=True).fill(member.password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("heading", name="Not for your account")).to_be_visible()
    assert await axe_violations(page) == []


async def test_admin_is_usable_by_keyboard(server: Server, new_page: NewPage) -> None:
    tenant = f"Keys {uuid.uuid4().hex[:6]}"
    owner = server.user(role="owner", tenant=tenant)
    server.user(role="member", tenant=tenant)
    page = await new_page()
    await open_admin(page, owner)

    # The section links move the focus to their section.
    await page.get_by_role("link", name="Send", exact=True).focus()
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{server.url}/admin#nf-send")
    # The send form, by keyboard only: the whole organisation, a type, a title, a message.
    await page.get_by_label("Everyone in the organisation").focus()
    await page.keyboard.press("Space")
    await expect(page.get_by_label("Member", exact=True)).to_be_hidden()
    await page.get_by_label("Type", exact=True).focus()
    await page.keyboard.press("Tab")
    await page.keyboard.type("Maintenance tonight")
    await page.keyboard.press("Tab")
    await page.keyboard.type("From 22:00 to 23:00.")
    await page.keyboard.press("Tab")
    await expect(page.locator("#nf-send-form").get_by_role("button", name="Send")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#nf-send-status")).to_have_text("Sent. Notifications created: 2.")
    await expect(page.locator("#nf-admin-announcer")).to_have_text(
        "Sent. Notifications created: 2."
    )
