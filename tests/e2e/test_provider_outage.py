"""The email provider is down for a while, then recovers: every email once, nothing dead that should not be."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from jobs.emails import EMAIL_RETRY
from millrace import Pool, store
from tests.platform import running_platform
from tests.processes import wait_for

pytestmark = pytest.mark.e2e


async def test_outage_then_recovery_delivers_every_email_once(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    async with running_platform(database_url, redis_url, tmp_path, email_backend="http") as platform:
        providers = platform.providers
        providers.fail("email", 503)
        for i in range(10):
            await platform.http.post("/users", json={"email": f"out{i}@example.com", "name": f"Out {i}"})
        await wait_for(lambda: providers.attempts("email") >= 20, timeout_s=20, what="every first attempt to fail")
        await asyncio.sleep(2)
        providers.recover("email")

        def delivered() -> Counter[tuple[str, str, str]]:
            # the text names the user: the ten admin emails share recipient and subject
            return Counter((m["to"][0], m["subject"], m["text"]) for m in providers.delivered("email"))

        await wait_for(lambda: len(delivered()) == 20, timeout_s=60, what="all 20 emails after recovery")
        await asyncio.sleep(2)  # a duplicate would arrive now
        assert set(delivered().values()) == {1}
    email_jobs = list(await store.jobs.list_jobs(pool, queue="emails"))
    assert len(email_jobs) == 20
    assert {j.status for j in email_jobs} == {"succeeded"}
    assert all(2 <= j.attempts <= EMAIL_RETRY.attempts for j in email_jobs)
