"""The storage backends, each held to the same tests: the local folder, and S3 through moto's server on
loopback. Signed download links are pure logic, tested directly."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer

from millrace.storage import (
    DownloadLinks,
    FolderStorage,
    InvalidKey,
    ObjectMissing,
    S3Config,
    S3Storage,
    Storage,
    StorageUnavailable,
    TooLarge,
    check_key,
    put_bytes,
    read_bytes,
)
from millrace.storage.s3 import PART_BYTES
from tests.servers import free_port


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=["folder", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "folder":
        yield FolderStorage(tmp_path / "files")
        return
    endpoint: str = request.getfixturevalue("moto_endpoint")
    config = S3Config(
        bucket=f"test-{uuid.uuid4().hex[:12]}",
        endpoint_url=endpoint,
        access_key_id="test",
        secret_access_key="test",
        prefix="svc/",
    )
    async with S3Storage.open(config) as s3:
        await s3._s3.create_bucket(Bucket=config.bucket)
        yield s3


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def failing_after(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise ConnectionResetError("the upload was cut off")


async def test_an_object_reads_back_as_written(storage: Storage) -> None:
    size = await storage.put("a/b/c.txt", chunks_of(b"hello ", b"", b"world"), content_type="text/plain")
    assert size == 11
    assert await read_bytes(storage, "a/b/c.txt") == b"hello world"
    assert await storage.size("a/b/c.txt") == 11


async def test_an_empty_object_is_an_object(storage: Storage) -> None:
    assert await put_bytes(storage, "empty", b"") == 0
    assert await storage.size("empty") == 0
    assert await read_bytes(storage, "empty") == b""


async def test_a_large_object_goes_up_in_parts_and_reads_back_whole(storage: Storage) -> None:
    data = os.urandom(PART_BYTES * 2 + 12345)
    pieces = [data[i : i + 700_000] for i in range(0, len(data), 700_000)]
    assert await storage.put("big.bin", chunks_of(*pieces)) == len(data)
    assert await read_bytes(storage, "big.bin") == data


async def test_a_missing_object_has_no_size_and_cannot_be_read(storage: Storage) -> None:
    assert await storage.size("nothing/here") is None
    with pytest.raises(ObjectMissing):
        await read_bytes(storage, "nothing/here")


async def test_a_write_replaces_the_object_whole(storage: Storage) -> None:
    await put_bytes(storage, "k", b"old contents")
    await put_bytes(storage, "k", b"new")
    assert await read_bytes(storage, "k") == b"new"


@pytest.mark.parametrize("size", [100, PART_BYTES + 1])
async def test_a_stream_that_fails_leaves_the_old_object_and_nothing_else(storage: Storage, size: int) -> None:
    await put_bytes(storage, "k", b"old")
    with pytest.raises(ConnectionResetError):
        await storage.put("k", failing_after(b"x" * size))
    assert await read_bytes(storage, "k") == b"old"
    await assert_nothing_partial(storage)


@pytest.mark.parametrize("size", [101, PART_BYTES * 2])
async def test_a_stream_past_its_limit_is_refused_and_not_kept(storage: Storage, size: int) -> None:
    with pytest.raises(TooLarge):
        await storage.put("upload", chunks_of(b"x" * size), max_bytes=100)
    assert await storage.size("upload") is None
    await assert_nothing_partial(storage)


async def test_a_stream_at_its_limit_is_kept(storage: Storage) -> None:
    assert await storage.put("upload", chunks_of(b"x" * 60, b"y" * 40), max_bytes=100) == 100


async def test_delete_removes_and_forgives_a_missing_object(storage: Storage) -> None:
    await put_bytes(storage, "gone", b"x")
    await storage.delete("gone")
    await storage.delete("gone")
    assert await storage.size("gone") is None


@pytest.mark.parametrize(
    "key", ["", "/abs", "../up", "a/../b", "a//b", ".hidden", "a/.partial/x", "a/", "a\\b", "a b", "é", "a\x00b"]
)
async def test_a_key_outside_the_rules_is_refused_by_every_call(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKey):
        await put_bytes(storage, key, b"x")
    with pytest.raises(InvalidKey):
        await read_bytes(storage, key)
    with pytest.raises(InvalidKey):
        await storage.size(key)
    with pytest.raises(InvalidKey):
        await storage.delete(key)


@given(st.text(max_size=80))
def test_every_accepted_key_stays_inside_the_folder(key: str) -> None:
    root = Path("/srv/files")
    try:
        check_key(key)
    except InvalidKey:
        return
    assert FolderStorage(root).path_of(key).resolve().is_relative_to(root)


async def assert_nothing_partial(storage: Storage) -> None:
    if isinstance(storage, FolderStorage):
        partial = storage.root / ".partial"
        assert not partial.exists() or not any(partial.iterdir())
    elif isinstance(storage, S3Storage):
        uploads = await storage._s3.list_multipart_uploads(Bucket=storage.config.bucket)
        assert not uploads.get("Uploads")


LINKS = DownloadLinks(secret=b"0123456789abcdef-test", base_url="https://app.example/files")


def parts_of(link: str) -> tuple[str, dict[str, str]]:
    from urllib.parse import parse_qsl, unquote, urlsplit

    split = urlsplit(link)
    return unquote(split.path.removeprefix("/files/")), dict(parse_qsl(split.query))


def test_a_link_verifies_until_it_expires() -> None:
    key, query = parts_of(LINKS.link("exports/7/report.csv", name="report.csv", valid_s=60, now=1000))
    assert key == "exports/7/report.csv"
    expires, name, signature = int(query["expires"]), query["name"], query["signature"]
    assert LINKS.verify(key, name=name, expires=expires, signature=signature, now=1059) == "ok"
    assert LINKS.verify(key, name=name, expires=expires, signature=signature, now=1061) == "expired"


def test_a_link_altered_in_any_part_is_forged() -> None:
    key, query = parts_of(LINKS.link("exports/7/report.csv", name="report.csv", valid_s=60, now=1000))
    expires, name, signature = int(query["expires"]), query["name"], query["signature"]
    assert LINKS.verify("exports/8/report.csv", name=name, expires=expires, signature=signature, now=1000) == "forged"
    assert LINKS.verify(key, name="other.csv", expires=expires, signature=signature, now=1000) == "forged"
    assert LINKS.verify(key, name=name, expires=expires + 3600, signature=signature, now=1000) == "forged"
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    assert LINKS.verify(key, name=name, expires=expires, signature=flipped, now=1000) == "forged"
    other = DownloadLinks(secret=b"another-secret-of-16+", base_url=LINKS.base_url)
    assert other.verify(key, name=name, expires=expires, signature=signature, now=1000) == "forged"


@given(key=st.from_regex(r"[a-z0-9]{1,10}(/[a-z0-9]{1,10}){0,3}", fullmatch=True), name=st.text(), forged=st.text())
def test_no_guessed_signature_passes(key: str, name: str, forged: str) -> None:
    expected = LINKS.signature(key, name, 2000)
    verdict = LINKS.verify(key, name=name, expires=2000, signature=forged, now=1000)
    assert verdict == ("ok" if forged == expected else "forged")


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        DownloadLinks(secret=b"short", base_url="/files")


async def test_an_s3_that_does_not_answer_is_storage_unavailable() -> None:
    config = S3Config(
        bucket="nowhere", endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="x", secret_access_key="x"
    )
    async with S3Storage.open(config) as s3:
        with pytest.raises(StorageUnavailable):
            await s3.size("k")
        with pytest.raises(StorageUnavailable):
            await put_bytes(s3, "k", b"data")
        with pytest.raises(StorageUnavailable):
            await read_bytes(s3, "k")
