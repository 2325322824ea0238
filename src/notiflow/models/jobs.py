"""Jobs that gave up: the dead-letter table."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from notiflow.kit.db import Base, IdMixin
from notiflow.kit.ids import utcnow


class FailedJob(IdMixin, Base):
    __tablename__ = "failed_jobs"

    job_name: Mapped[str] = mapped_column(String(100), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(default=None, index=True)
    workspace_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    exception: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(default=1)
    failed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    retried_at: Mapped[datetime | None] = mapped_column(default=None)


class JobAttempt(IdMixin, Base):
    """A job waiting for its next try: retry timing lives here, not in the queue."""

    __tablename__ = "job_attempts"
    __table_args__ = (Index(None, "next_attempt_at"),)

    job_name: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(default=1)
    next_attempt_at: Mapped[datetime] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
