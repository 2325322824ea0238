"""The pages without a browser: message catalogues, language negotiation, what is served and
how, and the vendored files."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest

from notiflow.models.tenancy import Role
from notiflow.notifications.ledger import NO_PUSH_SUBSCRIPTION, WEB_PUSH_NOT_CONFIGURED
from notiflow.notifications.ledger_search import LedgerStatus
from notiflow.notifications.policy import Reason
from notiflow.notifications.types import Category, NotificationChannel, NotificationType
from notiflow.pages import i18n
from tests.pages.conftest import chromium_executable

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "src" / "notiflow" / "pages"


def test_every_language_has_every_message() -> None:
    english = i18n.catalogue("en")
    for locale in i18n.LOCALES:
        messages = i18n.catalogue(locale)
        assert set(messages) == set(english), locale
        assert all(text.strip() for text in messages.values()), locale
        for key, text in messages.items():  # the same placeholders in every language
            assert set(re.findall(r"\{(\w+)\}", text)) == set(
                re.findall(r"\{(\w+)\}", english[key])
            ), (locale, key)


def test_the_azerbaijani_catalogue_is_azerbaijani() -> None:
    azerbaijani = i18n.catalogue("az")
    english = i18n.catalogue("en")
    translated = [key for key, text in azerbaijani.items() if text != english[key]]
    # Names that are the same in both (notiflow, SMS, Push) are the exception.
    assert len(translated) >= len(english) - 5
    assert any(letter in "".join(azerbaijani.values()) for letter in "əğışçöü")


def test_every_type_category_channel_role_status_and_reason_has_words() -> None:
    english = i18n.catalogue("en")
    wanted = (
        [f"type.{kind.value}" for kind in NotificationType]
        + [f"category.{category.value}" for category in Category]
        + [f"channel.{channel.value}" for channel in NotificationChannel]
        + [f"role.{role.value}" for role in Role]
        + [f"status.{status.value}" for status in LedgerStatus]
        + [f"reason.{reason.value}" for reason in Reason]
        + [
            f"reason.{reason}"
            for reason in (
                WEB_PUSH_NOT_CONFIGURED,
                NO_PUSH_SUBSCRIPTION,
                "push_subscriptions_gone",
                "already_read",
            )
        ]
    )
    assert [key for key in wanted if key not in english] == []


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("az-AZ,az;q=0.9,en;q=0.8", "az"),
        ("en-GB,en;q=0.9", "en"),
        ("fr-FR,az;q=0.5,en;q=0.7", "en"),
        ("ru, az;q=0.8", "az"),
        ("fr, de", None),
        ("", None),
        (None, None),
        ("az;q=0, en;q=0.1", "en"),
        ("az_AZ", "az"),
        ("en;q=nonsense, az;q=0.2", "az"),
    ],
)
def test_the_language_comes_from_accept_language(header: str | None, expected: str | None) -> None:
    assert i18n.negotiate(header) == expected


async def test_the_center_is_served_with_its_headers_and_in_the_asked_language(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/", headers={"Accept-Language": "az"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<html lang="az"' in page.text
    assert "Daxil olun" in page.text
    # The catalogues for the scripts: valid JSON, nothing that could close the script tag.
    embedded = re.search(
        r'<script type="application/json" id="nf-messages">(.*?)</script>', page.text, re.S
    )
    assert embedded is not None
    assert set(json.loads(embedded.group(1))) == set(i18n.LOCALES)

    english = await client.get("/")
    assert '<html lang="en"' in english.text
    assert "Sign in" in english.text


async def test_static_files_are_served_from_the_package_and_pages_stay_out_of_the_api_docs(
    client: httpx.AsyncClient,
) -> None:
    for path, kind in [
        ("/static/js/center.js", "javascript"),
        ("/static/css/notiflow.css", "text/css"),
        ("/static/vendor/pusher-js/pusher.min.js", "javascript"),
        ("/static/vendor/laravel-echo/echo.iife.js", "javascript"),
        ("/static/favicon.svg", "image/svg+xml"),
    ]:
        response = await client.get(path)
        assert response.status_code == 200, path
        assert kind in response.headers["content-type"], path
    missing = await client.get("/static/nothing.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    schema = (await client.get("/openapi.json")).json()
    assert "/" not in schema["paths"]


def test_the_pages_load_every_vendored_file_they_name() -> None:
    templates = "".join(path.read_text() for path in (PAGES / "templates").glob("*.html"))
    for name in re.findall(r"static\('([^']+)'\)", templates):
        assert (PAGES / "static" / name).is_file(), name


def test_the_replay_helper_served_is_the_one_in_clients() -> None:
    served = PAGES / "static" / "vendor" / "notiflow-replay.js"
    original = ROOT / "clients" / "js" / "notiflow-replay.js"
    assert (
        hashlib.sha256(served.read_bytes()).digest()
        == hashlib.sha256(original.read_bytes()).digest()
    ), "run scripts/vendor-js.sh"


def test_the_vendored_versions_are_those_recorded() -> None:
    readme = (PAGES / "static" / "vendor" / "README.md").read_text()
    pusher = re.search(r"pusher-js \(`dist/web/pusher.min.js`\) \| ([\d.]+)", readme)
    assert pusher is not None
    header = (PAGES / "static" / "vendor" / "pusher-js" / "pusher.min.js.LICENSE.txt").read_text()
    assert f"v{pusher.group(1)}" in header
    for licence in ("pusher-js/LICENCE", "laravel-echo/LICENSE.md"):
        assert "MIT" in (PAGES / "static" / "vendor" / licence).read_text()
    assert (ROOT / "tests" / "pages" / "vendor" / "axe-core" / "LICENSE").is_file()


def test_without_chromium_the_browser_tests_fail_rather_than_skip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFLOW_TEST_CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="chromium is needed"):
        chromium_executable()
