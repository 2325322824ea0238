"""Web Push subscription routes."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/push-subscriptions", tags=["push"])
