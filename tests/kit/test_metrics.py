"""GET /metrics: Prometheus text exposition of notiflow's own registry, moved by the helpers."""

from __future__ import annotations

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from notiflow.kit import metrics
from notiflow.main.app import create_app
from notiflow.main.runtime import Runtime

METRIC_FAMILIES = {
    # family name (as the text format declares it in # TYPE) -> type
    "notiflow_deliveries": "counter",
    "notiflow_delivery_duration_seconds": "histogram",
    "notiflow_job_runs": "counter",
    "notiflow_job_duration_seconds": "histogram",
    "notiflow_job_retries": "counter",
    "notiflow_failed_jobs": "counter",
    "notiflow_queue_depth": "gauge",
    "notiflow_notifications_created": "counter",
    "notiflow_realtime_connections": "gauge",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_are_exposed_in_the_text_format(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    families = {
        family.name: family.type for family in text_string_to_metric_families(response.text)
    }
    for name, kind in METRIC_FAMILIES.items():
        assert families.get(name) == kind, name
    assert "# TYPE notiflow_failed_jobs_total counter" in response.text
    assert "\nnotiflow_failed_jobs_total " in response.text
    assert "process_resident_memory_bytes" in response.text  # process collector included


async def test_helpers_move_the_numbers(client: httpx.AsyncClient) -> None:
    before = await scrape(client)

    metrics.record_delivery("sms", "sent", 0.2)
    metrics.record_delivery("sms", "sent", 0.3)
    metrics.record_delivery("email", "suppressed")
    metrics.record_job("content.publish_post", "retry", 1.5)
    metrics.record_retry("content.publish_post")
    metrics.record_failed_job()
    metrics.set_queue_depth("deliveries", 17)
    metrics.record_notifications_created("post_failed", 3)
    after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("notiflow_deliveries_total", channel="sms", outcome="sent") == 2
    assert delta("notiflow_deliveries_total", channel="email", outcome="suppressed") == 1
    assert delta("notiflow_delivery_duration_seconds_count", channel="sms") == 2
    assert abs(delta("notiflow_delivery_duration_seconds_sum", channel="sms") - 0.5) < 1e-9
    # A suppressed delivery never reached a provider: no duration recorded.
    assert delta("notiflow_delivery_duration_seconds_count", channel="email") == 0
    assert delta("notiflow_job_runs_total", job="content.publish_post", outcome="retry") == 1
    assert delta("notiflow_job_duration_seconds_count", job="content.publish_post") == 1
    assert delta("notiflow_job_duration_seconds_bucket", job="content.publish_post", le="2.5") == 1
    assert delta("notiflow_job_duration_seconds_bucket", job="content.publish_post", le="1.0") == 0
    assert delta("notiflow_job_retries_total", job="content.publish_post") == 1
    assert delta("notiflow_failed_jobs_total") == 1
    assert value(after, "notiflow_queue_depth", queue="deliveries") == 17
    assert delta("notiflow_notifications_created_total", type="post_failed") == 3


async def test_realtime_connections_come_from_a_registered_source(
    client: httpx.AsyncClient,
) -> None:
    open_connections = [1, 2, 3]
    metrics.set_realtime_connections_source(lambda: len(open_connections))
    try:
        assert value(await scrape(client), "notiflow_realtime_connections") == 3
        open_connections.pop()
        assert value(await scrape(client), "notiflow_realtime_connections") == 2
    finally:
        metrics.set_realtime_connections_source(None)
    assert value(await scrape(client), "notiflow_realtime_connections") == 0


async def test_apps_can_be_built_again_and_again(runtime: Runtime) -> None:
    for _ in range(3):
        app = create_app(runtime=runtime)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notiflow.test") as http:
            assert (await http.get("/metrics")).status_code == 200


def test_separate_metrics_objects_do_not_collide() -> None:
    first, second = metrics.Metrics(), metrics.Metrics()
    first.record_failed_job()

    assert first.registry.get_sample_value("notiflow_failed_jobs_total") == 1
    assert second.registry.get_sample_value("notiflow_failed_jobs_total") == 0
    assert b"notiflow_failed_jobs_total 1.0" in first.exposition()
