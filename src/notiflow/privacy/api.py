"""Privacy routes about the caller: ``/api/v1/me/data-export`` and ``/api/v1/me/data-deletion``."""

from __future__ import annotations

import base64
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from notiflow.auth.deps import CurrentAuth
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.kit.errors import Forbidden, NotFound
from notiflow.notifications.deps import NotificationServiceDep
from notiflow.notifications.schemas import DataEnvelope
from notiflow.privacy import service
from notiflow.privacy.downloads import open_download
from notiflow.privacy.schemas import DataDeletionData, DataExportData

router = APIRouter(prefix="/api/v1/me", tags=["privacy"])

# The download token is a credential in the URL: keep it out of caches and referrers.
_DOWNLOAD_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
}


# ---------------------------------------------------------------------------------- export


@router.post(
    "/data-export",
    status_code=202,
    response_model=DataEnvelope[DataExportData],
    responses={200: {"description": "An export is already under way: that one is returned"}},
)
async def request_export(
    response: Response,
    auth: CurrentAuth,
    session: SessionDep,
    context: AppContextDep,
) -> DataEnvelope[DataExportData]:
    """Ask for a copy of all your data (a zip of JSON files), prepared in the background.

    202 with the new request; 200 with the one already pending or processing, if any. You are
    notified (in-app and by email) with a download link when it is ready.
    """
    export, created = await service.request_export(
        session, context.queue, auth.user, auth.tenant_id, auth
    )
    if not created:
        response.status_code = 200
    return DataEnvelope(data=DataExportData.from_model(export, context.settings))


@router.get("/data-export", response_model=DataEnvelope[list[DataExportData]])
async def list_exports(
    auth: CurrentAuth, session: SessionDep, context: AppContextDep
) -> DataEnvelope[list[DataExportData]]:
    """Your latest data exports (up to 20), newest first."""
    exports = await service.list_exports(session, auth.user.id)
    return DataEnvelope(
        data=[DataExportData.from_model(item, context.settings) for item in exports]
    )


@router.get("/data-export/{export_id}", response_model=DataEnvelope[DataExportData])
async def show_export(
    export_id: uuid.UUID, auth: CurrentAuth, session: SessionDep, context: AppContextDep
) -> DataEnvelope[DataExportData]:
    """One of your exports: its status and, once ready and until it expires, ``download_url``."""
    export = await service.get_export(session, auth.user.id, export_id)
    return DataEnvelope(data=DataExportData.from_model(export, context.settings))


@router.get(
    "/data-export/{export_id}/download",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/zip": {}}, "description": "The zip file"},
        403: {"description": "The link is not valid for this export"},
        410: {"description": "The link or the export has expired"},
    },
)
async def download_export(
    export_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    context: AppContextDep,
    token: Annotated[str | None, Query()] = None,
) -> FileResponse:
    """The zip, streamed from disk. Either the signed ``token`` of the link (no login needed:
    the link from the email) or the owner's bearer token."""
    bearer: str | None = None
    header = request.headers.get("authorization")
    if token is None and header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Forbidden("a download link token or 'Authorization: Bearer <token>' is needed")
        bearer = value.strip()
    download = await open_download(
        session,
        context.settings,
        export_id,
        link_token=token,
        bearer=bearer,
        ip_address=request.client.host if request.client else None,
    )
    export = download.export
    headers = dict(_DOWNLOAD_HEADERS)
    if export.sha256:
        digest = base64.b64encode(bytes.fromhex(export.sha256)).decode("ascii")
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    completed = (export.completed_at or export.created_at).strftime("%Y%m%d")
    return FileResponse(
        download.path,
        media_type="application/zip",
        filename=f"notiflow-data-export-{completed}.zip",
        headers=headers,
        content_disposition_type="attachment",
    )


# ---------------------------------------------------------------------------------- deletion


@router.post(
    "/data-deletion",
    status_code=202,
    response_model=DataEnvelope[DataDeletionData],
    responses={200: {"description": "A deletion is already scheduled: that one is returned"}},
)
async def request_deletion(
    response: Response,
    auth: CurrentAuth,
    session: SessionDep,
    context: AppContextDep,
    notifications: NotificationServiceDep,
) -> DataEnvelope[DataDeletionData]:
    """Ask for your account and personal data to be deleted after the grace period
    (``NOTIFLOW_DATA_DELETION_GRACE_DAYS``, 14 by default), cancellable until then.

    202 with the new request; 200 with the one already scheduled, if any.
    """
    deletion, created = await service.request_deletion(
        session,
        context.queue,
        notifications,
        context.settings,
        auth.user,
        auth.tenant_id,
        auth,
    )
    if not created:
        response.status_code = 200
    return DataEnvelope(data=DataDeletionData.from_model(deletion))


@router.get("/data-deletion", response_model=DataEnvelope[DataDeletionData])
async def show_deletion(auth: CurrentAuth, session: SessionDep) -> DataEnvelope[DataDeletionData]:
    """Your latest deletion request (scheduled, cancelled, ...); 404 when you never asked."""
    deletion = await service.current_deletion(session, auth.user.id)
    if deletion is None:
        raise NotFound("you have not asked for your data to be deleted", code="no_deletion_request")
    return DataEnvelope(data=DataDeletionData.from_model(deletion))


@router.delete("/data-deletion", response_model=DataEnvelope[DataDeletionData])
async def cancel_deletion(auth: CurrentAuth, session: SessionDep) -> DataEnvelope[DataDeletionData]:
    """Cancel your scheduled deletion. 404 when none is scheduled; 409 once it is under way."""
    deletion = await service.cancel_deletion(session, auth.user, auth)
    return DataEnvelope(data=DataDeletionData.from_model(deletion))


@router.post("/data-deletion/cancel", response_model=DataEnvelope[DataDeletionData])
async def cancel_deletion_post(
    auth: CurrentAuth, session: SessionDep
) -> DataEnvelope[DataDeletionData]:
    """The same as ``DELETE /api/v1/me/data-deletion``, for clients that cannot send DELETE."""
    deletion = await service.cancel_deletion(session, auth.user, auth)
    return DataEnvelope(data=DataDeletionData.from_model(deletion))
