"""The shared layout and notiflow-page.js, as any page uses them (here through a stand-in page
module served in place of the center's, so no particular page is needed)."""

from __future__ import annotations

import uuid

from playwright.async_api import Page, Route, expect

from tests.pages.conftest import NewPage, Server, axe_violations

# A page limited to owners and admins, as an operator's page would be.
ADMINS_ONLY_PAGE = """
import { startPage } from "./notiflow-page.js";
startPage({
  roles: ["owner", "admin"],
  onSignedIn: (user) => { document.body.dataset.loaded = user.role; },
  onSignedOut: () => { delete document.body.dataset.loaded; },
});
"""


async def _admins_only(page: Page) -> None:
    async def serve(route: Route) -> None:
        await route.fulfill(body=ADMINS_ONLY_PAGE, content_type="text/javascript")

    await page.route("**/static/js/center.js*", serve)


async def _sign_in_with_token(page: Page, token: str) -> None:
    await page.goto("/")
    await page.get_by_text("Use a token instead").click()
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name="Use this token").click()


async def test_a_page_for_some_roles_tells_the_others_it_is_not_for_them(
    server: Server, new_page: NewPage
) -> None:
    tenant = f"Roles {uuid.uuid4().hex[:8]}"
    owner = server.user(role="owner", tenant=tenant)
    member = server.user(role="member", tenant=tenant)

    page = await new_page()
    await _admins_only(page)
    await _sign_in_with_token(page, member.token)
    await expect(page.get_by_role("heading", name="Not for your account")).to_be_visible()
    await expect(page.locator("#nf-forbidden-text")).to_contain_text("(member)")
    assert await page.locator("body").get_attribute("data-loaded") is None
    assert await axe_violations(page) == []
    await page.get_by_label("Language", exact=True).select_option("az")
    await expect(page.get_by_role("heading", name="Hesabınız üçün deyil")).to_be_visible()
    await expect(page.locator("#nf-forbidden-text")).to_contain_text("(üzv)")
    await page.get_by_role("button", name="Çıxış").click()
    await expect(page.get_by_role("heading", name="Daxil olun")).to_be_visible()
    await page.get_by_label("Dil", exact=True).select_option("en")

    await _sign_in_with_token(page, owner.token)
    await expect(page.locator("body")).to_have_attribute("data-loaded", "owner")
    await expect(page.get_by_role("heading", name="Not for your account")).to_be_hidden()
