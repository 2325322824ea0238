"""Every job of notiflow, in one registry (names are ``domain.verb``)."""

from __future__ import annotations

from notiflow.delivery.jobs import JOBS as DELIVERY_JOBS
from notiflow.kit.queue import Job
from notiflow.notifications.jobs import JOBS as NOTIFICATION_JOBS

ALL_JOBS: list[Job] = [*DELIVERY_JOBS, *NOTIFICATION_JOBS]
