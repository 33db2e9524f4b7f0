"""Uploads: a request body streamed to storage as it arrives, counted against its limit (413 past it)."""

from __future__ import annotations

import uuid

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from millrace.storage import TooLarge
from web.state import AppState


async def store_upload(state: AppState, request: Request, *, folder: str, max_bytes: int) -> tuple[str, int]:
    """(storage key, size) of the body, stored under `folder`; nothing is kept of one refused or cut off."""
    key = f"{folder}/{uuid.uuid4().hex}"
    try:
        size = await state.storage.put(key, request.stream(), max_bytes=max_bytes)
    except TooLarge as error:
        raise HTTPException(413, f"the file is larger than {error.limit_bytes} bytes") from None
    except ClientDisconnect:
        raise HTTPException(400, "the upload was cut off") from None
    return key, size
