"""Expiring download links: a stored object's key, a file name and an expiry, signed with HMAC-SHA256.

The web app serves `/files/{key}?name=...&expires=...&signature=...` only when the signature matches
what it computes with its own secret and the expiry has not passed: a link cannot be stretched in
time, pointed at another object or given another file name. Signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlencode

from millrace.storage.base import check_key

Verdict = Literal["ok", "expired", "forged"]


@dataclass(frozen=True, slots=True)
class DownloadLinks:
    secret: bytes
    #: where the web app serves the files, e.g. `https://app.example.com/files`
    base_url: str

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("a download link secret needs at least 16 bytes")

    def link(self, key: str, *, name: str, valid_s: float, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + valid_s)
        query = urlencode({"name": name, "expires": expires, "signature": self.signature(key, name, expires)})
        return f"{self.base_url.rstrip('/')}/{quote(check_key(key))}?{query}"

    def signature(self, key: str, name: str, expires: int) -> str:
        # the parts are length-prefixed: no two different (key, name, expires) give the same message
        message = "\n".join(f"{len(part)}:{part}" for part in (key, name, str(expires))).encode(
            "utf-8", "surrogatepass"
        )
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, key: str, *, name: str, expires: int, signature: str, now: float | None = None) -> Verdict:
        expected = self.signature(key, name, expires)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
            return "forged"
        if expires < (time.time() if now is None else now):
            return "expired"
        return "ok"
