"""A small demo load for `make run`: sign up users through the web app so a newcomer sees jobs flow."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import structlog

from settings import Settings

log = structlog.get_logger(__name__)


async def wait_until_up(client: httpx.AsyncClient, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the web app did not come up")
        await asyncio.sleep(0.5)


async def run_demo_load(settings: Settings, *, count: int, interval_s: float) -> int:
    base_url = f"http://{settings.web_host}:{settings.web_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        await wait_until_up(client)
        for n in range(count):
            tag = uuid.uuid4().hex[:8]
            response = await client.post("/users", json={"email": f"demo-{tag}@example.com", "name": f"Demo {n}"})
            log.info("demo_user_signed_up", status=response.status_code, body=response.json())
            await asyncio.sleep(interval_s)
    log.info("demo_load_finished", users=count, status_page=f"{base_url}/status/")
    return 0
