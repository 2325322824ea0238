"""Rendering a page: the Jinja2 environment, the language of the request and the headers every
page carries.

    return render_page(request, "center.html", title_key="center.title")

A page's template extends ``base.html`` (the layout: header, language switch, sign-in, the
message catalogues for the scripts) and fills its blocks; docs/pages.md lists them.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from notiflow import __version__
from notiflow.pages.i18n import (
    DEFAULT_LOCALE,
    LOCALE_NAMES,
    catalogues,
    message,
    negotiate,
)

STATIC_PATH = "/static"

# Scripts and styles come only from notiflow itself; the WebSocket server may be on another
# host or port (NOTIFLOW_WS_PUBLIC_HOST), hence any ws:/wss: for connections.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # The HTML is a shell with no user data, but a fresh one always matches the scripts.
    "Cache-Control": "no-cache",
}


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("notiflow.pages", "templates"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def static_url(path: str) -> str:
    """The URL of an asset under ``static/``; the version makes a new release's files new URLs."""
    return f"{STATIC_PATH}/{path.lstrip('/')}?v={__version__}"


@cache
def _messages_json() -> str:
    # Inside <script type="application/json">: "<" escaped so no message can close the tag.
    return json.dumps(catalogues(), ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")


def render_page(request: Request, template: str, *, title_key: str, **context: Any) -> HTMLResponse:
    """The page in the request's language (``Accept-Language``, else English). The scripts
    then switch to the language chosen in the page, if any, or else, when the browser asked for
    no language the pages have, to the one of the user's profile."""
    asked = negotiate(request.headers.get("accept-language"))
    locale = asked or DEFAULT_LOCALE

    def translate(key: str) -> str:
        return message(locale, key)

    html = (
        environment()
        .get_template(template)
        .render(
            locale=locale,
            locale_negotiated=asked is not None,
            locales=LOCALE_NAMES,
            t=translate,
            title_key=title_key,
            static=static_url,
            messages_json=_messages_json(),
            version=__version__,
            **context,
        )
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)
