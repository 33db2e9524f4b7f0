"""Retry policies: how many attempts, how long between them, and which errors are worth another try.

All of it is pure arithmetic, so it is tested directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from millrace.errors import ConfigurationError, GiveUp, RetryAfter


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Delay before attempt n+1, after attempt n failed: `first_s * factor**(n-1)`, capped, jittered."""

    first_s: float
    factor: float = 1.0
    cap_s: float | None = None
    #: fraction of the delay drawn at random either way: 0.1 gives ±10 %
    jitter: float = 0.0

    def delay_s(self, failed_attempt: int, rng: random.Random | None = None) -> float:
        base = self.first_s * self.factor ** (failed_attempt - 1)
        if self.cap_s is not None:
            base = min(base, self.cap_s)
        if self.jitter:
            base *= 1 + (rng or random).uniform(-self.jitter, self.jitter)
        return max(base, 0.0)


def fixed(delay_s: float, *, jitter: float = 0.0) -> Backoff:
    return Backoff(first_s=delay_s, jitter=jitter)


def exponential(*, first_s: float, factor: float = 2.0, cap_s: float | None = None, jitter: float = 0.1) -> Backoff:
    return Backoff(first_s=first_s, factor=factor, cap_s=cap_s, jitter=jitter)


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    delay_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Die:
    reason: Literal["misconfigured", "give_up", "exhausted", "not_retryable"]


Decision = Retry | Die


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """`attempts` counts every run, the first included: attempts=3 means at most two retries."""

    attempts: int = 3
    backoff: Backoff = field(default_factory=lambda: exponential(first_s=10, factor=6, cap_s=3600))
    #: errors worth another attempt; anything else is a dead letter at once
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    #: errors that are a dead letter at once even when `retry_on` matches them
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")

    def decide(self, error: BaseException, attempt: int, rng: random.Random | None = None) -> Decision:
        """What to do after `attempt` (1-based, within this run's budget) failed with `error`."""
        if isinstance(error, ConfigurationError):  # never retried: only a person's change can help
            return Die(reason="misconfigured")
        if isinstance(error, (GiveUp, *self.give_up_on)):
            return Die(reason="give_up")
        if not isinstance(error, (RetryAfter, *self.retry_on)):
            return Die(reason="not_retryable")
        if attempt >= self.attempts:
            return Die(reason="exhausted")
        if isinstance(error, RetryAfter):
            return Retry(delay_s=max(error.delay_s, 0.0))
        return Retry(delay_s=self.backoff.delay_s(attempt, rng))


NO_RETRY = RetryPolicy(attempts=1)
