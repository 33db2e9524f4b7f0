"""Scenario 11, hostile input under load: forged and malformed webhooks, oversize and unreadable bodies,
internal URLs and forged tokens, sent while legitimate users sign up and a worker is SIGKILLed every 2 s
(scenario 1's storm, on the demo's own workers). Every hostile request gets its 4xx, none a 5xx; nothing
forged is written; nothing internal is reached; every legitimate job still succeeds, each email once."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

import db.webhooks
from millrace import Pool
from scripts.demo_load import one_user
from settings import Settings
from tests.chaos.harness import chaos_only, pass_line, pick
from tests.e2e.test_webhooks import deliver, event
from tests.platform import WEBHOOK_SECRET, Platform, running_platform
from tests.processes import wait_for
from web.signatures import sign

pytestmark = [pytest.mark.e2e, chaos_only]

STORM_S = pick(20, 60)
USERS_PER_S = 2
FINISH_BOUND_S = 120

Probe = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


class Canary:
    """An internal service on another loopback address: the SSRF guard must never let a job reach it."""

    def __init__(self) -> None:
        self.hits = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        async def touched(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.hits += 1
            writer.close()

        self._server = await asyncio.start_server(touched, "127.0.0.2", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def probes(canary: Canary, token: dict[str, str], user_id: int) -> dict[str, tuple[Probe, set[int]]]:
    """Each hostile request, and the answers it may get."""
    body = event(f"evt_forged_{random.getrandbits(32)}", "invoice.paid", int(time.time()), {"id": "in_forged"})

    def prefs(url: str) -> Probe:
        return lambda http: http.put(
            f"/users/{user_id}/preferences", json={"slack": True, "slack_webhook_url": url}, headers=token
        )

    return {
        "forged signature": (lambda http: deliver(http, body, secret="whsec_forged"), {400}),
        "altered body": (
            lambda http: deliver(
                http, body.replace(b"in_forged", b"in_other"), signature=sign(body, "whsec_forged", int(time.time()))
            ),
            {400},
        ),
        "stale timestamp": (lambda http: deliver(http, body, skew_s=-301), {400}),
        "no signature": (lambda http: http.post("/webhooks/stripe", content=body), {400}),
        "oversize webhook": (lambda http: deliver(http, b"x" * (256 * 1024 + 1)), {413}),
        "signed garbage": (lambda http: deliver(http, b"{not json"), {400}),
        "unknown provider": (lambda http: http.post("/webhooks/unknown", content=body), {404}),
        "oversize signup": (
            lambda http: http.post("/users", json={"email": "a@example.com", "name": "x" * 70_000}),
            {413},
        ),
        "unreadable json": (
            lambda http: http.post("/users", content=b"{" * 5000, headers={"Content-Type": "application/json"}),
            {400, 422},
        ),
        "nul in a field": (lambda http: http.post("/users", json={"email": "n@example.com", "name": "a\x00b"}), {422}),
        "metadata address": (prefs("http://169.254.169.254/latest/meta-data/"), {400}),
        "private address": (prefs("http://10.0.0.8/hook"), {400}),
        "redis by name": (prefs("http://localhost:6379/"), {400}),
        "internal canary": (prefs(f"http://127.0.0.2:{canary.port}/hook"), {400}),
        "forged token": (
            lambda http: http.put(
                f"/users/{user_id}/preferences", json={"slack": False}, headers={"Authorization": "Bearer forged"}
            ),
            {401},
        ),
    }


async def storm(platform: Platform, seconds: float) -> int:
    kills = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        await asyncio.sleep(2)
        platform.restart_worker(random.randrange(len(platform.workers)))
        kills += 1
    return kills


async def legit_load(platform: Platform, seconds: float) -> int:
    settings = Settings(webhook_secrets={"stripe": [SecretStr(WEBHOOK_SECRET)]})
    users = 0
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        await asyncio.gather(*(one_user(platform.http, settings, users + n) for n in range(USERS_PER_S)))
        users += USERS_PER_S
        await asyncio.sleep(1)
    return users


async def hostile_load(
    platform: Platform, cases: dict[str, tuple[Probe, set[int]]], seconds: float, answers: list[tuple[str, int]]
) -> None:
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        for name, (probe, _) in cases.items():
            answers.append((name, (await probe(platform.http)).status_code))
        await asyncio.sleep(0.2)


async def test_the_defences_hold_while_workers_die(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    canary = Canary()
    await canary.start()
    #: every answer the web app gave, legitimate or hostile
    all_statuses: Counter[int] = Counter()
    answers: list[tuple[str, int]] = []
    try:
        async with running_platform(database_url, redis_url, tmp_path, worker_copies=2) as platform:
            created = (await platform.http.post("/users", json={"email": "mallory@example.com", "name": "M"})).json()
            token = {"Authorization": f"Bearer {created['api_token']}"}
            cases = probes(canary, token, created["id"])
            platform.http.event_hooks["response"].append(lambda r: record_status(r, all_statuses))
            kills, users, _ = await asyncio.gather(
                storm(platform, STORM_S),
                legit_load(platform, STORM_S),
                hostile_load(platform, cases, STORM_S, answers),
            )
            await wait_for(lambda: all_done(pool), timeout_s=FINISH_BOUND_S, what="every legitimate job to finish")
            sent = [m for m in platform.mailbox.messages if is_welcome(m)]
            # a worker killed between the SMTP server's yes and its record's commit sends again: the
            # same message, by its Message-ID, which mail systems take once (jobs/emails.message_id)
            welcome = Counter(m["To"] for m in {m["Message-ID"]: m for m in sent}.values())
    finally:
        await canary.stop()
    wrong = [(name, status) for name, status in answers if status not in cases[name][1]]
    assert not wrong, wrong
    assert not [s for s in all_statuses if s >= 500], all_statuses
    statuses = dict(await pool.fetch("SELECT status, count(*) FROM millrace_jobs GROUP BY 1"))
    assert set(statuses) == {"succeeded"}, statuses
    forged = await pool.fetchval("SELECT count(*) FROM webhook_events WHERE event_id LIKE 'evt_forged_%'")
    assert forged == 0
    assert canary.hits == 0
    assert len(welcome) == users + 1, welcome
    assert set(welcome.values()) == {1}, welcome
    pass_line(
        "11 hostile input under load",
        storm_s=STORM_S,
        sigkills=kills,
        legit_users=users,
        welcome_resent_after_a_kill=len(sent) - sum(welcome.values()),
        hostile_requests=len(answers),
        hostile_kinds=len(cases),
        wrong_answers=0,
        server_errors=0,
        forged_events_written=forged,
        internal_hits=canary.hits,
        jobs_succeeded=statuses["succeeded"],
        welcome_emails_each_once=True,
        webhook_events_stored=await db.webhooks.count_events(pool),
    )


def is_welcome(message: EmailMessage) -> bool:
    return str(message["Subject"]).startswith("Welcome to Millrace")


async def record_status(response: httpx.Response, into: Counter[int]) -> None:
    into[response.status_code] += 1


async def all_done(pool: Pool) -> bool:
    pending = await pool.fetchval("SELECT count(*) FROM millrace_jobs WHERE status NOT IN ('succeeded', 'dead')")
    return int(pending) == 0
