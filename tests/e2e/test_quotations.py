"""Quotation PDFs end to end: submitted over HTTP, filled and converted by a real LibreOffice in a real
`arq` worker, e-mailed as an attachment to a real SMTP server; and never lost when LibreOffice hangs or
the template is broken: shown failed with the reason, no LibreOffice process left behind."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from scripts.demo_load import wait_until_up
from tests.processes import processes, wait_for
from tests.programs import needs_programs
from tests.servers import free_port
from tests.smtp import Mailbox, smtp_server

pytestmark = pytest.mark.e2e
#: the tests that look for processes left behind (procps, absent from slim images)
needs_pgrep = needs_programs("pgrep", package="procps")

QUOTATION = {
    "customer_name": "Ada & <Lovelace> Ltd",
    "customer_email": "ada@customer.example",
    "currency": "EUR",
    "tax_rate": "20",
    "lines": [
        {"description": "Analytical engine, assembly", "quantity": 2, "unit_price_cents": 125_000},
        {"description": "Punched cards (box of 500)", "quantity": 3, "unit_price_cents": 4_999},
    ],
}
#: 2 x 1,250.00 + 3 x 49.99 = 2,649.97; tax 20 % = 529.99 (half up); total 3,179.96
TOTAL = "3,179.96 EUR"


@asynccontextmanager
async def quotations_service(
    database_url: str, redis_url: str, folder: Path, **worker_env: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Mailbox]]:
    web_port = free_port()
    with smtp_server() as (mailbox, smtp_port):
        env = {"EMAIL_BACKEND": "smtp", "SMTP_PORT": str(smtp_port), "LOG_FORMAT": "json", "POLL_DELAY_S": "0.05"}
        async with processes(database_url, redis_url, folder) as start:
            start("arq", "jobs.worker.DocumentsWorker", **env, **worker_env)
            start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **env)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=30) as http:
                await wait_until_up(http, timeout_s=30)
                signup = (await http.post("/users", json={"email": "sales@example.com", "name": "Sales"})).json()
                yield http, {"Authorization": f"Bearer {signup['api_token']}"}, mailbox


async def settled(http: httpx.AsyncClient, auth: dict[str, str], url: str, timeout_s: float = 90) -> dict[str, Any]:
    async def done() -> bool:
        return bool((await http.get(url, headers=auth)).json()["status"] != "pending")

    await wait_for(done, timeout_s=timeout_s, what=f"{url} to be sent or failed")
    result: dict[str, Any] = (await http.get(url, headers=auth)).json()
    return result


def libreoffice_processes(marker: str = "millrace-lo-") -> list[str]:
    found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True, check=False)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


@needs_programs("soffice", package="libreoffice-writer-nogui")
@needs_programs("pdftotext", "pdftoppm", package="poppler-utils")  # read_pdf
@needs_pgrep
async def test_a_quotation_is_rendered_mailed_and_stored(database_url: str, redis_url: str, tmp_path: Path) -> None:
    async with quotations_service(database_url, redis_url, tmp_path) as (http, auth, mailbox):
        accepted = await http.post("/quotations", json=QUOTATION, headers=auth)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["total_cents"] == 317_996
        status = await settled(http, auth, accepted.json()["status_url"])
        assert status["status"] == "sent", status
        (email,) = mailbox.to("ada@customer.example")
        (attachment,) = list(email.iter_attachments())
        assert attachment.get_filename() == f"quotation-{status['id']}.pdf"
        pdf = attachment.get_content()
        split = urlsplit(status["pdf_url"])
        stored = await http.get(f"{split.path}?{split.query}")
        assert stored.content == pdf
        invalid = await http.post("/quotations", json={**QUOTATION, "lines": []}, headers=auth)
        assert invalid.status_code == 422
    text, first_page_png_bytes = read_pdf(pdf, tmp_path)
    for expected in ("Ada & <Lovelace> Ltd", "Analytical engine, assembly", "Punched cards (box of 500)", TOTAL):
        assert expected in text, (expected, text)
    assert first_page_png_bytes > 1000
    assert libreoffice_processes() == []


def read_pdf(pdf: bytes, folder: Path) -> tuple[str, int]:
    """The PDF's text (pdftotext, words joined by single spaces: table cells wrap) and the size of its
    first page rendered as a PNG (pdftoppm)."""
    path = folder / "quotation.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-singlefile", str(path), str(folder / "page")], check=True)
    return " ".join(text.split()), (folder / "page.png").stat().st_size


async def test_a_broken_template_fails_the_quotation_at_once_with_its_reason(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.docx"
    broken.write_bytes(b"PK\x03\x04 this is no document")
    async with quotations_service(database_url, redis_url, tmp_path, QUOTATION_TEMPLATE=str(broken)) as (
        http,
        auth,
        mailbox,
    ):
        accepted = await http.post("/quotations", json=QUOTATION, headers=auth)
        status = await settled(http, auth, accepted.json()["status_url"], timeout_s=30)
        assert status["status"] == "failed"
        assert "the quotation template cannot be filled" in status["failure"]
        assert mailbox.to("ada@customer.example") == []


@needs_pgrep  # LibreOffice itself is not needed: a stand-in that hangs takes its place
async def test_a_hung_libreoffice_is_killed_whole_and_the_quotation_fails_then_can_be_retried(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    hang = tmp_path / "soffice-that-hangs"
    # like soffice: a launcher with a child; both must go when the conversion is stopped
    hang.write_text("#!/bin/sh\nsleep 6017 &\nexec sleep 6018\n")
    hang.chmod(0o755)
    env = {"SOFFICE_COMMAND": json.dumps([str(hang)]), "PDF_CONVERT_TIMEOUT_S": "1.5"}
    async with quotations_service(database_url, redis_url, tmp_path, **env) as (http, auth, _):
        accepted = await http.post("/quotations", json=QUOTATION, headers=auth)
        url = accepted.json()["status_url"]
        status = await settled(http, auth, url, timeout_s=60)
        assert status["status"] == "failed"
        assert status["failure"] == "LibreOffice did not finish within 1.5 s and was stopped"
        assert libreoffice_processes("sleep 601") == []
        retried = await http.post(f"{url}/retry", headers=auth)
        assert retried.status_code == 202
        assert (await http.post(f"{url}/retry", headers=auth)).status_code == 409  # pending again, not failed
        assert (await settled(http, auth, url, timeout_s=60))["status"] == "failed"
        assert libreoffice_processes("sleep 601") == []
