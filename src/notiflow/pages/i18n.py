"""The pages' message catalogues (one JSON file per language in ``locales/``) and the choice of
a language from a request's ``Accept-Language``.

    >>> negotiate("az-AZ,az;q=0.9,en;q=0.8")
    'az'
    >>> message("az", "feed.title")
    'Bildirişlər'

The same catalogues go to the browser (embedded in each page), so the scripts translate what
they render and switch language without a reload. A key missing from a language falls back to
English; tests/pages/test_i18n.py checks every language has every key.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

DEFAULT_LOCALE = "en"
LOCALES = ("en", "az")
# Each language's own name, for the language switch (shown in that language).
LOCALE_NAMES = {"en": "English", "az": "Azərbaycanca"}


@cache
def catalogue(locale: str) -> dict[str, str]:
    """Every message of one language, keyed like ``feed.title``."""
    text = resources.files(__package__).joinpath("locales", f"{locale}.json").read_text("utf-8")
    messages: dict[str, str] = json.loads(text)
    return messages


def catalogues() -> dict[str, dict[str, str]]:
    return {locale: catalogue(locale) for locale in LOCALES}


def message(locale: str, key: str) -> str:
    """The message in ``locale``, else in English, else the key itself (visible, never blank)."""
    return catalogue(locale).get(key) or catalogue(DEFAULT_LOCALE).get(key) or key


def supported(tag: str | None) -> str | None:
    """The supported language of a tag such as ``az-AZ`` or ``en_US``, or None."""
    if not tag:
        return None
    language = tag.strip().replace("_", "-").split("-")[0].lower()
    return language if language in LOCALES else None


def negotiate(accept_language: str | None) -> str | None:
    """The best supported language of an ``Accept-Language`` header (by q-value, then order),
    or None when it names none."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((accept_language or "").split(",")[:20]):
        tag, _, parameters = part.partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = supported(tag)
        if language is not None and quality > 0:
            ranked.append((-quality, position, language))
    return min(ranked)[2] if ranked else None
