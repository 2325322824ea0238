"""The outgoing mail folder in development: ``/api/v1/admin/mail`` (owners and admins)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from notiflow.auth.deps import TenantAdmin
from notiflow.config import Environment, Settings
from notiflow.delivery.mail_outbox import (
    MailSummary,
    list_messages,
    member_emails,
    read_message,
)
from notiflow.kit.deps import AppContextDep, SessionDep
from notiflow.kit.errors import NotFound
from notiflow.notifications.schemas import DataEnvelope

router = APIRouter(prefix="/api/v1/admin/mail", tags=["admin"])


class MailSummaryData(BaseModel):
    id: uuid.UUID
    file_name: str = Field(description="The message's file in NOTIFLOW_MAIL_DIR")
    to: list[str]
    subject: str
    date: datetime | None

    @classmethod
    def from_summary(cls, summary: MailSummary) -> MailSummaryData:
        return cls(
            id=summary.id,
            file_name=summary.file_name,
            to=summary.to,
            subject=summary.subject,
            date=summary.date,
        )


class MailPageMeta(BaseModel):
    current_page: int
    per_page: int
    has_more: bool


class MailPage(BaseModel):
    data: list[MailSummaryData]
    meta: MailPageMeta


class MailMessageData(MailSummaryData):
    sender: str = Field(description="The From header")
    text: str | None = Field(description="The plain-text body")
    html: str | None = Field(description="The HTML body")


def _development_only(settings: Settings) -> None:
    if settings.env is not Environment.DEVELOPMENT:
        # Outside development there is no mail folder to show (and no route, as far as a
        # caller can tell).
        raise NotFound("the mail folder is shown in development only")


@router.get("", response_model=MailPage, summary="List the development mail folder")
async def list_mail(
    auth: TenantAdmin,
    session: SessionDep,
    context: AppContextDep,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 50,
) -> MailPage:
    """Development only (404 otherwise): the emails notiflow wrote to its mail folder
    (``NOTIFLOW_MAIL_DIR``, default ``./var/mail``) instead of sending them, newest first,
    with recipients, subject, date and file name. Only messages addressed to a current member
    of the caller's tenant are listed. Owners and admins only."""
    _development_only(context.settings)
    emails = await member_emails(session, auth.tenant_id)
    shown, more = await list_messages(
        context.settings.mail_dir, emails, offset=(page - 1) * per_page, limit=per_page
    )
    return MailPage(
        data=[MailSummaryData.from_summary(summary) for summary in shown],
        meta=MailPageMeta(current_page=page, per_page=per_page, has_more=more),
    )


@router.get(
    "/{message_id}",
    response_model=DataEnvelope[MailMessageData],
    summary="Read one message of the development mail folder",
)
async def read_mail(
    message_id: uuid.UUID, auth: TenantAdmin, session: SessionDep, context: AppContextDep
) -> DataEnvelope[MailMessageData]:
    """Development only (404 otherwise): one message of the mail folder with its sender and
    its text and HTML bodies. 404 for a message that is not there or is not addressed to a
    current member of the caller's tenant. Owners and admins only."""
    _development_only(context.settings)
    emails = await member_emails(session, auth.tenant_id)
    found = await read_message(context.settings.mail_dir, message_id, emails)
    summary = MailSummaryData.from_summary(found.summary)
    return DataEnvelope(
        data=MailMessageData(
            **summary.model_dump(), sender=found.sender, text=found.text, html=found.html
        )
    )
