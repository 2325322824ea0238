"""Prometheus metrics in one registry of notiflow's own, the helpers that record them, ``/metrics``.

The registry is not prometheus-client's global default, so building apps (or :class:`Metrics`)
again and again never registers a metric twice. Usage from a worker::

    from notiflow.kit import metrics

    metrics.record_delivery("email", "sent", 0.12)
    metrics.record_job("content.publish_post", "retry", 1.8)
    metrics.record_retry("content.publish_post")
    metrics.set_queue_depth("deliveries", 42)

and from whoever owns the WebSocket connections::

    metrics.set_realtime_connections_source(lambda: hub.connection_count)
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

__all__ = [
    "METRICS",
    "Metrics",
    "record_delivery",
    "record_failed_job",
    "record_job",
    "record_notifications_created",
    "record_retry",
    "router",
    "set_queue_depth",
    "set_realtime_connections_source",
]

# Deliveries are one provider call: milliseconds to tens of seconds (an SMTP timeout).
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Jobs range from a no-op sweep to a GDPR export of minutes.
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)


class Metrics:
    """Every notiflow metric, registered in ``registry`` (a fresh one unless given)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # Process memory, CPU and open files, Python GC and version, as the default registry has.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.deliveries = Counter(
            "notiflow_deliveries",
            "External delivery attempts by channel and outcome (sent|retry|failed|suppressed).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.delivery_duration = Histogram(
            "notiflow_delivery_duration_seconds",
            "Time spent in one channel send (provider I/O included).",
            ["channel"],
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self.job_runs = Counter(
            "notiflow_job_runs",
            "Job runs by job name and outcome (ok|retry|failed).",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "notiflow_job_duration_seconds",
            "Duration of one job run.",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.job_retries = Counter(
            "notiflow_job_retries",
            "Retries scheduled, by job name.",
            ["job"],
            registry=self.registry,
        )
        self.failed_jobs = Counter(
            "notiflow_failed_jobs",
            "Jobs that gave up and were written to failed_jobs.",
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "notiflow_queue_depth",
            "Work waiting, by queue (set by whoever can count it).",
            ["queue"],
            registry=self.registry,
        )
        self.notifications_created = Counter(
            "notiflow_notifications_created",
            "Notification rows created, by notification type.",
            ["type"],
            registry=self.registry,
        )
        self.realtime_connections = Gauge(
            "notiflow_realtime_connections",
            "Open WebSocket connections on this process's real-time server.",
            registry=self.registry,
        )
        self._connections_source: Callable[[], float] | None = None
        self.realtime_connections.set_function(self._count_connections)

    def _count_connections(self) -> float:
        source = self._connections_source
        return float(source()) if source is not None else 0.0

    def record_delivery(self, channel: str, outcome: str, seconds: float | None = None) -> None:
        """Count one delivery outcome; ``seconds`` (the send's duration) when a send happened."""
        self.deliveries.labels(channel=str(channel), outcome=str(outcome)).inc()
        if seconds is not None:
            self.delivery_duration.labels(channel=str(channel)).observe(seconds)

    def record_job(self, job: str, outcome: str, seconds: float) -> None:
        self.job_runs.labels(job=job, outcome=str(outcome)).inc()
        self.job_duration.labels(job=job).observe(seconds)

    def record_retry(self, job: str) -> None:
        self.job_retries.labels(job=job).inc()

    def record_failed_job(self) -> None:
        self.failed_jobs.inc()

    def set_queue_depth(self, queue: str, depth: int) -> None:
        self.queue_depth.labels(queue=queue).set(depth)

    def record_notifications_created(self, notification_type: str, count: int = 1) -> None:
        if count > 0:
            self.notifications_created.labels(type=str(notification_type)).inc(count)

    def set_realtime_connections_source(self, source: Callable[[], float] | None) -> None:
        """Read the connection count from ``source`` at each scrape; ``None`` reports 0."""
        self._connections_source = source

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


METRICS = Metrics()


def record_delivery(channel: str, outcome: str, seconds: float | None = None) -> None:
    METRICS.record_delivery(channel, outcome, seconds)


def record_job(job: str, outcome: str, seconds: float) -> None:
    METRICS.record_job(job, outcome, seconds)


def record_retry(job: str) -> None:
    METRICS.record_retry(job)


def record_failed_job() -> None:
    METRICS.record_failed_job()


def set_queue_depth(queue: str, depth: int) -> None:
    METRICS.set_queue_depth(queue, depth)


def record_notifications_created(notification_type: str, count: int = 1) -> None:
    METRICS.record_notifications_created(notification_type, count)


def set_realtime_connections_source(source: Callable[[], float] | None) -> None:
    METRICS.set_realtime_connections_source(source)


router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint() -> Response:
    return Response(METRICS.exposition(), media_type=CONTENT_TYPE_LATEST)


def metrics_app() -> FastAPI:
    """An app serving only ``/metrics``: what ``notiflow worker`` and ``notiflow scheduler``
    answer on ``--metrics-port``."""
    app = FastAPI(title="notiflow metrics", openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(router)
    return app
