"""Webhook signatures in Stripe's scheme: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


class SignatureError(Exception):
    """Why a webhook request is refused; the message is for our logs, never echoed to the sender."""


_MAX_TIMESTAMP_DIGITS = 12
_MAX_SIGNATURES = 8


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The header value a provider would send: what tests and the demo load use to sign."""
    return f"t={timestamp},v1={_digest(body, secret, timestamp)}"


def verify(header: str | None, body: bytes, secrets: Sequence[str], *, now: float, tolerance_s: int) -> int:
    """Return the signed timestamp, or raise SignatureError. Any of `secrets` may have signed."""
    if not header:
        raise SignatureError("no signature header")
    timestamp, signatures = _parse(header)
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp {timestamp} is outside the {tolerance_s}s tolerance")
    for secret in secrets:
        expected = _digest(body, secret, timestamp)
        # compare_digest takes the same time whatever the mismatch: no byte-by-byte oracle
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return timestamp
    raise SignatureError("no signature matches")


def _digest(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        # ASCII digits only, and few of them: str.isdigit() also accepts "²", which int() refuses
        if key == "t" and value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS:
            timestamp = int(value)
        elif key == "v1" and value and len(signatures) < _MAX_SIGNATURES:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("malformed signature header")
    return timestamp, signatures
