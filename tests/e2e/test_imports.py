"""Contact imports end to end: uploads over HTTP, real `arq` workers, the summary a user reads back."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from millrace import Pool
from scripts.demo_load import wait_until_up
from tests.jobs.test_import_files import xlsx_bytes
from tests.processes import Process, processes, wait_for
from tests.servers import free_port

pytestmark = pytest.mark.e2e

ENV = {"LOG_FORMAT": "json", "POLL_DELAY_S": "0.05", "IMPORT_MAX_BYTES": str(8 * 1024 * 1024)}


@dataclass
class Service:
    http: httpx.AsyncClient
    token: str
    start_worker: Callable[[], Process]
    workers: list[Process]

    async def upload(self, filename: str, data: bytes, *, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return await self.http.post("/imports", params={"filename": filename}, content=data, headers=headers)

    async def status(self, import_id: int) -> dict[str, Any]:
        answer = await self.http.get(f"/imports/{import_id}", headers={"Authorization": f"Bearer {self.token}"})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def imported(self, filename: str, data: bytes, *, timeout_s: float = 60) -> dict[str, Any]:
        created = await self.upload(filename, data)
        assert created.status_code == 202, created.text
        import_id = created.json()["id"]

        async def ended() -> bool:
            return (await self.status(import_id))["status"] in ("completed", "failed")

        await wait_for(ended, timeout_s=timeout_s, what=f"import {filename} to end")
        return await self.status(import_id)

    async def download(self, url: str) -> bytes:
        split = urlsplit(url)
        answer = await self.http.get(f"{split.path}?{split.query}")
        assert answer.status_code == 200, answer.text
        return answer.content


@asynccontextmanager
async def service(database_url: str, redis_url: str, folder: Path, workers: int = 1) -> AsyncIterator[Service]:
    web_port = free_port()
    async with processes(database_url, redis_url, folder) as start:

        def start_worker() -> Process:
            return start("arq", "jobs.worker.BulkWorker", **ENV)

        started = [start_worker() for _ in range(workers)]
        start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **ENV)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=30) as http:
            await wait_until_up(http, timeout_s=30)
            signup = await http.post("/users", json={"email": "importer@example.com", "name": "Importer"})
            yield Service(http=http, token=signup.json()["api_token"], start_worker=start_worker, workers=started)


def summary(status: dict[str, Any]) -> tuple[Any, ...]:
    return status["status"], status["inserted_rows"], status["rejected_rows"], status["failure"]


async def test_hostile_files_get_clear_summaries(database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with service(database_url, redis_url, tmp_path) as svc:
        mixed = codecs.BOM_UTF8 + (
            b"email,name,company,notes\r\n"
            b'ada@x.io,"Ada\nLovelace",ACME,first\r\n'  # a quoted newline: one row
            b'bob@x.io,=HYPERLINK("http://evil"),,formula as text\r\n'
            b"not-an-email,Carol,,\r\n"
            b"dan@x.io,Dan\r\n"  # a field short
            b"\r\n"
            b"eve@x.io,Eve,,,extra\r\n"  # a field too many
        )
        status = await svc.imported("mixed.csv", mixed)
        assert summary(status) == ("completed", 2, 3, None)
        assert status["notes"] == ["ignored columns: notes"]
        assert status["progress"] == {"done": 5, "total": 5}
        report = list(csv.reader(io.StringIO((await svc.download(status["error_report_url"])).decode())))
        assert report[0] == ["line", "reason", "row"]
        assert [(r[0], r[1].split(":")[0]) for r in report[1:]] == [
            ("5", "email"),
            ("6", "expected 4 fields, found 2"),
            ("8", "expected 4 fields, found 5"),
        ]

        latin = ("email,name\r\nzoe@x.io,Zoë Ørsted\r\n").encode("cp1252")
        status = await svc.imported("latin.csv", latin)
        assert summary(status) == ("completed", 1, 0, None)
        assert status["notes"] == ["the file is not UTF-8: it was read as Windows-1252"]

        workbook = xlsx_bytes([["email", "name"], ["x@x.io", "Xena"], ["y@x.io", "=2+2"]])
        status = await svc.imported("book.xlsx", workbook)
        assert summary(status) == ("completed", 1, 1, None)

        refused = {
            "empty.csv": (b"", "the file is empty"),
            "binary.csv": (b"\x7fELF\x02\x01\x01\x00" * 64, "not a text file"),
            "columns.csv": (b"mail,fullname\r\na@x.io,A\r\n", "missing columns: email, name"),
            "huge.csv": (b'email,name\r\na@x.io,"' + b"y" * 200_000 + b'"\r\n', "field larger than field limit"),
            "fake.xlsx": (b"PK\x03\x04" + b"\x00" * 100, "not"),
        }
        for name, (data, reason) in refused.items():
            status = await svc.imported(name, data)
            assert status["status"] == "failed", (name, status)
            assert reason in status["failure"], (name, status["failure"])

        assert (await svc.upload("big.csv", b"x" * (9 * 1024 * 1024))).status_code == 413
        assert (await svc.upload("notes.pdf", b"%PDF-1.4")).status_code == 415
        assert (await svc.upload("a.csv", b"email,name\n", token="not-a-token")).status_code == 401
        other = await svc.http.post("/users", json={"email": "other@example.com", "name": "Other"})
        mine = (await svc.upload("a.csv", b"email,name\n")).json()["id"]
        peek = await svc.http.get(f"/imports/{mine}", headers={"Authorization": f"Bearer {other.json()['api_token']}"})
        assert peek.status_code == 404


async def test_an_import_whose_worker_is_killed_completes_with_every_row_once(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    rows = 100_000
    body = "email,name\r\n" + "".join(f"user{n}@example.com,User {n}\r\n" for n in range(rows))
    async with service(database_url, redis_url, tmp_path, workers=1) as svc:
        created = await svc.upload("many.csv", body.encode())
        import_id = created.json()["id"]

        async def some_rows_in() -> bool:
            count = await pool.fetchval("SELECT count(*) FROM contacts WHERE import_id = $1", import_id)
            return int(count) >= 5_000

        await wait_for(some_rows_in, timeout_s=120, what="the import to be under way")
        svc.workers[0].kill()
        in_at_kill = await pool.fetchval("SELECT count(*) FROM contacts WHERE import_id = $1", import_id)
        svc.workers.append(svc.start_worker())

        async def ended() -> bool:
            return (await svc.status(import_id))["status"] in ("completed", "failed")

        await wait_for(ended, timeout_s=240, what="the import to end on the second worker")
        status = await svc.status(import_id)
    assert in_at_kill < rows, "the worker was killed after the import had finished: nothing was proven"
    assert summary(status) == ("completed", rows, 0, None)
    assert await pool.fetchval("SELECT count(*) FROM contacts WHERE import_id = $1", import_id) == rows
    assert await pool.fetchval("SELECT count(DISTINCT line) FROM contacts WHERE import_id = $1", import_id) == rows
    finishes = await pool.fetchval("SELECT count(*) FROM millrace_jobs WHERE function = 'finish_import'")
    assert finishes == 1
