"""Signed download links through the demo app: served while valid, refused when altered or expired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from millrace.storage import FolderStorage, put_bytes
from settings import Settings
from tests.web.conftest import serving

SECRET = "a-download-secret-for-tests"


@pytest.fixture
async def files(database_url: str, redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        storage_folder=tmp_path / "files",
        download_link_secret=SECRET,
        public_base_url="http://demo",
    )
    await put_bytes(FolderStorage(settings.storage_folder), "exports/1/report.csv", b"a,b\n1,2\n")
    async with serving(settings) as client:
        yield client, settings


def link_to(settings: Settings, key: str, *, name: str = "report.csv", valid_s: float = 60) -> str:
    links = settings.download_links()
    assert links is not None
    return links.link(key, name=name, valid_s=valid_s).removeprefix("http://demo")


def altered(link: str, **changes: str) -> str:
    split = urlsplit(link)
    return f"{split.path}?{urlencode({**dict(parse_qsl(split.query)), **changes})}"


async def test_a_valid_link_downloads_the_file_as_an_attachment(files: tuple[httpx.AsyncClient, Settings]) -> None:
    http, settings = files
    answer = await http.get(link_to(settings, "exports/1/report.csv", name="Sales \u2013 Q3.csv"))
    assert answer.status_code == 200
    assert answer.content == b"a,b\n1,2\n"
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"].startswith('attachment; filename="Sales _ Q3.csv"')
    assert "filename*=UTF-8''Sales%20%E2%80%93%20Q3.csv" in answer.headers["content-disposition"]
    assert answer.headers["x-content-type-options"] == "nosniff"


async def test_an_expired_link_is_gone(files: tuple[httpx.AsyncClient, Settings]) -> None:
    http, settings = files
    answer = await http.get(link_to(settings, "exports/1/report.csv", valid_s=-1))
    assert answer.status_code == 410


@pytest.mark.parametrize(
    "change",
    [
        {"expires": "99999999999"},
        {"name": "report.html"},
        {"signature": "AAAA"},
        {"signature": ""},
    ],
)
async def test_an_altered_link_is_refused(files: tuple[httpx.AsyncClient, Settings], change: dict[str, str]) -> None:
    http, settings = files
    answer = await http.get(altered(link_to(settings, "exports/1/report.csv"), **change))
    assert answer.status_code == 403


async def test_a_link_moved_to_another_key_is_refused(files: tuple[httpx.AsyncClient, Settings]) -> None:
    http, settings = files
    await put_bytes(FolderStorage(settings.storage_folder), "exports/2/secret.csv", b"not yours")
    link = link_to(settings, "exports/1/report.csv")
    answer = await http.get(link.replace("exports/1/report.csv", "exports/2/secret.csv"))
    assert answer.status_code == 403


@pytest.mark.parametrize(
    "path", ["/files/..%2F..%2Fetc%2Fpasswd", "/files/exports/1/..%2F..%2F..%2Fsettings.py", "/files/.partial/x"]
)
async def test_a_path_outside_storage_is_refused(files: tuple[httpx.AsyncClient, Settings], path: str) -> None:
    http, _ = files
    answer = await http.get(path, params={"name": "x", "expires": "99999999999", "signature": "x"})
    assert answer.status_code in {403, 404}


async def test_a_signed_link_to_a_removed_file_is_not_found(files: tuple[httpx.AsyncClient, Settings]) -> None:
    http, settings = files
    answer = await http.get(link_to(settings, "exports/9/never.csv"))
    assert answer.status_code == 404


async def test_a_link_without_its_signature_is_a_validation_error(files: tuple[httpx.AsyncClient, Settings]) -> None:
    http, _ = files
    answer = await http.get("/files/exports/1/report.csv", params={"name": "report.csv"})
    assert answer.status_code == 422


async def test_without_a_secret_no_file_is_served(database_url: str, redis_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url, storage_folder=tmp_path)
    async with serving(settings) as http:
        answer = await http.get("/files/a.csv", params={"name": "a.csv", "expires": "99999999999", "signature": "x"})
    assert answer.status_code == 404


async def test_an_unknown_query_parameter_is_refused(files: tuple[httpx.AsyncClient, Settings]) -> None:
    http, settings = files
    answer = await http.get(link_to(settings, "exports/1/report.csv") + "&extra=1")
    assert answer.status_code == 422
