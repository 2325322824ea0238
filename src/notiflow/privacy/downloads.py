"""Who may download a data export, and the audited hand-over of its zip.

A download is allowed with the signed ``token`` of the link (no login: the link from the email)
or with the owner's bearer token; either way it is audited under the owner::

    download = await open_download(session, settings, export_id, link_token=token, bearer=None,
                                   ip_address=ip)
    # download.path: the zip on disk; download.export: its request
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from notiflow.audit import service as audit
from notiflow.auth.service import authenticate_token
from notiflow.config import Settings
from notiflow.kit.errors import Conflict, Forbidden
from notiflow.kit.ids import utcnow
from notiflow.models import DataExportRequest
from notiflow.models.platform import RequestStatus
from notiflow.privacy import service
from notiflow.privacy.tokens import Gone, read_download_token


@dataclass(frozen=True, slots=True)
class Download:
    export: DataExportRequest
    path: str


async def open_download(
    session: AsyncSession,
    settings: Settings,
    export_id: uuid.UUID,
    *,
    link_token: str | None,
    bearer: str | None,
    ip_address: str | None,
) -> Download:
    """The export's zip, when ``link_token`` (checked first) or ``bearer`` allows it; 403 with
    neither or a bad one, 404 for someone else's export by bearer, 409 while it is not ready or
    after it failed, 410 once it expired or its file is gone. Audited as
    ``data_export.downloaded`` with the way in (``signed_link`` or ``bearer``)."""
    export: DataExportRequest | None
    via: str
    if link_token is not None:
        read_download_token(settings, link_token, export_id)
        export = await session.get(DataExportRequest, export_id)
        if export is None:
            raise Gone("this export no longer exists", code="export_gone")
        via = "signed_link"
    elif bearer is not None:
        auth = await authenticate_token(session, bearer)
        export = await service.get_export(session, auth.user.id, export_id)
        via = "bearer"
    else:
        raise Forbidden(
            "a download link token or 'Authorization: Bearer <token>' is needed",
            code="invalid_link",
        )
    path = downloadable_file(settings, export)
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
        ip_address=ip_address,
    )
    return Download(export=export, path=path)


def downloadable_file(settings: Settings, export: DataExportRequest) -> str:
    """The path of the export's zip, or why it cannot be downloaded (409 or 410)."""
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
