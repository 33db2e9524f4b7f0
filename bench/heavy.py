"""The heavy flows, through the real web app and real `arq` workers: a million-row import and export
(rows a second, peak memory of each process), and quotation PDFs a minute at documents concurrency 1
and 2. Figures, no assertions.

Peak memory is each process's high-water mark of resident memory (VmHWM), the figure that shows
whether memory stays flat as the file grows.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio

import db
from millrace import store
from scripts.demo_load import wait_until_up
from tests.processes import Process, processes
from tests.servers import free_port

ADMIN_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_SERVER_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
IMPORT_ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "1000000"))
QUOTATIONS = int(os.environ.get("BENCH_QUOTATIONS", "10"))
ENV = {
    "LOG_LEVEL": "WARNING",
    "POLL_DELAY_S": "0.05",
    "IMPORT_MAX_BYTES": str(512 * 1024 * 1024),
    "EMAIL_BACKEND": "eml",
}


def peak_rss_mib(process: Process) -> float:
    for line in Path(f"/proc/{process.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@asynccontextmanager
async def fresh_stores() -> AsyncIterator[tuple[str, str]]:
    name = f"millrace_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = ADMIN_DATABASE_URL.rsplit("/", 1)[0] + "/" + name
    conn = await store.pool.connect(database_url)
    await store.migrate.apply_migrations(conn, [db.MIGRATIONS])
    await conn.close()
    redis_url = await _empty_redis_database()
    try:
        yield redis_url, database_url
    finally:
        await redis.asyncio.Redis.from_url(redis_url).flushdb()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def _empty_redis_database() -> str:
    for index in range(15, 0, -1):
        url = f"{REDIS_SERVER_URL}/{index}"
        if await redis.asyncio.Redis.from_url(url).dbsize() == 0:
            return url
    raise RuntimeError("no empty Redis database index for the benchmark")


def contacts_file(path: Path, rows: int) -> int:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name,company,phone\r\n")
        for n in range(rows):
            out.write(f"user{n}@example.com,User {n},Company {n % 1000},+44 20 7946 {n % 10000:04d}\r\n")
    return path.stat().st_size


async def until(http: httpx.AsyncClient, auth: dict[str, str], url: str, *, timeout_s: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status: dict[str, Any] = (await http.get(url, headers=auth)).json()
        if status["status"] not in ("pending", "processing"):
            return status
        await asyncio.sleep(0.2)
    raise TimeoutError(url)


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(1024 * 1024):
            yield chunk


def made(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


async def bench_import_export(folder: Path) -> dict[str, float]:
    upload = folder / "contacts.csv"
    size = contacts_file(upload, IMPORT_ROWS)
    web_port = free_port()
    async with fresh_stores() as (redis_url, database_url), processes(database_url, redis_url, folder) as start:
        web = start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **ENV)
        importer = start("arq", "jobs.worker.BulkWorker", **ENV)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=600) as http:
            await wait_until_up(http, timeout_s=60)
            signup = (await http.post("/users", json={"email": "bench@example.com", "name": "Bench"})).json()
            auth = {"Authorization": f"Bearer {signup['api_token']}"}
            began = time.perf_counter()
            created = await http.post(
                "/imports", params={"filename": "contacts.csv"}, content=file_chunks(upload), headers=auth
            )
            imported = await until(http, auth, created.json()["status_url"])
            import_s = time.perf_counter() - began
            importer_peak = peak_rss_mib(importer)
            importer.stop()
            exporter = start("arq", "jobs.worker.BulkWorker", **ENV)  # a fresh process: its own peak
            began = time.perf_counter()
            asked = await http.post("/reports", json={"report_type": "contacts"}, headers=auth)
            exported = await until(http, auth, asked.json()["status_url"])
            export_s = time.perf_counter() - began
            return {
                "rows": IMPORT_ROWS,
                "file_mib": size / 2**20,
                "inserted": imported["inserted_rows"],
                "import_s": import_s,
                "import_rows_per_s": IMPORT_ROWS / import_s,
                "importer_peak_mib": importer_peak,
                "web_peak_mib": peak_rss_mib(web),
                "exported": exported["total_rows"],
                "export_s": export_s,
                "export_rows_per_s": exported["total_rows"] / export_s,
                "exporter_peak_mib": peak_rss_mib(exporter),
            }


QUOTATION = {
    "customer_name": "Bench Customer",
    "customer_email": "customer@example.com",
    "tax_rate": "20",
    "lines": [{"description": f"Item {n}", "quantity": n + 1, "unit_price_cents": 1000 * (n + 1)} for n in range(10)],
}


async def bench_pdfs(folder: Path, concurrency: int) -> float:
    """Quotations rendered, stored and e-mailed a minute by one documents worker at `concurrency`."""
    web_port = free_port()
    env = {**ENV, "QUEUE_CONCURRENCY__DOCUMENTS": str(concurrency), "EML_DIR": str(folder / "mail")}
    async with fresh_stores() as (redis_url, database_url), processes(database_url, redis_url, folder) as start:
        start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **env)
        start("arq", "jobs.worker.DocumentsWorker", **env)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=60) as http:
            await wait_until_up(http, timeout_s=60)
            signup = (await http.post("/users", json={"email": "pdf@example.com", "name": "PDF"})).json()
            auth = {"Authorization": f"Bearer {signup['api_token']}"}
            began = time.perf_counter()
            urls = [
                (await http.post("/quotations", json=QUOTATION, headers=auth)).json()["status_url"]
                for _ in range(QUOTATIONS)
            ]
            statuses = [await until(http, auth, url, timeout_s=600) for url in urls]
            elapsed = time.perf_counter() - began
    sent = sum(1 for s in statuses if s["status"] == "sent")
    return sent / elapsed * 60


async def run_heavy() -> None:
    with tempfile.TemporaryDirectory(prefix="millrace-bench-") as folder:
        f = await bench_import_export(made(Path(folder) / "io"))
        pdfs = {c: await bench_pdfs(made(Path(folder) / f"pdf{c}"), c) for c in (1, 2)}
    print(f"\nheavy flows through the web app and real workers ({f['rows']:,.0f} rows, {f['file_mib']:.0f} MiB CSV)")
    print(f"  import: {f['inserted']:,.0f} rows in {f['import_s']:.1f} s = {f['import_rows_per_s']:,.0f} rows/s")
    print(f"          peak memory: worker {f['importer_peak_mib']:.0f} MiB, web {f['web_peak_mib']:.0f} MiB")
    print(f"  export: {f['exported']:,.0f} rows in {f['export_s']:.1f} s = {f['export_rows_per_s']:,.0f} rows/s")
    print(f"          peak memory: worker {f['exporter_peak_mib']:.0f} MiB")
    for concurrency, per_minute in pdfs.items():
        print(f"  quotation PDFs (LibreOffice), documents concurrency {concurrency}: {per_minute:.1f} a minute")


def main() -> None:
    asyncio.run(run_heavy())


if __name__ == "__main__":
    main()
