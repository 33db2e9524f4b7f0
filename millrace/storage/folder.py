"""Storage in a local folder: the default, so a single machine needs nothing more.

A write goes to a temporary file in the same folder tree and is renamed over the key when complete
(a rename is atomic on one file system), so readers see the old object or the whole new one. File
calls run in a thread: a disk that stalls stalls a thread, never the event loop.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from millrace.storage.base import CHUNK_BYTES, ObjectMissing, SizeGuard, check_key

_PARTIAL = ".partial"


class FolderStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_of(self, key: str) -> Path:
        return self.root / check_key(key)

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> int:
        target = self.path_of(key)
        partial = self.root / _PARTIAL / uuid.uuid4().hex
        await asyncio.to_thread(_make_parents, partial, target)
        guard = SizeGuard(max_bytes)
        file = await asyncio.to_thread(partial.open, "wb")
        try:
            async for chunk in guard.count(chunks):
                await asyncio.to_thread(file.write, chunk)
            await asyncio.to_thread(_flush_and_close, file)
            await asyncio.to_thread(os.replace, partial, target)
        except BaseException:
            await asyncio.to_thread(_discard, file, partial)
            raise
        return guard.total

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_of(key)
        try:
            file = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
                yield chunk
        finally:
            file.close()

    async def size(self, key: str) -> int | None:
        path = self.path_of(key)
        try:
            stat = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return stat.st_size if path.is_file() else None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)


def _make_parents(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)


def _flush_and_close(file: BinaryIO) -> None:
    # fsync before the rename: after a power cut the key holds the whole object or the old one
    file.flush()
    os.fsync(file.fileno())
    file.close()


def _discard(file: BinaryIO, partial: Path) -> None:
    file.close()
    partial.unlink(missing_ok=True)
