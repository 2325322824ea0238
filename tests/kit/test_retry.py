"""Retry timing: the waits of every caller stay in their ranges, under their caps, and a
provider's Retry-After is honoured."""

from __future__ import annotations

import math

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from notiflow.content.publishing import retry_delay
from notiflow.delivery.service import DeliveryWorker, email_retry_delay
from notiflow.kit import outages
from notiflow.kit.queue import Job, NoPayload
from notiflow.kit.retry import FULL_JITTER, HALF_JITTER, Backoff, HorizonPolicy, RetryPolicy
from notiflow.main.runtime import Runtime
from notiflow.realtime.redis import RECONNECT_RETRY
from tests.conftest import make_settings

# Enough draws that a jitter not spread over its whole range shows: a check that the draws reach
# into the top and bottom tenth of the range fails by chance with a probability under 1e-45.
DRAWS = 1_000


def draws(*, policy: RetryPolicy, attempt: int) -> list[float]:
    return [policy.delay(attempt) for _ in range(DRAWS)]


def spread_over(values: list[float], low: float, high: float) -> None:
    """All ``values`` in [low, high), reaching into both ends of it."""
    assert all(low <= value < high for value in values), (min(values), max(values), low, high)
    tenth = (high - low) / 10
    assert min(values) < low + tenth
    assert max(values) > high - tenth


def test_half_jitter_waits_half_to_all_of_a_doubling_delay() -> None:
    policy = RetryPolicy(base=30.0)
    for attempt, ceiling in [(1, 30.0), (2, 60.0), (3, 120.0), (6, 960.0)]:
        assert policy.ceiling(attempt) == ceiling
        spread_over(draws(policy=policy, attempt=attempt), ceiling / 2, ceiling)


def test_full_jitter_waits_anywhere_up_to_the_delay() -> None:
    policy = RetryPolicy(base=0.5, cap=30.0, jitter=FULL_JITTER)
    spread_over(draws(policy=policy, attempt=1), 0.0, 0.5)
    spread_over(draws(policy=policy, attempt=4), 0.0, 4.0)


def test_the_cap_bounds_every_wait_however_many_tries_failed() -> None:
    policy = RetryPolicy(base=30.0, cap=3600.0)
    assert policy.ceiling(7) == 1920.0
    assert policy.ceiling(8) == 3600.0
    spread_over(draws(policy=policy, attempt=8), 1800.0, 3600.0)
    # A loop that failed for days: no overflow, still the cap.
    assert policy.ceiling(100_000) == 3600.0
    assert 1800.0 <= policy.delay(100_000) < 3600.0
    assert RetryPolicy(base=1.0).ceiling(100_000) == math.inf


def test_a_longer_retry_after_is_waited_for_up_to_its_cap() -> None:
    policy = RetryPolicy(base=60.0, cap=6 * 3600.0, retry_after_cap=24 * 3600.0)
    # Longer than any jittered wait: the provider's time wins.
    assert policy.delay(1, retry_after=900.0) == 900.0
    # Further away than the cap: the cap.
    assert policy.delay(1, retry_after=3 * 86_400.0) == 86_400.0
    # Shorter than the backoff: the backoff (the provider's time is a minimum, not a target).
    assert all(30.0 <= policy.delay(1, retry_after=1.0) < 60.0 for _ in range(100))
    # None: the backoff.
    spread_over([policy.delay(2, retry_after=None) for _ in range(DRAWS)], 60.0, 120.0)


def test_a_loop_backoff_grows_with_each_failure_and_starts_over_on_reset() -> None:
    backoff = Backoff(RetryPolicy(base=1.0, cap=4.0, jitter=HALF_JITTER))
    waits = [backoff.next_delay() for _ in range(5)]
    assert backoff.failures == 5
    for wait, ceiling in zip(waits, [1.0, 2.0, 4.0, 4.0, 4.0], strict=True):
        assert ceiling / 2 <= wait < ceiling
    backoff.reset()
    assert backoff.failures == 0
    assert 0.5 <= backoff.next_delay() < 1.0


