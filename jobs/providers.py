"""What a third party's HTTP answer means for a job: done, retry (when), or give up."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from millrace import GiveUp, RetryAfter

#: when a 429 carries no usable Retry-After
DEFAULT_RETRY_AFTER_S = 30.0


class ProviderUnavailable(Exception):
    """A 5xx: the provider's fault and usually passing, so the job's policy retries it."""

    def __init__(self, provider: str, status: int, detail: str) -> None:
        self.provider = provider
        self.status = status
        super().__init__(f"{provider} answered {status}: {detail}")


def retry_after_s(value: str | None, now: datetime | None = None) -> float:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def check_response(response: httpx.Response, provider: str) -> None:
    """Raise what the policy should see for a failed answer; return for a 2xx or 3xx."""
    status = response.status_code
    if status < 400:
        return
    detail = response.text[:300]
    if status == 429:
        raise RetryAfter(retry_after_s(response.headers.get("retry-after")), f"{provider} rate-limited us")
    if status >= 500:
        raise ProviderUnavailable(provider, status, detail)
    raise GiveUp(f"{provider} refused the request ({status}): {detail}")
