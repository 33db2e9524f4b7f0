"""Retry policy arithmetic, tested directly."""

from __future__ import annotations

import random

import pytest

from millrace.errors import ConfigurationError, GiveUp, RetryAfter
from millrace.retry import Backoff, Die, Retry, RetryPolicy, exponential, fixed


def test_exponential_backoff_follows_the_fields_example() -> None:
    """10 s, then 1 min: first_s=10, factor=6, within the ±10 % jitter."""
    backoff = exponential(first_s=10, factor=6, jitter=0.1)
    rng = random.Random(7)
    for _ in range(200):
        assert 9 <= backoff.delay_s(1, rng) <= 11
        assert 54 <= backoff.delay_s(2, rng) <= 66


def test_backoff_is_capped() -> None:
    backoff = Backoff(first_s=10, factor=10, cap_s=300)
    assert [backoff.delay_s(n) for n in (1, 2, 3, 4)] == [10, 100, 300, 300]


def test_fixed_backoff_without_jitter_is_exact() -> None:
    assert {fixed(5).delay_s(n) for n in range(1, 10)} == {5}


def test_jitter_spreads_delays() -> None:
    delays = {fixed(100, jitter=0.2).delay_s(1, random.Random(seed)) for seed in range(50)}
    assert len(delays) > 40
    assert all(80 <= d <= 120 for d in delays)


def test_retryable_error_retries_until_the_budget_is_spent() -> None:
    policy = RetryPolicy(attempts=3, backoff=fixed(2))
    assert policy.decide(ConnectionError(), 1) == Retry(delay_s=2)
    assert policy.decide(ConnectionError(), 2) == Retry(delay_s=2)
    assert policy.decide(ConnectionError(), 3) == Die(reason="exhausted")


def test_give_up_errors_die_at_once() -> None:
    policy = RetryPolicy(attempts=5, give_up_on=(PermissionError,))
    assert policy.decide(PermissionError(), 1) == Die(reason="give_up")
    assert policy.decide(GiveUp("no"), 1) == Die(reason="give_up")


def test_a_configuration_error_is_never_retried() -> None:
    """Whatever the policy: a missing program or setting needs a person, not another attempt."""
    for policy in (RetryPolicy(attempts=5), RetryPolicy(attempts=5, retry_on=(ConfigurationError,))):
        assert policy.decide(ConfigurationError("soffice is not installed"), 1) == Die(reason="misconfigured")


def test_errors_outside_retry_on_are_not_retried() -> None:
    policy = RetryPolicy(attempts=5, retry_on=(ConnectionError, TimeoutError))
    assert policy.decide(ValueError(), 1) == Die(reason="not_retryable")
    assert isinstance(policy.decide(TimeoutError(), 1), Retry)


def test_retry_after_overrides_the_backoff() -> None:
    policy = RetryPolicy(attempts=3, backoff=fixed(600), retry_on=(ConnectionError,))
    assert policy.decide(RetryAfter(12), 1) == Retry(delay_s=12)
    assert policy.decide(RetryAfter(12), 3) == Die(reason="exhausted")


def test_a_policy_needs_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least one attempt"):
        RetryPolicy(attempts=0)
