"""The retry policy: full-jitter exponential backoff, server hints, and which outcomes retry."""

from __future__ import annotations

import random

import pytest

from batch.joggai.backoff import RetryPolicy


def test_delay_stays_within_the_exponential_ceiling() -> None:
    """Full jitter: delay(n) lies in [0, min(max_delay, base * 2**(n-1))]."""
    policy = RetryPolicy(base_delay=2.0, max_delay=60.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (6, 60.0), (40, 60.0)]:
        delays = [policy.delay(attempt, retry_after=None, rng=rng) for _ in range(500)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Spread over the whole interval, not clustered at one end.
        assert max(delays) > 0.9 * ceiling
        assert min(delays) < 0.1 * ceiling


def test_delay_is_reproducible_with_a_seeded_rng() -> None:
    """The same seed gives the same sequence of delays."""
    policy = RetryPolicy()
    first = [policy.delay(n, retry_after=None, rng=random.Random(42)) for n in range(1, 6)]
    second = [policy.delay(n, retry_after=None, rng=random.Random(42)) for n in range(1, 6)]
    assert first == second
    fraction = random.Random(42).random()
    assert first == pytest.approx([2.0 * 2 ** (n - 1) * fraction for n in range(1, 6)])


def test_without_jitter_the_delay_is_the_ceiling() -> None:
    """jitter=False gives the plain capped exponential."""
    policy = RetryPolicy(base_delay=1.5, max_delay=10.0, jitter=False)
    rng = random.Random(0)
    assert [policy.delay(n, retry_after=None, rng=rng) for n in (1, 2, 3, 4, 5)] == [
        1.5,
        3.0,
        6.0,
        10.0,
        10.0,
    ]


def test_absurd_attempt_numbers_do_not_overflow() -> None:
    """A huge attempt number is capped at max_delay instead of raising OverflowError."""
    policy = RetryPolicy(jitter=False)
    assert policy.delay(10_000, retry_after=None, rng=random.Random(0)) == 60.0


def test_retry_after_wins_over_the_computed_delay() -> None:
    """A server hint is used as it is, longer or shorter than the backoff, and beyond max_delay."""
    policy = RetryPolicy(max_delay=60.0)
    rng = random.Random(1)
    assert policy.delay(1, retry_after=17.5, rng=rng) == 17.5
    assert policy.delay(6, retry_after=0.5, rng=rng) == 0.5
    assert policy.delay(2, retry_after=45.0, rng=rng) == 45.0
    assert policy.delay(2, retry_after=-3.0, rng=rng) == 0.0


def test_attempt_numbers_start_at_one() -> None:
    """attempt=0 is a caller bug, reported at once."""
    with pytest.raises(ValueError, match="start at 1"):
        RetryPolicy().delay(0, retry_after=None, rng=random.Random(0))


@pytest.mark.parametrize(
    ("kind", "attempt", "expected"),
    [
        ("retryable", 1, True),
        ("retryable", 4, True),
        ("retryable", 5, False),
        ("not_sent", 1, True),
        ("not_sent", 5, False),
        ("unknown", 1, False),
        ("permanent", 1, False),
        ("account", 1, False),
        ("ok", 1, False),
    ],
)
def test_should_retry_only_safe_kinds_until_attempts_run_out(
    kind: str, attempt: int, expected: bool
) -> None:
    """Retry retryable and not_sent outcomes up to max_attempts; never unknown (reconcile first)."""
    assert RetryPolicy(max_attempts=5).should_retry(kind, attempt) is expected


def test_invalid_policies_are_rejected() -> None:
    """A policy that could never send, or waits negative time, is refused."""
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(base_delay=-1.0)


def test_a_server_hint_longer_than_max_delay_is_cut_to_max_delay() -> None:
    """Retry-After: 1e9 (or a far HTTP date) waits max_delay, never the server's absurd figure."""
    policy = RetryPolicy(max_delay=60.0)
    rng = random.Random(0)
    assert policy.delay(1, retry_after=1e9, rng=rng) == 60.0
    assert policy.delay(3, retry_after=300.0, rng=rng) == 60.0
