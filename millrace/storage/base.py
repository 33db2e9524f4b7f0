"""What a storage backend does: objects under keys, written and read as streams of bytes.

Keys are chosen by the application (`imports/42/upload.csv`), never by a user: a key is a few path
segments of letters, digits, dots, dashes and underscores, none of them starting with a dot. A backend
refuses any other key, so no key reaches outside its folder or bucket prefix.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Protocol

from millrace.errors import MillraceError

#: the size of the pieces a backend reads and writes
CHUNK_BYTES = 1024 * 1024
_KEY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}){0,15}")


class InvalidKey(MillraceError, ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"not a storage key: {key!r}")


class ObjectMissing(MillraceError, LookupError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"no stored object {key!r}")


class StorageUnavailable(MillraceError):
    """The storage did not answer (a network error or a timeout): worth trying again later."""


class TooLarge(MillraceError):
    """A stream went past the size allowed for it; nothing of it was kept."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        super().__init__(f"more than {limit_bytes} bytes")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidKey(key)
    return key


class Storage(Protocol):
    """A place for files too large for a database row: uploads, exports, rendered documents.

    `put` is all or nothing: a reader never sees a half-written object, and a stream that fails or
    passes `max_bytes` leaves nothing behind (an object already under the key stays as it was).
    """

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> int:
        """Store the stream under `key`, replacing what was there; returns its size in bytes."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in pieces; raises ObjectMissing when iterated if there is none."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is none."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing a missing one is not an error."""
        ...


async def put_bytes(storage: Storage, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> int:
    async def one() -> AsyncIterator[bytes]:
        yield data

    return await storage.put(key, one(), content_type=content_type)


async def read_bytes(storage: Storage, key: str) -> bytes:
    return b"".join([chunk async for chunk in storage.read(key)])


async def rechunk(chunks: AsyncIterable[bytes], size: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """The same bytes in pieces of `size` (the last one shorter): many small writes become few large ones."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class SizeGuard:
    """Counts the bytes of a stream and raises TooLarge past its limit."""

    def __init__(self, max_bytes: int | None) -> None:
        self.max_bytes = max_bytes
        self.total = 0

    async def count(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.total += len(chunk)
            if self.max_bytes is not None and self.total > self.max_bytes:
                raise TooLarge(self.max_bytes)
            yield chunk


async def read_lines(storage: Storage, key: str, *, max_line_bytes: int = 16 * 1024 * 1024) -> AsyncIterator[bytes]:
    """The object's lines (without their b"\\n"), read as a stream; a longer line than allowed is an error."""
    pending = bytearray()
    async for chunk in storage.read(key):
        pending += chunk
        *lines, rest = pending.split(b"\n")
        for line in lines:
            yield bytes(line)
        pending = bytearray(rest)
        if len(pending) > max_line_bytes:
            raise ValueError(f"a line of {key!r} is longer than {max_line_bytes} bytes")
    if pending:
        yield bytes(pending)


async def download(storage: Storage, key: str, to: Path) -> None:
    """Copy an object into a local file (for a parser or a program that needs a path), off the event loop."""
    with to.open("wb") as out:
        async for chunk in storage.read(key):
            await asyncio.to_thread(out.write, chunk)


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A local file as a stream for `Storage.put`, read off the event loop."""
    with path.open("rb") as source:
        while chunk := await asyncio.to_thread(source.read, CHUNK_BYTES):
            yield chunk
