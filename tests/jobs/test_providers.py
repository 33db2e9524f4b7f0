"""Reading a provider's answer, tested directly."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from jobs.providers import DEFAULT_RETRY_AFTER_S, ProviderUnavailable, check_response, retry_after_s
from millrace.errors import GiveUp, RetryAfter


def test_retry_after_in_seconds_and_as_a_date() -> None:
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("120", now) == 120
    assert retry_after_s("Mon, 23 Nov 2026 12:01:30 GMT", now) == 90
    assert retry_after_s("garbage", now) == DEFAULT_RETRY_AFTER_S
    assert retry_after_s(None, now) == DEFAULT_RETRY_AFTER_S


@pytest.mark.parametrize(
    ("status", "error"), [(429, RetryAfter), (500, ProviderUnavailable), (503, ProviderUnavailable), (400, GiveUp)]
)
def test_failed_answers_raise_what_the_policy_needs(status: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_response(httpx.Response(status, text="nope"), "crm")


def test_success_raises_nothing() -> None:
    check_response(httpx.Response(201), "crm")
