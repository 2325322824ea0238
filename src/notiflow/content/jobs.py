"""Publishing jobs: ``content.scan_due_posts`` and ``content.publish_post``.

The publish job succeeds once it has recorded each target's outcome; a target's own retries
are timed by its ``next_attempt_at`` and claimed again by the scanner, so they survive a lost
queue message. The job itself is retried (3 tries, 60 s exponential) only when it crashes
(e.g. the database was unreachable); after the last try its failure hook closes the post.
"""

from __future__ import annotations

from typing import Any

from notiflow.content.publishing import PUBLISH_JOB, Publisher, PublishPayload, scan_due_posts
from notiflow.kit.queue import Job, NoPayload, repeat_forever
from notiflow.social.ports import PlatformContext


async def scan_due_posts_job(context: PlatformContext, payload: NoPayload) -> None:
    await scan_due_posts(context)


async def publish_post(context: PlatformContext, payload: PublishPayload) -> None:
    """Publish the claimed targets of one post (as :meth:`ClaimedPost.payload` names them)."""
    await Publisher(context).publish(payload.post_id, payload.target_ids, payload.claim)


async def publish_post_failed(
    context: PlatformContext, payload: PublishPayload, error: BaseException
) -> None:
    await Publisher(context).give_up(
        payload.post_id, payload.target_ids, f"{type(error).__name__}: {error}"
    )


async def scan_forever(
    context: PlatformContext, interval: float
) -> None:  # pragma: no cover - a loop
    """Claim and dispatch due posts every ``interval`` seconds (the scheduler runs this)."""
    await repeat_forever(
        interval, lambda: scan_due_posts(context), failure_event="publish_scan_failed"
    )


JOBS: list[Job[PlatformContext, Any]] = [
    Job("content.scan_due_posts", scan_due_posts_job, NoPayload, max_attempts=1),
    Job(
        PUBLISH_JOB,
        publish_post,
        PublishPayload,
        max_attempts=3,
        backoff_seconds=60.0,
        on_failure=publish_post_failed,
    ),
]

__all__ = [
    "JOBS",
    "PublishPayload",
    "publish_post",
    "publish_post_failed",
    "scan_due_posts_job",
    "scan_forever",
]
