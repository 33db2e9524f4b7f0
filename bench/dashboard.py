"""The dashboard at scale: a million job records (with their attempts), 10,000 failed attempts in 25
error groups and thirty days of per-minute stats, then each page rendered through the real web app.

Prints each page's median and worst render time over several requests, and the EXPLAIN of the job
list's query, so that a scan shows itself. Figures, no assertions (the issue's bound is 300 ms).

    python -m bench.dashboard        (BENCH_DASHBOARD_JOBS=1000000 by default)
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import argon2
import asyncpg
import httpx

from bench.heavy import fresh_stores
from millrace import store
from settings import Settings
from web.app import create_app

JOBS = int(os.environ.get("BENCH_DASHBOARD_JOBS", "1000000"))
FAILED = int(os.environ.get("BENCH_DASHBOARD_FAILED", "10000"))
ROUNDS = 7
PASSWORD = "bench-password"
QUEUES = ["emails", "webhooks", "notifications", "integrations", "maintenance", "bulk", "documents", "ai"]


async def seed(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        # records spread over 30 days, 3 functions per queue; the newest are the dead and the pending
        await conn.execute(
            """INSERT INTO millrace_jobs (id, queue, function, args, status, attempts, counted_attempts,
                                          enqueued_at, started_at, finished_at, worker, updated_at)
               SELECT 'b' || lpad(n::text, 8, '0'), q.queue, q.queue || '_job_' || (n % 3),
                      jsonb_build_object('user_id', n % 50000, 'order_id', n),
                      'succeeded', 1, 1, t, t + interval '10 ms', t + interval '60 ms', 'bench:1:x:0', t
               FROM generate_series(1, $1) n
               CROSS JOIN LATERAL (SELECT ($2::text[])[1 + n % 8] AS queue) q
               CROSS JOIN LATERAL (SELECT now() - (($1 - n)::float8 / $1) * interval '30 days' AS t) s""",
            JOBS,
            QUEUES,
        )
        await conn.execute(
            """INSERT INTO millrace_job_attempts (job_id, attempt, worker, started_at, finished_at, duration_ms,
                                                  outcome)
               SELECT id, 1, worker, started_at, finished_at, 50, 'succeeded' FROM millrace_jobs"""
        )
        # the failures: the newest FAILED records end dead, 25 error groups, with a traceback each
        await conn.execute(
            """WITH failed AS (SELECT id, row_number() OVER (ORDER BY id DESC) AS k FROM millrace_jobs
                               ORDER BY id DESC LIMIT $1)
               UPDATE millrace_jobs j SET status = 'dead', last_error_type = 'ProviderError',
                      last_error = 'the provider said no (' || failed.k || ')',
                      last_fingerprint = 'fp' || lpad((failed.k % 25)::text, 14, '0')
               FROM failed WHERE j.id = failed.id""",
            FAILED,
        )
        await conn.execute(
            """UPDATE millrace_job_attempts a SET outcome = 'dead', error_type = j.last_error_type,
                      error_message = j.last_error, fingerprint = j.last_fingerprint,
                      traceback = repeat('  File "jobs/providers.py", line 42, in call' || chr(10), 20)
               FROM millrace_jobs j WHERE j.id = a.job_id AND j.status = 'dead'"""
        )
        # a backlog: 5,000 waiting
        await conn.execute(
            """UPDATE millrace_jobs SET status = 'queued', finished_at = NULL, started_at = NULL, attempts = 0
               WHERE id IN (SELECT id FROM millrace_jobs WHERE status = 'succeeded' ORDER BY id DESC LIMIT 5000)"""
        )
        # thirty days of per-minute stats for the 24 functions
        zero = "{" + ",".join("0" for _ in range(18)) + "}"
        await conn.execute(
            f"""INSERT INTO millrace_stats (queue, function, minute, started, first_started, wait_le, wait_sum_s,
                                            succeeded, retried, dead, duration_le, duration_sum_s)
                SELECT q, q || '_job_' || f, m, 1, 1, '{zero}', 0.01, 1, 0, 0, '{zero}', 0.05
                FROM unnest($1::text[]) q, generate_series(0, 2) f,
                     generate_series(date_trunc('minute', now()) - interval '30 days',
                                     date_trunc('minute', now()), interval '1 minute') m""",
            QUEUES,
        )
        await conn.execute("ANALYZE")
        print(f"seeded {JOBS:,} records, {FAILED:,} failed attempts in {time.perf_counter() - started:.1f} s")
    finally:
        await conn.close()


async def timed(http: httpx.AsyncClient, path: str, **params: str) -> tuple[float, float, int]:
    times = []
    status = 0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        answer = await http.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        status = answer.status_code
    return statistics.median(times), max(times), status


async def main() -> None:
    async with fresh_stores() as (redis_url, database_url):
        await seed(database_url)
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(
                database_url=database_url,
                redis_url=redis_url,
                operator_password_hash=argon2.PasswordHasher().hash(PASSWORD),
                environment="development",
                storage_folder=Path(folder),
                log_level="WARNING",
            )
            app = create_app(settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as http:
                    login = await http.get("/admin/login")
                    token = re.search(r'name="csrf" value="([^"]+)"', login.text)
                    assert token is not None
                    await http.post("/admin/login", data={"csrf": token[1], "name": "operator", "password": PASSWORD})
                    pool = app.state.millrace.pool
                    dead_id = await pool.fetchval("SELECT id FROM millrace_jobs WHERE status = 'dead' LIMIT 1")
                    pages = [
                        ("overview", "/admin/", {}),
                        ("jobs, dead in one queue", "/admin/jobs", {"status": "dead", "queue": "emails"}),
                        ("jobs, one function", "/admin/jobs", {"function": "bulk_job_1"}),
                        ("jobs, by business id", "/admin/jobs", {"q": "user_id=4242"}),
                        ("job page", f"/admin/jobs/{dead_id}", {}),
                        ("error groups", "/admin/errors", {}),
                        ("workers", "/admin/workers", {}),
                        ("reconciliation", "/admin/reconciliation", {}),
                        ("metrics", "/metrics", {}),
                    ]
                    print(f"{'page':<28}{'median ms':>12}{'worst ms':>12}{'status':>8}")
                    for name, path, params in pages:
                        auth = ("operator", PASSWORD) if path.startswith("/metrics") else None
                        if auth:
                            http.auth = httpx.BasicAuth(*auth)
                        median, worst, status = await timed(http, path, **params)
                        print(f"{name:<28}{median:>12.1f}{worst:>12.1f}{status:>8}")
                    async with pool.acquire() as conn:
                        where = store.insights.JobFilter(function="bulk_job_1")
                        condition, values = where.where(1)
                        plan = await conn.fetch(
                            f"EXPLAIN SELECT id FROM millrace_jobs WHERE {condition} "
                            "ORDER BY enqueued_at DESC, id DESC LIMIT 50",
                            *values,
                        )
                    print("job list plan (one function):", " / ".join(r[0].strip() for r in plan[:3]))


if __name__ == "__main__":
    asyncio.run(main())
