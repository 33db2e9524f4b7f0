"""Downloads through expiring signed links: exports, error reports, rendered documents.

A link names the stored object, the file name to save it as, and its expiry, all signed (see
millrace.storage.links). Anything else gets a 403 (altered or unsigned), a 410 (expired) or a 404
(signed, but the object is gone). Files are always sent as attachments with a fixed content type,
so nothing stored is ever rendered by the browser as a page of this site.
"""

from __future__ import annotations

import string
from pathlib import PurePosixPath
from typing import Annotated
from urllib.parse import quote

from fastapi import HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from millrace.storage import InvalidKey, check_key
from web.state import state_of

_CONTENT_TYPES = {".csv": "text/csv; charset=utf-8", ".pdf": "application/pdf", ".json": "application/json"}
_ASCII_NAME = set(string.ascii_letters + string.digits + "._-() ")


async def download(
    key: str,
    request: Request,
    name: Annotated[str, Query(max_length=200)],
    expires: Annotated[int, Query(ge=0, le=2**53)],
    signature: Annotated[str, Query(max_length=100)],
) -> StreamingResponse:
    state = state_of(request)
    if state.links is None:
        raise HTTPException(404, "downloads are not configured")
    try:
        check_key(key)
    except InvalidKey:
        raise HTTPException(403, "this link is not valid") from None
    verdict = state.links.verify(key, name=name, expires=expires, signature=signature)
    if verdict == "forged":
        raise HTTPException(403, "this link is not valid")
    if verdict == "expired":
        raise HTTPException(410, "this link has expired")
    size = await state.storage.size(key)
    if size is None:
        raise HTTPException(404, "this file is no longer kept")
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": content_disposition(name),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }
    media_type = _CONTENT_TYPES.get(PurePosixPath(name).suffix.lower(), "application/octet-stream")
    return StreamingResponse(state.storage.read(key), media_type=media_type, headers=headers)


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact one in RFC 6266's UTF-8 form."""
    fallback = "".join(c if c in _ASCII_NAME else "_" for c in name).strip() or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
