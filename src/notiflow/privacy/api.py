"""Privacy routes about the caller: ``/api/v1/me/data-export`` and ``/api/v1/me/data-deletion``."""

from __future__ import annotations

import base64
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from notiflow.audit import service as audit
from notiflow.auth.service import authenticate_token
from notiflow.config import Settings
from notiflow.kit.deps import CurrentAuth, NotificationServiceDep, RuntimeDep, SessionDep, actor_of
from notiflow.kit.errors import Conflict, Forbidden, NotFound
from notiflow.kit.ids import utcnow
from notiflow.models import DataExportRequest
from notiflow.models.platform import RequestStatus
from notiflow.notifications.schemas import DataEnvelope
from notiflow.privacy import service
from notiflow.privacy.schemas import DataDeletionData, DataExportData
from notiflow.privacy.tokens import Gone, read_download_token

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
    request: Request,
    response: Response,
    auth: CurrentAuth,
    session: SessionDep,
    runtime: RuntimeDep,
) -> DataEnvelope[DataExportData]:
    """Ask for a copy of all your data (a zip of JSON files), prepared in the background.

    202 with the new request; 200 with the one already pending or processing, if any. You are
    notified (in-app and by email) with a download link when it is ready.
    """
    export, created = await service.request_export(
        session, runtime.queue, auth.user, auth.tenant_id, actor_of(auth, request)
    )
    if not created:
        response.status_code = 200
    return DataEnvelope(data=DataExportData.from_model(export, runtime.settings))


@router.get("/data-export", response_model=DataEnvelope[list[DataExportData]])
async def list_exports(
    auth: CurrentAuth, session: SessionDep, runtime: RuntimeDep
) -> DataEnvelope[list[DataExportData]]:
    """Your latest data exports (up to 20), newest first."""
    exports = await service.list_exports(session, auth.user.id)
    return DataEnvelope(
        data=[DataExportData.from_model(item, runtime.settings) for item in exports]
    )


@router.get("/data-export/{export_id}", response_model=DataEnvelope[DataExportData])
async def show_export(
    export_id: uuid.UUID, auth: CurrentAuth, session: SessionDep, runtime: RuntimeDep
) -> DataEnvelope[DataExportData]:
    """One of your exports: its status and, once ready and until it expires, ``download_url``."""
    export = await service.get_export(session, auth.user.id, export_id)
    return DataEnvelope(data=DataExportData.from_model(export, runtime.settings))


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
    runtime: RuntimeDep,
    token: Annotated[str | None, Query()] = None,
) -> FileResponse:
    """The zip, streamed from disk. Either the signed ``token`` of the link (no login needed:
    the link from the email) or the owner's bearer token."""
    settings = runtime.settings
    header = request.headers.get("authorization")
    via: str
    if token is not None:
        read_download_token(settings, token, export_id)
        export = await session.get(DataExportRequest, export_id)
        if export is None:
            raise Gone("this export no longer exists", code="export_gone")
        via = "signed_link"
    elif header:
        scheme, _, bearer = header.partition(" ")
        if scheme.lower() != "bearer" or not bearer.strip():
            raise Forbidden("a download link token or 'Authorization: Bearer <token>' is needed")
        auth = await authenticate_token(session, bearer.strip())
        export = await service.get_export(session, auth.user.id, export_id)
        via = "bearer"
    else:
        raise Forbidden(
            "a download link token or 'Authorization: Bearer <token>' is needed",
            code="invalid_link",
        )
    path = _downloadable_file(settings, export)
    await audit.record(
        session,
        action="data_export.downloaded",
        subject_type="data_export_request",
        subject_id=export.id,
        before=None,
        after={"via": via},
        # The link was made for the owner; recorded under them, so deleting them anonymizes it.
        actor_id=export.user_id,
        tenant_id=export.tenant_id,
        ip_address=request.client.host if request.client else None,
    )
    headers = dict(_DOWNLOAD_HEADERS)
    if export.sha256:
        digest = base64.b64encode(bytes.fromhex(export.sha256)).decode("ascii")
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    completed = (export.completed_at or export.created_at).strftime("%Y%m%d")
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"notiflow-data-export-{completed}.zip",
        headers=headers,
        content_disposition_type="attachment",
    )


def _downloadable_file(settings: Settings, export: DataExportRequest) -> str:
    if export.status in (RequestStatus.PENDING.value, RequestStatus.PROCESSING.value):
        raise Conflict("the export is not ready yet", code="export_not_ready")
    if export.status == RequestStatus.FAILED.value:
        raise Conflict("the export failed; request a new one", code="export_failed")
    if not service.is_downloadable(export, now=utcnow()):
        raise Gone("this export has expired; request a new one", code="export_expired")
    path = service.export_file(settings, export)
    if path is None or not path.is_file():
        raise Gone(
            "this export's file is no longer available; request a new one", code="export_expired"
        )
    return str(path)


# ---------------------------------------------------------------------------------- deletion


@router.post(
    "/data-deletion",
    status_code=202,
    response_model=DataEnvelope[DataDeletionData],
    responses={200: {"description": "A deletion is already scheduled: that one is returned"}},
)
async def request_deletion(
    request: Request,
    response: Response,
    auth: CurrentAuth,
    session: SessionDep,
    runtime: RuntimeDep,
    notifications: NotificationServiceDep,
) -> DataEnvelope[DataDeletionData]:
    """Ask for your account and personal data to be deleted after the grace period
    (``NOTIFLOW_DATA_DELETION_GRACE_DAYS``, 14 by default), cancellable until then.

    202 with the new request; 200 with the one already scheduled, if any.
    """
    deletion, created = await service.request_deletion(
        session,
        runtime.queue,
        notifications,
        runtime.settings,
        auth.user,
        auth.tenant_id,
        actor_of(auth, request),
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
async def cancel_deletion(
    request: Request, auth: CurrentAuth, session: SessionDep
) -> DataEnvelope[DataDeletionData]:
    """Cancel your scheduled deletion. 404 when none is scheduled; 409 once it is under way."""
    deletion = await service.cancel_deletion(session, auth.user, actor_of(auth, request))
    return DataEnvelope(data=DataDeletionData.from_model(deletion))


@router.post("/data-deletion/cancel", response_model=DataEnvelope[DataDeletionData])
async def cancel_deletion_post(
    request: Request, auth: CurrentAuth, session: SessionDep
) -> DataEnvelope[DataDeletionData]:
    """The same as ``DELETE /api/v1/me/data-deletion``, for clients that cannot send DELETE."""
    deletion = await service.cancel_deletion(session, auth.user, actor_of(auth, request))
    return DataEnvelope(data=DataDeletionData.from_model(deletion))
