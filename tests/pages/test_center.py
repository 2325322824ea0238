"""The notification center (``GET /``) in a real browser against a real ``notiflow serve``."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.pages.conftest import NewPage, Server, sign_in


async def test_sign_in_with_email_and_password_shows_the_unread_badge(
    server: Server, new_page: NewPage
) -> None:
    user = server.user()
    await server.send(user, title="Spring launch is live")
    await server.send(user, title="Summer teaser is live")
    page = await new_page()

    await sign_in(page, user)

    await expect(page.locator("#nf-badge")).to_have_text("2")
    await expect(page.locator("#nf-bell")).to_have_attribute(
        "aria-label", "Notifications: 2 unread"
    )
    items = page.locator("#nf-feed > li")
    await expect(items).to_have_count(2)
    await expect(items.first).to_contain_text("Summer teaser is live")  # newest first


async def test_a_pasted_token_signs_in_and_signing_out_forgets_it(
    server: Server, new_page: NewPage
) -> None:
    user = server.user()
    new_page.allow_error("/api/v1/user")  # the wrong token's refusal
    page = await new_page()
    await page.goto("/")
    await page.get_by_text("Use a token instead").click()
    await page.get_by_label("API token").fill("not-a-token")
    await page.get_by_role("button", name="Use this token").click()
    await expect(page.get_by_role("alert")).to_have_text("This token was not accepted.")

    await page.get_by_label("API token").fill(user.token)
    await page.get_by_role("button", name="Use this token").click()
    await expect(page.get_by_role("heading", name="Notifications", exact=True)).to_be_visible()

    await page.reload()  # the token is kept in the browser
    await expect(page.locator("body")).to_have_attribute("data-state", "signed-in")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-state", "signed-out")


async def test_a_wrong_password_says_so(server: Server, new_page: NewPage) -> None:
    user = server.user()
    new_page.allow_error("/api/v1/auth/login")  # the refusal
    page = await new_page()
    await page.goto("/")
    await page.get_by_label("Email", exact=True).fill(user.email)
    await page.get_by_label("Password", exact=True).fill("not the password")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("alert")).to_have_text(re.compile("incorrect"))
