"""AI document processing end to end, against an OpenAI-compatible server on loopback that the test
drives: malformed and invalid answers, 429 with Retry-After, 500s; and with 3 worker processes, never
more than 2 calls in flight at the provider nor more calls than the rate allows."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fpdf import FPDF

from scripts.demo_load import wait_until_up
from tests.ai_provider import VALID, AiProvider, ai_provider
from tests.processes import processes, wait_for
from tests.programs import needs_programs
from tests.servers import free_port

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def documents_service(
    database_url: str, redis_url: str, folder: Path, provider: AiProvider, *, workers: int = 1, calls_per_minute: int
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    web_port = free_port()
    env = {
        "AI_API_URL": provider.url,
        "AI_API_KEY": "test-key",
        "AI_CALLS_PER_MINUTE": str(calls_per_minute),
        "HTTP_TIMEOUT_S": "10",
        "LOG_FORMAT": "json",
        "POLL_DELAY_S": "0.05",
    }
    async with processes(database_url, redis_url, folder) as start:
        for _ in range(workers):
            start("arq", "jobs.worker.AiWorker", **env)
        start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **env)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=30) as http:
            await wait_until_up(http, timeout_s=30)
            signup = (await http.post("/users", json={"email": "ai@example.com", "name": "AI"})).json()
            yield http, {"Authorization": f"Bearer {signup['api_token']}"}


async def upload(http: httpx.AsyncClient, auth: dict[str, str], filename: str, data: bytes) -> str:
    answer = await http.post("/documents", params={"filename": filename}, content=data, headers=auth)
    assert answer.status_code == 202, answer.text
    url: str = answer.json()["status_url"]
    return url


async def settled(http: httpx.AsyncClient, auth: dict[str, str], urls: list[str]) -> list[dict[str, Any]]:
    async def done() -> bool:
        statuses = [(await http.get(u, headers=auth)).json()["status"] for u in urls]
        return "pending" not in statuses

    await wait_for(done, timeout_s=90, what="every document to be processed")
    return [(await http.get(u, headers=auth)).json() for u in urls]


def pdf_with(text: str) -> bytes:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    buffer = io.BytesIO()
    pdf.output(buffer)
    return buffer.getvalue()


@needs_programs("pdftotext", package="poppler-utils")  # the worker reads the PDFs' text with it
async def test_answers_are_validated_repaired_retried_and_their_cost_kept(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    with ai_provider() as provider:
        async with documents_service(database_url, redis_url, tmp_path, provider, calls_per_minute=600) as (
            http,
            auth,
        ):
            urls = {
                "plain": await upload(http, auth, "a.txt", b"Sales grew by 5% this quarter."),
                "pdf": await upload(http, auth, "b.pdf", pdf_with("Contract between ACME and Initech.")),
                "malformed": await upload(http, auth, "c.txt", b"MALFORMED_ONCE quarterly numbers"),
                "throttled": await upload(http, auth, "d.txt", b"THROTTLE_ONCE a letter"),
                "failing": await upload(http, auth, "e.txt", b"FAIL_ONCE an invoice"),
                "invalid": await upload(http, auth, "f.txt", b"INVALID_ALWAYS nonsense"),
                "binary": await upload(http, auth, "g.txt", b"\x00\x01\x02 binary"),
                "broken_pdf": await upload(http, auth, "h.pdf", b"%PDF-1.4 broken"),
            }
            results = dict(zip(urls, await settled(http, auth, list(urls.values())), strict=True))
            usage = (await http.get("/ai/usage", headers=auth)).json()
            assert (
                await http.post("/documents", params={"filename": "x.exe"}, content=b"x", headers=auth)
            ).status_code == 415
    for name in ("plain", "pdf", "malformed", "throttled", "failing"):
        assert results[name]["status"] == "completed", (name, results[name])
        assert results[name]["result"] == VALID
    # the malformed answer cost its tokens too: every call is on record, useful or not
    assert results["malformed"]["usage"] == {"calls": 2, "prompt_tokens": 200, "completion_tokens": 40}
    assert results["invalid"]["status"] == "failed"
    assert "no valid answer in 3 tries" in results["invalid"]["failure"]
    assert results["invalid"]["usage"]["calls"] == 3
    assert "not a text file" in results["binary"]["failure"]
    assert "not a readable PDF" in results["broken_pdf"]["failure"]
    repairs = [m for m in provider.requests if len(m) > 2]
    assert repairs, "an invalid answer went back to the model with its errors"
    assert all("That answer is not valid" in m[-1]["content"] for m in repairs)
    assert any("ACME and Initech" in m[1]["content"] for m in provider.requests)
    throttled_at = [
        t for t, m in zip(provider.arrivals, provider.requests, strict=True) if "THROTTLE_ONCE" in m[1]["content"]
    ]
    assert throttled_at[1] - throttled_at[0] >= 1.0  # Retry-After: 1 was honoured
    (today,) = usage
    assert today["calls"] == len(provider.requests)
    assert today["prompt_tokens"] == 100 * (len(provider.requests) - 2)  # the 429 and the 500 cost none


async def test_three_workers_keep_two_calls_in_flight_and_the_rate(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    per_minute = 120  # one call each half second
    with ai_provider(latency_s=1.2) as provider:
        async with documents_service(
            database_url, redis_url, tmp_path, provider, workers=3, calls_per_minute=per_minute
        ) as (http, auth):
            urls = [await upload(http, auth, f"{n}.txt", f"document {n}".encode()) for n in range(16)]
            results = await settled(http, auth, urls)
    assert [r["status"] for r in results] == ["completed"] * 16
    assert provider.max_in_flight == 2
    arrivals = sorted(provider.arrivals)
    interval_s = 60 / per_minute
    for i, start in enumerate(arrivals):
        window = [t for t in arrivals[i:] if t < start + 5.0]
        assert len(window) <= 5.0 / interval_s + 1, json.dumps([round(t - arrivals[0], 3) for t in arrivals])
