"""Response models of the privacy routes: an export request and a deletion request."""

from __future__ import annotations

import uuid

from pydantic import BaseModel

from notiflow.config import Settings
from notiflow.models import DataDeletionRequest, DataExportRequest
from notiflow.privacy.service import download_url, iso

EXPORT_FAILED_MESSAGE = "the export could not be prepared; please request a new one"


class DataExportData(BaseModel):
    id: uuid.UUID
    status: str
    created_at: str
    completed_at: str | None
    # After this the link stops working and the file is deleted.
    expires_at: str | None
    size_bytes: int | None
    sha256: str | None
    # Present while the export can be downloaded: works without signing in, until expires_at.
    download_url: str | None
    # Why a failed export failed, in words for people (the technical error stays in the logs).
    error: str | None

    @classmethod
    def from_model(cls, request: DataExportRequest, settings: Settings) -> DataExportData:
        return cls(
            id=request.id,
            status=request.status,
            created_at=iso(request.created_at) or "",
            completed_at=iso(request.completed_at),
            expires_at=iso(request.expires_at),
            size_bytes=request.size_bytes,
            sha256=request.sha256,
            download_url=download_url(settings, request),
            error=EXPORT_FAILED_MESSAGE if request.status == "failed" else None,
        )


class DataDeletionData(BaseModel):
    id: uuid.UUID
    status: str
    created_at: str
    # When the account and data will be deleted; cancellable until then.
    scheduled_for: str
    cancelled_at: str | None
    completed_at: str | None
    can_cancel: bool

    @classmethod
    def from_model(cls, request: DataDeletionRequest) -> DataDeletionData:
        return cls(
            id=request.id,
            status=request.status,
            created_at=iso(request.created_at) or "",
            scheduled_for=iso(request.scheduled_for) or "",
            cancelled_at=iso(request.cancelled_at),
            completed_at=iso(request.completed_at),
            can_cancel=request.status == "pending",
        )
