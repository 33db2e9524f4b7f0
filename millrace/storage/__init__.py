"""Where large files live: uploads, exports, rendered documents. A protocol with two backends (a local
folder and S3-compatible buckets) and expiring signed download links."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from millrace.storage.base import (
    CHUNK_BYTES,
    InvalidKey,
    ObjectMissing,
    Storage,
    StorageUnavailable,
    TooLarge,
    check_key,
    download,
    file_chunks,
    put_bytes,
    read_bytes,
    read_lines,
    rechunk,
)
from millrace.storage.folder import FolderStorage
from millrace.storage.links import DownloadLinks, Verdict
from millrace.storage.s3 import S3Config, S3Storage


@asynccontextmanager
async def open_storage(location: Path | S3Config) -> AsyncIterator[Storage]:
    """The storage at a folder or in a bucket, open for the life of the `async with`."""
    if isinstance(location, Path):
        yield FolderStorage(location)
        return
    async with S3Storage.open(location) as s3:
        yield s3


__all__ = [
    "CHUNK_BYTES",
    "DownloadLinks",
    "FolderStorage",
    "InvalidKey",
    "ObjectMissing",
    "S3Config",
    "S3Storage",
    "Storage",
    "StorageUnavailable",
    "TooLarge",
    "Verdict",
    "check_key",
    "download",
    "file_chunks",
    "open_storage",
    "put_bytes",
    "read_bytes",
    "read_lines",
    "rechunk",
]
