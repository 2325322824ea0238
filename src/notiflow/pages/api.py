"""Routes of the pages: ``GET /`` (the notification center), ``GET /admin`` (operations, for
a tenant's owners and admins) and the static assets."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from notiflow.pages.rendering import STATIC_PATH, render_page

# Pages are not API operations: kept out of the OpenAPI document (and its bearer rule).
router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def notification_center(request: Request) -> HTMLResponse:
    """The end user's notification center: bell, feed, preferences (docs/pages.md)."""
    return render_page(request, "center.html", title_key="center.title")


@router.get("/admin", response_class=HTMLResponse)
async def admin(request: Request) -> HTMLResponse:
    """The tenant's operations for its owners and admins: jobs, failures, deliveries, live
    connections, the audit log, members, sending, the development mail folder
    (docs/pages.md). The HTML carries no data; the scripts call the admin API with the
    user's token."""
    return render_page(request, "admin.html", title_key="admin.title")


def static_files() -> StaticFiles:
    """The package's ``static/`` folder (styles, scripts, vendored pusher-js and laravel-echo),
    to mount at :data:`STATIC_PATH`."""
    folder = Path(str(resources.files(__package__).joinpath("static")))
    return StaticFiles(directory=folder)


__all__ = ["STATIC_PATH", "router", "static_files"]
