"""One-click unsubscribe (RFC 8058) routes.

Every notification email carries ``List-Unsubscribe: <PUBLIC_URL/unsubscribe/{token}>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. Mail clients that offer an "unsubscribe"
button POST to that URL; people who click the link in the footer get a page with a button that
POSTs to it. GET never changes anything, because mail scanners and link previews follow links.
The POST needs no login and no CSRF token: the signed token is the authorization, and it can do
only one thing, turn off one notification type's emails for one user.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from notiflow.delivery import unsubscribe_service
from notiflow.delivery.email import (
    APP_NAME,
    normalize_locale,
    template_environment,
    translator,
    type_label,
)
from notiflow.delivery.unsubscribe import UnsubscribeTarget
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.models import User
from notiflow.notifications.deps import NotificationServiceDep

router = APIRouter(tags=["unsubscribe"])

# The token is a credential in the URL: keep it out of caches, referrers and search indexes.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
}


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def confirm_unsubscribe(
    token: str, context: AppContextDep, session: SessionDep
) -> HTMLResponse:
    """A page asking to confirm; it changes nothing by itself."""
    target, user = await unsubscribe_service.resolve(context.settings, session, token)
    return _page(user, target, token, done=False)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(
    token: str,
    request: Request,
    context: AppContextDep,
    session: SessionDep,
    service: NotificationServiceDep,
) -> HTMLResponse:
    """Turn off the token's notification type by email for its user (other flags unchanged).

    RFC 8058 clients send ``List-Unsubscribe=One-Click`` (form-encoded or multipart); the page's
    form sends the same. The body is not required: the POST is the intent, the token the
    permission. Repeating it is harmless (an unchanged preference is not logged again).
    """
    target, user = await unsubscribe_service.unsubscribe(
        context.settings,
        session,
        service,
        token,
        ip_address=request.client.host if request.client else None,
    )
    return _page(user, target, token, done=True)


def _page(user: User, target: UnsubscribeTarget, token: str, *, done: bool) -> HTMLResponse:
    locale = normalize_locale(user.locale)
    t = translator(locale)
    html = (
        template_environment()
        .get_template("unsubscribe/page.html")
        .render(
            t=t,
            lang=locale,
            app_name=APP_NAME,
            done=done,
            heading=t("unsubscribe_done_title" if done else "unsubscribe_title"),
            type_label=type_label(target.notification_type.value, locale),
            email=_masked(user.email),
            # Relative to /unsubscribe/{token}: the form posts back to the page's own URL, also
            # behind a proxy that mounts notiflow under a path.
            action=token,
        )
    )
    return HTMLResponse(html, headers=_PAGE_HEADERS)


def _masked(address: str) -> str:
    """``a***@example.com``: enough for people to recognize their address, not to harvest it."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"
