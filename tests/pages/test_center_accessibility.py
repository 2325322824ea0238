"""The notification center passes axe-core (no serious or critical violation) when signed out,
with a feed and on the preferences screen, at desktop and phone width; the same run writes the
screenshots in docs/screenshots/."""

from __future__ import annotations

import pytest
from playwright.async_api import ViewportSize, expect

from tests.pages.conftest import (
    DESKTOP,
    PHONE,
    NewPage,
    Server,
    axe_violations,
    screenshot,
    sign_in,
)


@pytest.mark.parametrize(
    ("viewport", "width_name"), [(DESKTOP, "desktop"), (PHONE, "phone")], ids=["desktop", "phone"]
)
async def test_the_center_is_accessible_and_pictured(
    server: Server, new_page: NewPage, viewport: ViewportSize, width_name: str
) -> None:
    user = server.user()
    page = await new_page(viewport=viewport)
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await axe_violations(page) == []

    await server.send(
        user, type="post_failed", title="Post failed", message="Mastodon rejected the image."
    )
    await server.send(
        user, type="new_mention", title="Rauf mentioned you", message="“Great launch!”"
    )
    await server.send(
        user, type="post_published", title="Your post is live", message="Spring launch went out."
    )
    await server.api(
        "PUT",
        "/api/v1/tenant/notification-settings",
        user,
        json={
            "policy": {
                "post_failed": {"email": "enforced"},
                "post_scheduled": {"push": "forbidden"},
            }
        },
    )
    await sign_in(page, user)
    items = page.locator("#nf-feed > li")
    await expect(items).to_have_count(3)
    await items.nth(1).get_by_role("button", name="Mark read: Rauf mentioned you").click()
    await expect(page.locator("#nf-badge")).to_have_text("2")
    await items.first.get_by_role("button", name="Why did I get this?").click()
    await expect(items.first.locator(".why li").first).to_be_visible()
    await server.send(user, type="new_comment", title="New comment", message="Nice photo!")
    await expect(page.locator(".toast")).to_be_visible()
    assert await axe_violations(page) == []
    await screenshot(page, f"center-{width_name}")

    await page.get_by_role("button", name="Dismiss").click()
    await expect(page.locator(".toast")).to_have_count(0)
    await page.get_by_role("link", name="Preferences").click()
    await expect(page.get_by_role("heading", name="Notification preferences")).to_be_visible()
    await expect(page.locator("[data-policy=enforced]")).to_have_count(1)
    assert await axe_violations(page) == []
    await screenshot(page, f"preferences-{width_name}")


async def test_every_control_is_reachable_by_keyboard(server: Server, new_page: NewPage) -> None:
    user = server.user()
    await server.send(user, title="Keyboard only")
    page = await new_page()
    await page.goto("/")
    # Skip link first, then the language switch; the sign-in form by Tab and Enter.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.get_by_label("Email", exact=True).focus()
    await page.keyboard.type(user.email)
    await page.keyboard.press("Tab")
    await page.keyboard.type(user.password)
    await page.keyboard.press("Enter")
    await expect(page.locator("#nf-live")).to_have_attribute("data-live", "connected")

    read = page.get_by_role("button", name="Mark read: Keyboard only")
    await read.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#nf-badge")).to_be_hidden()
    why = page.get_by_role("button", name="Why did I get this?")
    await why.focus()
    await page.keyboard.press("Enter")
    await expect(why).to_have_attribute("aria-expanded", "true")
