"""The dashboard in a real browser: Playwright drives Debian's headless Chromium against the real web
process, with a real arq worker running the jobs it acts on. Screenshots land in var/screenshots/."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import arq.worker
import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from millrace import NoArgs, Pool, store
from millrace.client import JobClient
from scripts.demo_load import wait_until_up
from tests.conftest import RunWorker, sample_worker_settings
from tests.processes import processes, wait_for
from tests.sample import app
from tests.servers import free_port
from tests.web.conftest import OPERATOR_HASH, OPERATOR_PASSWORD
from tests.web.test_dashboard import VIEWER_HASH, VIEWER_PASSWORD

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed"),
]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def log_in(page: Page, base: str, name: str, password: str) -> None:
    await page.goto(f"{base}/admin/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def test_an_operator_sees_and_steers_the_queues(
    browser: Browser,
    client: JobClient,
    pool: Pool,
    database_url: str,
    redis_url: str,
    run_worker: RunWorker,
    tmp_path: Path,
) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # what the overview must show: 3 succeeded, 1 job dead after its whole budget, 2 dead of one error group
    for _ in range(3):
        await client.enqueue(app.NOOP, NoArgs())
    flaky = await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=3))
    group = [await client.enqueue(app.FLAKY, app.FlakyArgs(fail_times=1, error="give_up")) for _ in range(2)]
    await run_worker()

    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    env = {
        "OPERATOR_PASSWORD_HASH": OPERATOR_HASH,
        "VIEWER_PASSWORD_HASH": VIEWER_HASH,
        "ENVIRONMENT": "development",
        "LOG_FORMAT": "json",
    }
    settings = sample_worker_settings(redis_url, database_url, heartbeat_interval_s=0.2)
    worker = arq.worker.create_worker(settings, burst=False, handle_signals=False)
    worker_task = asyncio.create_task(worker.main())
    try:
        async with processes(database_url, redis_url, tmp_path) as start:
            start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **env)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                await wait_until_up(http, timeout_s=30)

            context = await browser.new_context(viewport={"width": 1600, "height": 900})
            page = await context.new_page()

            await log_in(page, base, "operator", "wrong password")
            await expect(page.get_by_role("alert")).to_contain_text("wrong name or password")

            await log_in(page, base, "operator", OPERATOR_PASSWORD)
            row = page.locator('tr[data-queue="testq"]')
            await expect(row.locator("td.dead")).to_have_text("3")
            await expect(row.locator("td.succeeded")).to_contain_text("3 / 3")
            await page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)

            # a dead job: its traceback, a retry, and the live page showing it succeed
            await page.goto(f"{base}/admin/jobs/{flaky.id}")
            await page.locator("details summary", has_text="Traceback").first.click()
            await expect(page.locator("pre.traceback").first).to_contain_text("ConnectionError: provider down")
            await page.screenshot(path=str(SCREENSHOTS / "job.png"), full_page=True)
            await page.click("#retry-job")
            await expect(page.locator("#job-status")).to_have_text("succeeded", timeout=15_000)

            # the error group of the two PermissionErrors, retried as a whole
            await page.goto(f"{base}/admin/errors")
            await page.screenshot(path=str(SCREENSHOTS / "errors.png"), full_page=True)
            await page.get_by_role("button", name="Retry the 2 dead").click()
            await expect(page.locator("#bulk-state")).to_contain_text("2 of 2 done", timeout=15_000)

            async def group_succeeded() -> bool:
                jobs = [await store.jobs.get_job(pool, j.id) for j in group]
                return all(j.status == "succeeded" for j in jobs)

            await wait_for(group_succeeded, timeout_s=15, what="the retried error group to succeed")

            # pause: jobs wait; resume: they run
            await page.goto(f"{base}/admin/")
            await page.locator('tr[data-queue="testq"]').get_by_role("button", name="Pause").click()
            await expect(page.locator(".flash")).to_contain_text("testq paused")
            await asyncio.sleep(0.5)  # a heartbeat (0.2 s) carries the pause to the worker
            held = [await client.enqueue(app.NOOP, NoArgs()) for _ in range(3)]
            await asyncio.sleep(2.0)
            assert {(await store.jobs.get_job(pool, j.id)).status for j in held} == {"queued"}
            await expect(row.locator("td.waiting")).to_have_text("3", timeout=5_000)
            await page.locator('tr[data-queue="testq"]').get_by_role("button", name="Resume").click()

            async def held_ran() -> bool:
                return {(await store.jobs.get_job(pool, j.id)).status for j in held} == {"succeeded"}

            await wait_for(held_ran, timeout_s=15, what="the resumed queue to run what it held")

            # a forged action (no CSRF token) is refused, even with the session's cookie
            forged = await context.request.post(f"{base}/admin/actions/pause", form={"queue": "testq"})
            assert forged.status == 403
            assert await store.queues.paused_queues(pool) == {}

            # the read-only role sees the dashboard and has no button to press, nor any way to act
            viewer_context = await browser.new_context()
            viewer = await viewer_context.new_page()
            await log_in(viewer, base, "viewer", VIEWER_PASSWORD)
            await expect(viewer.locator('tr[data-queue="testq"]')).to_be_visible()
            assert await viewer.get_by_role("button", name="Pause").count() == 0
            token = await viewer.locator("input[name=csrf]").first.get_attribute("value")
            refused = await viewer_context.request.post(
                f"{base}/admin/actions/pause", form={"queue": "testq", "csrf": token or ""}
            )
            assert refused.status == 403
            await viewer_context.close()
            await context.close()
    finally:
        worker_task.cancel()
        await asyncio.gather(worker_task, return_exceptions=True)
        await worker.close()
    async with pool.acquire() as conn:
        actions = [e.action for e in await store.insights.audit_log(conn)]
    assert {"resume_queue", "pause_queue", "retry_error_group", "retry_job"} <= set(actions)
