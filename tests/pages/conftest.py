"""Browser tests of notiflow's pages: Debian's chromium, driven by Playwright, against a real
``notiflow serve`` (development settings, a SQLite database of its own, free ports).

Fixtures for every page's tests (the notification center's and the others'):

- ``server``: one served notiflow per module; ``server.user(...)`` creates a user with a password
  and a token through the CLI, ``server.send(...)`` sends through the REST API;
- ``browser``: headless chromium (``/usr/bin/chromium`` unless ``NOTIFLOW_TEST_CHROMIUM`` says
  otherwise; missing, the tests FAIL: `.ci/run` installs the Debian package);
- ``new_page(...)``: a page in a fresh browser context (its own localStorage) that fails the
  test on any script error or console error (a refused Content-Security-Policy included);
  ``new_page.allow_error(url_ending)`` for a refusal the test provokes;
- helpers: ``sign_in(page, user, path)``, ``axe_violations(page)`` (axe-core's serious and
  critical findings), ``screenshot(page, name)`` (into docs/screenshots/), ``start_server(folder,
  **settings)`` for a notiflow with other settings (e.g. VAPID keys).

Playwright's ``expect`` waits up to :data:`EXPECT_TIMEOUT_MS` for each condition: the tests
wait for what a user would see, never for a fixed time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)
from playwright.async_api import expect as playwright_expect

from tests.delivery.processes import NotiflowProcess, free_port, notiflow_env

EXPECT_TIMEOUT_MS = 20_000
playwright_expect.set_options(timeout=EXPECT_TIMEOUT_MS)

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
# Answers the browser logs as errors although the page expects them: the Web Push opt-in asks
# for the VAPID key and hides itself on 404 (Web Push not configured).
EXPECTED_ERROR_RESPONSES = ("/api/v1/push-subscriptions/vapid-public-key",)
PASSWORD = "correct horse battery staple"
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}


def chromium_executable() -> str:
    """Debian's chromium; its absence fails the browser tests (they are never skipped)."""
    configured = os.environ.get("NOTIFLOW_TEST_CHROMIUM")
    candidates = [configured] if configured else ["/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail(
        "chromium is needed for the browser tests and was not found "
        f"(looked for {[c for c in candidates if c]}): install the Debian package "
        "(`apt-get install chromium`, as .ci/run does) or set NOTIFLOW_TEST_CHROMIUM",
        pytrace=False,
    )


