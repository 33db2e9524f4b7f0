"""Report exports end to end: requested over HTTP, streamed by a real `arq` worker into a CSV whose
formula cells are neutralized, announced by an email whose link downloads it."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from millrace import Pool
from scripts.demo_load import wait_until_up
from tests.processes import processes, wait_for
from tests.servers import free_port
from tests.smtp import smtp_server

pytestmark = pytest.mark.e2e

HOSTILE = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1:A9)", "\tTabbed", '=HYPERLINK("http://x","y")']


async def test_an_export_neutralizes_every_formula_and_mails_its_link(
    pool: Pool, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    web_port = free_port()
    with smtp_server() as (mailbox, smtp_port):
        env = {"EMAIL_BACKEND": "smtp", "SMTP_PORT": str(smtp_port), "LOG_FORMAT": "json", "POLL_DELAY_S": "0.05"}
        env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{web_port}"
        async with processes(database_url, redis_url, tmp_path) as start:
            start("arq", "jobs.worker.BulkWorker", **env)
            start("arq", "jobs.worker.EmailsWorker", **env)
            start("uvicorn", "--factory", "web.app:app_from_environment", "--port", str(web_port), **env)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}", timeout=30) as http:
                await wait_until_up(http, timeout_s=30)
                signup = (await http.post("/users", json={"email": "rep@example.com", "name": "Rep"})).json()
                auth = {"Authorization": f"Bearer {signup['api_token']}"}
                await pool.execute(
                    """INSERT INTO contacts (user_id, email, name, company)
                       SELECT $1, 'c' || n || '@example.com', name, CASE WHEN n % 2 = 0 THEN 'ACME' END
                       FROM unnest($2::text[]) WITH ORDINALITY AS t(name, n)""",
                    signup["id"],
                    HOSTILE,
                )
                asked = await http.post("/reports", json={"report_type": "contacts"}, headers=auth)
                assert asked.status_code == 202, asked.text
                status_url = asked.json()["status_url"]

                async def completed() -> bool:
                    return bool((await http.get(status_url, headers=auth)).json()["status"] == "completed")

                await wait_for(completed, timeout_s=60, what="the export")
                status = (await http.get(status_url, headers=auth)).json()
                assert status["total_rows"] == len(HOSTILE)
                assert status["progress"] == {"done": len(HOSTILE), "total": len(HOSTILE)}
                await wait_for(lambda: mailbox.to("rep@example.com")[1:], timeout_s=30, what="the report email")
                (_, email) = mailbox.to("rep@example.com")
                text = email.get_body(("plain",))
                assert text is not None
                link = re.search(r"http://\S+", text.get_content())
                assert link is not None
                split = urlsplit(link.group(0))
                downloaded = await http.get(f"{split.path}?{split.query}")
                assert downloaded.status_code == 200

                filtered = await http.post(
                    "/reports", json={"report_type": "contacts", "filters": {"company": "ACME"}}, headers=auth
                )
                filtered_url = filtered.json()["status_url"]

                async def filtered_done() -> bool:
                    return bool((await http.get(filtered_url, headers=auth)).json()["status"] == "completed")

                await wait_for(filtered_done, timeout_s=60, what="the filtered export")
                assert (await http.get(filtered_url, headers=auth)).json()["total_rows"] == len(HOSTILE) // 2

                other = (await http.post("/users", json={"email": "o@example.com", "name": "O"})).json()
                peek = await http.get(status_url, headers={"Authorization": f"Bearer {other['api_token']}"})
                assert peek.status_code == 404
                bad = await http.post("/reports", json={"report_type": "users"}, headers=auth)
                assert bad.status_code == 422
    rows = list(csv.reader(io.StringIO(downloaded.content.decode())))
    assert rows[0] == ["id", "email", "name", "company", "phone", "created_at"]
    names = [row[2] for row in rows[1:]]
    assert names == ["'" + name for name in HOSTILE]
    for row in rows[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
