"""Every job of notiflow, in one registry (names are ``domain.verb``)."""

from __future__ import annotations

from typing import Any, Protocol

from notiflow.analytics.jobs import JOBS as ANALYTICS_JOBS
from notiflow.content.jobs import JOBS as CONTENT_JOBS
from notiflow.delivery.jobs import JOBS as DELIVERY_JOBS
from notiflow.delivery.jobs import DeliveryContext
from notiflow.inbox.jobs import JOBS as INBOX_JOBS
from notiflow.kit.queue import Job
from notiflow.notifications.jobs import JOBS as NOTIFICATION_JOBS
from notiflow.privacy.jobs import JOBS as PRIVACY_JOBS
from notiflow.social.jobs import JOBS as SOCIAL_JOBS
from notiflow.social.ports import PlatformContext
from notiflow.tenancy.jobs import JOBS as TENANCY_JOBS


class AllJobsContext(DeliveryContext, PlatformContext, Protocol):
    """What the jobs of every domain need, together: the context a worker hands out
    (:class:`notiflow.main.runtime.Runtime` satisfies it, which mypy checks where the runtime
    starts its queue)."""


ALL_JOBS: list[Job[AllJobsContext, Any]] = [
    *DELIVERY_JOBS,
    *NOTIFICATION_JOBS,
    *INBOX_JOBS,
    *ANALYTICS_JOBS,
    *CONTENT_JOBS,
    *PRIVACY_JOBS,
    *SOCIAL_JOBS,
    *TENANCY_JOBS,
]
