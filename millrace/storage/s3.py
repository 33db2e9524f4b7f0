"""Storage in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2...), through aiobotocore.

A stream goes up as one PUT when it fits in a part, otherwise as a multipart upload that is completed
only when the stream ends and aborted when it fails, so a bucket never holds half an object under a
key. Every key lives under `prefix`, so several services can share a bucket.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiobotocore.session
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from millrace.storage.base import CHUNK_BYTES, ObjectMissing, SizeGuard, StorageUnavailable, check_key, rechunk

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

#: S3's smallest part but the last one is 5 MiB; larger parts mean fewer requests
PART_BYTES = 8 * 1024 * 1024
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Config:
    bucket: str
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    prefix: str = ""
    #: path-style URLs (`host/bucket/key`): what most S3-compatible servers expect
    path_style: bool = True
    timeout_s: float = 30.0


class S3Storage:
    def __init__(self, client: S3Client, config: S3Config) -> None:
        self._s3 = client
        self.config = config

    @classmethod
    @asynccontextmanager
    async def open(cls, config: S3Config) -> AsyncIterator[S3Storage]:
        botocore_config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path" if config.path_style else "auto"},
            connect_timeout=config.timeout_s,
            read_timeout=config.timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        session = aiobotocore.session.get_session()
        async with AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                session.create_client(
                    "s3",
                    endpoint_url=config.endpoint_url,
                    region_name=config.region,
                    aws_access_key_id=config.access_key_id,
                    aws_secret_access_key=config.secret_access_key,
                    config=botocore_config,
                )
            )
            yield cls(client, config)

    def _name(self, key: str) -> str:
        return self.config.prefix + check_key(key)

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = "application/octet-stream",
        max_bytes: int | None = None,
    ) -> int:
        with _answered():
            return await self._put(self._name(key), chunks, content_type, max_bytes)

    async def _put(self, name: str, chunks: AsyncIterable[bytes], content_type: str, max_bytes: int | None) -> int:
        guard = SizeGuard(max_bytes)
        parts = aiter(rechunk(guard.count(chunks), PART_BYTES))
        first = await anext(parts, b"")
        second = await anext(parts, None)
        if second is None:  # it fits in one part: one PUT
            await self._s3.put_object(Bucket=self.config.bucket, Key=name, Body=first, ContentType=content_type)
            return guard.total
        upload = await self._s3.create_multipart_upload(Bucket=self.config.bucket, Key=name, ContentType=content_type)
        upload_id = upload["UploadId"]
        try:
            done = [await self._part(name, upload_id, 1, first), await self._part(name, upload_id, 2, second)]
            async for part in parts:
                done.append(await self._part(name, upload_id, len(done) + 1, part))
            await self._s3.complete_multipart_upload(
                Bucket=self.config.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
        except BaseException:
            # a bucket lifecycle rule for incomplete uploads catches what an abort cut off here leaves
            with contextlib.suppress(Exception):
                await self._s3.abort_multipart_upload(Bucket=self.config.bucket, Key=name, UploadId=upload_id)
            raise
        return guard.total

    async def _part(self, name: str, upload_id: str, number: int, data: bytes) -> Any:
        answer = await self._s3.upload_part(
            Bucket=self.config.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def read(self, key: str) -> AsyncIterator[bytes]:
        name = self._name(key)
        with _answered():
            try:
                answer = await self._s3.get_object(Bucket=self.config.bucket, Key=name)
            except ClientError as error:
                if _missing(error):
                    raise ObjectMissing(key) from None
                raise
            async with answer["Body"] as body:
                while chunk := await body.read(CHUNK_BYTES):
                    yield chunk

    async def size(self, key: str) -> int | None:
        name = self._name(key)
        try:
            with _answered():
                answer = await self._s3.head_object(Bucket=self.config.bucket, Key=name)
        except ClientError as error:
            if _missing(error):
                return None
            raise
        return answer["ContentLength"]

    async def delete(self, key: str) -> None:
        name = self._name(key)
        with _answered():
            await self._s3.delete_object(Bucket=self.config.bucket, Key=name)


@contextlib.contextmanager
def _answered() -> Iterator[None]:
    """Connection errors and timeouts (after botocore's own retries) as StorageUnavailable."""
    try:
        yield
    except BotoCoreError as error:
        raise StorageUnavailable(f"S3 did not answer: {error}") from error


def _missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING_CODES