@dataclass
class User:
    id: str
    tenant_id: str
    email: str
    token: str
    password: str = PASSWORD

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Server:
    """A served notiflow and the means to populate it."""

    process: NotiflowProcess
    url: str
    created: list[User] = field(default_factory=list)

    def user(self, *, role: str = "owner", tenant: str | None = None) -> User:
        """A new user (by default the owner of a new tenant) with a password and a token."""
        email = f"user-{uuid.uuid4().hex[:10]}@example.com"
        result = self.process.run(
            "users",
            "create",
            "--tenant",
            tenant or f"Tenant {uuid.uuid4().hex[:8]}",
            "--email",
            email,
            "--name",
            "Ayla Həsənova",
            "--role",
            role,
            "--password",
            PASSWORD,
            "--with-token",
        )
        assert result.returncode == 0, result.stderr
        created = json.loads(result.stdout)
        user = User(created["user_id"], created["tenant_id"], email, created["token"])
        self.created.append(user)
        return user

    async def api(self, method: str, path: str, user: User, **kwargs: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            response = await client.request(method, path, headers=user.headers, **kwargs)
        assert response.status_code < 300, (response.status_code, response.text)
        return response.json() if response.content else {}

    async def send(
        self,
        user: User,
        *,
        title: str,
        type: str = "post_published",
        message: str = "",
        action_url: str | None = None,
    ) -> str:
        """Send ``user`` (an owner or admin) a notification through the REST API; its id."""
        body = {
            "user_ids": [user.id],
            "type": type,
            "title": title,
            "message": message or f"{title}: details.",
            "action_url": action_url,
        }
        sent = await self.api("POST", "/api/v1/notifications/send", user, json=body)
        notification_id: str = sent["data"]["notifications"][0]["id"]
        return notification_id


async def start_server(folder: Path, **settings: str) -> Server:
    port, ws_port = free_port(), free_port()
    env = notiflow_env(
        env="development",
        database_url=f"sqlite+aiosqlite:///{folder / 'notiflow.db'}",
        log_level="INFO",
        **settings,
    )
    process = NotiflowProcess(
        ["serve", "--port", str(port), "--ws-port", str(ws_port)],
        env,
        ready_url=f"http://127.0.0.1:{port}/health",
        cwd=folder,  # development mail goes to ./var/mail: the test's folder
    )
    await process.start()
    return Server(process, f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    served = await start_server(tmp_path_factory.mktemp("served"))
    try:
        yield served
    finally:
        served.process.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_executable()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            await launched.close()


class NewPage:
    """``await new_page()`` -> a page in a new context; ``await new_page(context=page.context)``
    -> another tab of the same browser profile (shared localStorage, as real tabs).
    ``new_page.allow_error("/api/v1/user")``: a refused request the test itself provokes."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.browser = browser
        self.server = server
        self.contexts: list[BrowserContext] = []
        self.problems: list[str] = []
        self.allowed: list[str] = list(EXPECTED_ERROR_RESPONSES)

    def allow_error(self, url_ending: str) -> None:
        self.allowed.append(url_ending)

    def _watch(self, page: Page) -> Page:
        def on_console(message: ConsoleMessage) -> None:
            url = message.location.get("url", "").split("?")[0]
            if message.type == "error" and not url.endswith(tuple(self.allowed)):
                self.problems.append(f"console error: {message.text} ({url})")

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        return page

    async def __call__(
        self,
        *,
        context: BrowserContext | None = None,
        locale: str = "en-GB",
        viewport: ViewportSize | None = None,
    ) -> Page:
        if context is None:
            context = await self.browser.new_context(
                base_url=self.server.url,
                locale=locale,
                viewport=viewport or DESKTOP,
                reduced_motion="reduce",
            )
            self.contexts.append(context)
        return self._watch(await context.new_page())

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def new_page(browser: Browser, server: Server) -> AsyncIterator[NewPage]:
    """Pages that fail the test on any script error or console error (a refused request, a
    Content-Security-Policy violation)."""
    pages = NewPage(browser, server)
    yield pages
    await pages.close()
    assert pages.problems == [], "\n".join(pages.problems)


async def sign_in(page: Page, user: User, path: str = "/") -> None:
    """Open a page and sign in with email and password; on a page with live updates, wait until
    they are connected."""
    await page.goto(path)
    await page.get_by_label("Email", exact=True).fill(user.email)
    await page.get_by_label("Password", exact=True).fill(user.password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await playwright_expect(page.locator("body")).to_have_attribute(
        "data-state", re.compile("^(signed-in|forbidden)$")
    )
    if await page.locator("#nf-live").count():
        await playwright_expect(page.locator("#nf-live")).to_have_attribute(
            "data-live", "connected"
        )


async def axe_violations(
    page: Page, *, impacts: tuple[str, ...] = ("serious", "critical")
) -> list[Any]:
    """axe-core's violations of at least ``impacts`` in the page as it is now."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: the page's Content-Security-Policy (scripts
        # from 'self' only) does not apply, and the page is not changed to let it in.
        await page.evaluate(AXE.read_text())
    result = await page.evaluate(
        """async () => {
            const results = await axe.run(document, { resultTypes: ["violations"] });
            return results.violations.map((v) => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map((n) => n.target.join(" ")),
            }));
        }"""
    )
    return [violation for violation in result if violation["impact"] in impacts]


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=False)
