"""Routes of the pages: ``GET /`` (the notification center) and the static assets."""

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


def static_files() -> StaticFiles:
    """The package's ``static/`` folder (styles, scripts, vendored pusher-js and laravel-echo),
    to mount at :data:`STATIC_PATH`."""
    folder = Path(str(resources.files(__package__).joinpath("static")))
    return StaticFiles(directory=folder)


__all__ = ["STATIC_PATH", "router", "static_files"]
