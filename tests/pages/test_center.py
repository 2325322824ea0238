"""The notification center (``GET /``) in a real browser against a real ``notiflow serve``."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.delivery.processes import NOTIFLOW, NotiflowProcess, free_port, notiflow_env
from tests.pages.conftest import NewPage, Server, sign_in, start_server


async def test_sign_in_with_email_and_password_shows_the_unread_badge(
    server: Server, new_page: NewPage
) -> None:
    user = server.user()
    await server.send(user, title="Spring launch is live", action_url="/posts/7")
    await server.send(
        user, title="Summer teaser is live", action_url="https://app.example.com/posts/8"
    )
    page = await new_page()

    await sign_in(page, user)

    await expect(page.locator("#nf-badge")).to_have_text("2")
    await expect(page.locator("#nf-bell")).to_have_attribute(
        "aria-label", "Notifications: 2 unread"
    )
    items = page.locator("#nf-feed > li")
    await expect(items).to_have_count(2)
    await expect(items.first).to_contain_text("Summer teaser is live")  # newest first
    # A full address is a link; a path is the platform's own front end's, not notiflow's.
    await expect(items.first.get_by_role("link", name="Open")).to_have_attribute(
        "href", "https://app.example.com/posts/8"
    )
    await expect(items.nth(1).get_by_role("link", name="Open")).to_have_count(0)


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


async def test_a_sent_notification_appears_live_and_reading_it_in_one_tab_clears_the_other(
    server: Server, new_page: NewPage
) -> None:
    user = server.user()
    first = await new_page()
    await sign_in(first, user)
    second = await new_page(context=first.context)  # another tab: signed in by the same storage
    await second.goto("/")
    await expect(second.locator("#nf-live")).to_have_attribute("data-live", "connected")
    for tab in (first, second):
        await expect(tab.locator("#nf-badge")).to_be_hidden()
        await expect(tab.get_by_text("No notifications here.")).to_be_visible()

    await server.send(user, title="Your post is live", message="Spring launch went out.")

    for tab in (first, second):  # no reload
        await expect(tab.locator("#nf-feed > li")).to_have_count(1)
        await expect(tab.locator("#nf-feed > li").first).to_contain_text("Your post is live")
        await expect(tab.locator("#nf-badge")).to_have_text("1")
        await expect(tab.locator(".toast").filter(has_text="Your post is live")).to_be_visible()
        await expect(tab.locator("#nf-announcer")).to_have_text(
            "New notification: Your post is live"
        )

    await first.get_by_role("button", name="Mark read: Your post is live").click()

    await expect(first.locator("#nf-badge")).to_be_hidden()
    await expect(second.locator("#nf-badge")).to_be_hidden()
    await expect(second.locator("#nf-bell")).to_have_attribute(
        "aria-label", "Notifications: none unread"
    )
    # The other tab shows it read too.
    await expect(second.locator("#nf-feed > li.item--unread")).to_have_count(0)


async def test_with_push_off_for_a_type_its_next_notification_does_not_pop_up_but_is_listed(
    server: Server, new_page: NewPage
) -> None:
    user = server.user()
    page = await new_page()
    await sign_in(page, user)
    await page.get_by_role("link", name="Preferences").click()
    comments = page.get_by_role("checkbox", name="New comment: Push", exact=True)
    await expect(comments).to_be_checked()
    await comments.uncheck()
    await expect(page.locator("#nf-prefs-status")).to_have_text("Saved.")
    await page.get_by_role("link", name=re.compile("^Notifications")).click()

    await server.send(user, type="new_comment", title="Quiet comment")
    await server.send(user, type="new_mention", title="Loud mention")

    # The second pops up; by then the first (sent before it on the same channel) would have.
    await expect(page.locator(".toast").filter(has_text="Loud mention")).to_be_visible()
    await expect(page.locator(".toast").filter(has_text="Quiet comment")).to_have_count(0)
    feed = page.locator("#nf-feed > li")
    await expect(feed).to_have_count(2)
    await expect(feed.filter(has_text="Quiet comment")).to_be_visible()
    await expect(page.locator("#nf-badge")).to_have_text("2")
    # Kept after a reload: the preference is the server's.
    await page.reload()
    await page.get_by_role("link", name="Preferences").click()
    await expect(
        page.get_by_role("checkbox", name="New comment: Push", exact=True)
    ).not_to_be_checked()


async def test_why_did_i_get_this_explains_the_ledger_in_plain_words(
    server: Server, new_page: NewPage
) -> None:
    user = server.user()
    await server.api(
        "PATCH",
        "/api/v1/me/notification-preferences",
        user,
        json={"email_notifications_enabled": False},
    )
    await server.send(user, type="new_mention", title="Mentioned by Rauf")
    await server.send(user, type="post_published", title="Post out")
    page = await new_page()
    await sign_in(page, user)

    mention = page.locator("#nf-feed > li").filter(has_text="Mentioned by Rauf")
    why = mention.get_by_role("button", name="Why did I get this?")
    await why.click()
    await expect(why).to_have_attribute("aria-expanded", "true")
    explanation = mention.locator(".why")
    await expect(explanation).to_contain_text(
        "It is in your notification center because it was sent to you as “New mention” "
        "(Engagement)."
    )
    await expect(explanation.locator("[data-channel=email]")).to_have_text(
        "Email: Not sent. You switched this channel off for all notifications."
    )
    # No browser subscribed to Web Push: the live event went out, no push message did.
    await expect(explanation.locator("[data-channel=push]")).to_contain_text("Push: Not sent.")

    published = page.locator("#nf-feed > li").filter(has_text="Post out")
    await published.get_by_role("button", name="Why did I get this?").click()
    # The global switch is checked first (the type's own default for email is off too).
    await expect(published.locator(".why [data-channel=email]")).to_contain_text(
        "You switched this channel off for all notifications."
    )


async def test_the_azerbaijani_locale_shows_azerbaijani_text_and_can_be_switched(
    server: Server, new_page: NewPage
) -> None:
    user = server.user()
    await server.send(user, type="new_comment", title="Rauf şərh yazdı")
    page = await new_page(locale="az-AZ")  # the browser asks for Azerbaijani
    await page.goto("/")
    await expect(page.locator("html")).to_have_attribute("lang", "az")
    await expect(page.get_by_role("heading", name="Daxil olun")).to_be_visible()
    await page.get_by_label("E-poçt", exact=True).fill(user.email)
    await page.get_by_label("Şifrə", exact=True).fill(user.password)
    await page.get_by_role("button", name="Daxil ol", exact=True).click()

    await expect(page.get_by_role("heading", name="Bildirişlər")).to_be_visible()
    await expect(page.locator("#nf-bell")).to_have_attribute(
        "aria-label", "Bildirişlər: 1 oxunmamış"
    )
    item = page.locator("#nf-feed > li").first
    await expect(item.get_by_role("button", name="Bunu niyə aldım?")).to_be_visible()
    await expect(item).to_contain_text("Yeni şərh")
    await page.get_by_role("link", name="Tənzimləmələr").click()
    await expect(page.get_by_role("heading", name="Bildiriş tənzimləmələri")).to_be_visible()
    await expect(page.get_by_role("table").first.locator("caption")).to_have_text(
        "Məzmun və təsdiq"
    )

    # Switched to English: at once, and remembered by this browser.
    await page.get_by_label("Dil", exact=True).select_option("en")
    await expect(page.get_by_role("heading", name="Notification preferences")).to_be_visible()
    await page.reload()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.get_by_role("link", name="Preferences")).to_be_visible()


async def test_the_preferences_show_what_the_tenant_enforces_or_forbids(
    server: Server, new_page: NewPage
) -> None:
    owner = server.user()
    await server.api(
        "PUT",
        "/api/v1/tenant/notification-settings",
        owner,
        json={
            "policy": {
                "payment_failed": {"email": "enforced"},
                "new_comment": {"push": "forbidden"},
            }
        },
    )
    page = await new_page()
    await sign_in(page, owner)
    await page.get_by_role("link", name="Preferences").click()

    enforced = page.get_by_role("checkbox", name="Payment failed: Email", exact=True)
    await expect(enforced).to_be_checked()
    await expect(enforced).to_be_disabled()
    await expect(enforced).to_have_accessible_description("Required by your organisation")
    forbidden = page.get_by_role("checkbox", name="New comment: Push", exact=True)
    await expect(forbidden).not_to_be_checked()
    await expect(forbidden).to_be_disabled()
    await expect(forbidden).to_have_accessible_description("Turned off by your organisation")
    # Grouped by category, and free cells stay editable.
    billing = page.get_by_role("table", name="Billing")
    await expect(billing.get_by_role("row", name=re.compile("^Payment failed"))).to_be_visible()
    await expect(
        page.get_by_role("checkbox", name="New comment: Email", exact=True)
    ).to_be_enabled()

    # The global email switch: saved on the server, shown in the grid.
    await page.get_by_role("switch", name="Email notifications").uncheck()
    await expect(page.locator("#nf-prefs-status")).to_have_text("Saved.")
    await expect(billing.get_by_role("columnheader", name=re.compile("^Email"))).to_contain_text(
        "Off for all notifications"
    )
    user = await server.api("GET", "/api/v1/user", owner)
    assert user["data"]["email_notifications_enabled"] is False


async def test_the_feed_scrolls_filters_and_marks_several_read_or_archives_them(
    server: Server, new_page: NewPage
) -> None:
    user = server.user()
    for number in range(1, 46):
        await server.send(user, type="post_published", title=f"Post number {number}")
    await server.send(user, type="payment_failed", title="Card declined")
    page = await new_page()
    await sign_in(page, user)
    items = page.locator("#nf-feed > li")
    await expect(items.first).to_contain_text("Card declined")
    await expect(page.locator("#nf-badge")).to_have_text("46")

    # Infinite scroll: the cursor pages arrive as the end of the list comes into view.
    for expected in (40, 46):
        await items.last.scroll_into_view_if_needed()
        await expect(items).to_have_count(expected)
    await expect(items.last).to_contain_text("Post number 1")
    await expect(page.locator("#nf-load-more")).to_be_hidden()

    await page.get_by_label("Category").select_option("billing")
    await expect(items).to_have_count(1)
    await expect(items.first).to_contain_text("Card declined")
    await page.get_by_label("Category").select_option("")
    await page.get_by_label("Type").select_option("post_published")
    await expect(items.first).to_contain_text("Post number 45")

    await page.get_by_role("checkbox", name="Select “Post number 45”").check()
    await page.get_by_role("checkbox", name="Select “Post number 44”").check()
    await expect(page.locator("#nf-selected-count")).to_have_text("2 selected")
    await page.get_by_role("button", name="Mark selected read").click()
    await expect(page.locator("#nf-badge")).to_have_text("44")
    await page.get_by_label("Show").select_option("false")  # unread only
    await expect(items.first).to_contain_text("Post number 43")

    await page.get_by_role("checkbox", name="Select “Post number 43”").check()
    await page.get_by_role("button", name="Archive selected").click()
    await expect(items.first).to_contain_text("Post number 42")
    await expect(page.locator("#nf-badge")).to_have_text("43")
    await page.get_by_role("button", name="Archive: Post number 42").click()
    await expect(items.first).to_contain_text("Post number 41")

    await page.get_by_role("button", name="Mark all read").click()
    await expect(page.locator("#nf-badge")).to_be_hidden()
    await expect(page.get_by_text("No notifications here.")).to_be_visible()


async def test_the_web_push_opt_in_shows_only_when_vapid_keys_are_configured(
    server: Server, new_page: NewPage, browser: Browser, tmp_path: Path
) -> None:
    user = server.user()
    page = await new_page()
    await sign_in(page, user)
    await page.get_by_role("link", name="Preferences").click()
    await expect(page.get_by_role("heading", name="Notification preferences")).to_be_visible()
    await expect(page.get_by_role("heading", name="Browser notifications")).to_be_hidden()

    keys = json.loads(server.process.run("webpush", "keys").stdout)
    with_keys = await start_server(
        tmp_path, vapid_public_key=keys["public_key"], vapid_private_key=keys["private_key"]
    )
    pages = NewPage(browser, with_keys)
    try:
        page = await pages()
        await sign_in(page, with_keys.user())
        await page.get_by_role("link", name="Preferences").click()
        await expect(page.get_by_role("heading", name="Browser notifications")).to_be_visible()
        await expect(page.get_by_role("button", name="Turn on for this browser")).to_be_visible()
        await expect(page.locator("#nf-push-status")).to_have_text("Off for this browser.")
        # The service worker it subscribes with is registered (from notiflow's static files).
        scope = await page.evaluate(
            "navigator.serviceWorker.getRegistration('/static/js/').then((r) => r && r.scope)"
        )
        assert scope == f"{with_keys.url}/static/js/"
    finally:
        await pages.close()
        with_keys.process.stop()
    assert pages.problems == []


async def test_the_demo_shows_in_the_notification_center_with_a_pasted_token(
    browser: Browser, tmp_path: Path
) -> None:
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
        assert demo["notification_center"] == f"http://127.0.0.1:{port}/"
        # The served demo, for the page's base URL (this process object starts nothing).
        server = Server(NotiflowProcess([], env), f"http://127.0.0.1:{port}")
        server.process.stop()
        pages = NewPage(browser, server)
        page = await pages()
        await page.goto(demo["notification_center"])
        await page.get_by_text("Use a token instead").click()
        await page.get_by_label("API token").fill(demo["editor_token"])
        await page.get_by_role("button", name="Use this token").click()
        # The editor's post is scheduled: the first thing in the feed.
        await expect(page.locator("#nf-feed > li").first).to_contain_text("Post scheduled")
        await expect(page.locator("#nf-live")).to_have_attribute("data-live", "connected")
        await pages.close()
        assert pages.problems == []
    finally:
        process.terminate()
        await process.wait()


async def test_a_burst_of_notifications_all_arrive_once(server: Server, new_page: NewPage) -> None:
    user = server.user()
    page = await new_page()
    await sign_in(page, user)

    await asyncio.gather(*(server.send(user, title=f"Burst {number}") for number in range(12)))

    items = page.locator("#nf-feed > li")
    await expect(page.locator("#nf-badge")).to_have_text("12")
    await expect(items).to_have_count(12)
    ids = await items.evaluate_all("(nodes) => nodes.map((node) => node.dataset.id)")
    assert len(set(ids)) == 12
