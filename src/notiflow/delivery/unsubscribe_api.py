"""One-click unsubscribe (RFC 8058) routes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["unsubscribe"])
