"""One call to an OpenAI-compatible chat-completions API, and what its answer means for the job.

429 is the provider's throttle: ProviderThrottled carries its Retry-After. 5xx, timeouts and lost
connections may pass: ProviderUnavailable (retried by the job's policy). Any other 4xx is our request's
fault or our key's, and the same next time: ProviderRefused (given up at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from jobs.providers import retry_after_s

Message = dict[str, str]
#: the longest Retry-After honoured as given
MAX_WAIT_S = 3600.0


class ProviderThrottled(Exception):
    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"the AI provider asked us to wait {retry_after_s:g} s")


class ProviderUnavailable(Exception):
    pass


class ProviderRefused(Exception):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    content: str
    prompt_tokens: int
    completion_tokens: int


async def complete(
    http: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str | None,
    model: str,
    messages: list[Message],
    timeout_s: float,
) -> Completion:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"model": model, "messages": messages, "response_format": {"type": "json_object"}, "temperature": 0}
    try:
        # its own timeout: a completion takes far longer than the other providers' calls
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))
        response = await http.post(
            f"{base_url.rstrip('/')}/chat/completions", json=body, headers=headers, timeout=timeout
        )
    except httpx.TransportError as error:
        raise ProviderUnavailable(f"the AI provider did not answer: {type(error).__name__}") from None
    if response.status_code == 429:
        # capped: a provider's "come back tomorrow" must not park the job past its policy's reach
        raise ProviderThrottled(min(retry_after_s(response.headers.get("retry-after")), MAX_WAIT_S))
    if response.status_code >= 500:
        raise ProviderUnavailable(f"the AI provider answered {response.status_code}")
    if response.status_code >= 400:
        raise ProviderRefused(f"the AI provider refused the request: {response.status_code} {response.text[:200]}")
    return _completion(response)


def _completion(response: httpx.Response) -> Completion:
    try:
        data: Any = response.json()
        content = data["choices"][0]["message"]["content"]
        usage = data.get("usage") or {}
        return Completion(
            content=str(content),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        # not a chat completion at all: a proxy's error page, a broken gateway; it may pass
        raise ProviderUnavailable("the AI provider's answer is not a chat completion") from None