def test_the_outage_backoff_is_full_jitter_from_half_a_second_to_30_seconds() -> None:
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    samples: list[list[float]] = [[] for _ in ceilings]
    for _ in range(DRAWS):
        backoff = outages.Backoff()
        for index in range(len(ceilings)):
            samples[index].append(backoff.next_delay())
    for values, ceiling in zip(samples, ceilings, strict=True):
        spread_over(values, 0.0, ceiling)
    # A loop's own cap (the scheduler's: ten intervals).
    capped = outages.Backoff(cap=2.0)
    assert all(capped.next_delay() < 2.0 for _ in range(20))


def test_the_realtime_reconnect_waits_from_a_tenth_of_a_second_to_two() -> None:
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (5, 1.6), (6, 2.0), (50, 2.0)]:
        spread_over(draws(policy=RECONNECT_RETRY, attempt=attempt), ceiling / 2, ceiling)


def test_queued_jobs_double_from_their_backoff_without_a_cap() -> None:
    async def noop(runtime: Runtime, payload: NoPayload) -> None:
        return None

    job = Job("privacy.delete", noop, NoPayload, max_attempts=5, backoff_seconds=300.0)
    policy = job.retry_policy
    spread_over(draws(policy=policy, attempt=1), 150.0, 300.0)
    spread_over(draws(policy=policy, attempt=4), 1200.0, 2400.0)
    assert policy.ceiling(30) == 300.0 * 2**29


def test_deliveries_other_than_email_double_from_their_base_up_to_an_hour() -> None:
    worker = DeliveryWorker(async_sessionmaker(), make_settings(), {}, backoff_base=30.0)
    spread_over(draws(policy=worker.retry_policy, attempt=1), 15.0, 30.0)
    spread_over(draws(policy=worker.retry_policy, attempt=3), 60.0, 120.0)
    spread_over(draws(policy=worker.retry_policy, attempt=9), 1800.0, 3600.0)


@pytest.mark.parametrize("horizon", [3600.0, 1.0])
def test_email_retries_are_spread_over_the_horizon(horizon: float) -> None:
    # 3 tries: a sixth of the horizon, then the rest; jitter only lengthens a wait (<= 20 %).
    first = [email_retry_delay(1, horizon) for _ in range(DRAWS)]
    second = [email_retry_delay(2, horizon) for _ in range(DRAWS)]
    spread_over(first, horizon / 6, horizon / 6 * 1.2)
    spread_over(second, horizon * 5 / 6, horizon * 5 / 6 * 1.2)
    # A later attempt than the tries allow waits like the last retry.
    assert horizon * 5 / 6 <= email_retry_delay(7, horizon) <= horizon
    totals = [a + b for a, b in zip(first, second, strict=True)]
    assert all(horizon <= total < horizon * 1.2 for total in totals)


def test_a_horizon_of_more_tries_grows_geometrically() -> None:
    policy = HorizonPolicy(horizon=3100.0, tries=4, growth=5.0, jitter=HALF_JITTER)
    # 100 + 500 + 2500 = 3100 before jitter.
    for attempt, wait in [(1, 100.0), (2, 500.0), (3, 2500.0)]:
        spread_over([policy.delay(attempt) for _ in range(DRAWS)], wait / 2, wait)


def test_publishing_honours_the_networks_reset_time() -> None:
    base = 60.0
    spread_over([retry_delay(1, base) for _ in range(DRAWS)], 30.0, 60.0)
    spread_over([retry_delay(20, base) for _ in range(DRAWS)], 3 * 3600.0, 6 * 3600.0)
    assert retry_delay(1, base, retry_after=600.0) == 600.0
    assert retry_delay(1, base, retry_after=2 * 86_400.0) == 86_400.0
    assert 30.0 <= retry_delay(1, base, retry_after=5.0) < 60.0
