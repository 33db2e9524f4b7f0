"""Webhook signature checks, tested directly."""

from __future__ import annotations

import pytest

from web.signatures import SignatureError, sign, verify

BODY = b'{"id":"evt_1"}'
NOW = 1_800_000_000


def test_a_valid_signature_is_accepted() -> None:
    assert verify(sign(BODY, "whsec_a", NOW), BODY, ["whsec_a"], now=NOW, tolerance_s=300) == NOW


def test_any_secret_during_rotation_is_accepted() -> None:
    header = sign(BODY, "whsec_old", NOW)
    assert verify(header, BODY, ["whsec_new", "whsec_old"], now=NOW, tolerance_s=300) == NOW


@pytest.mark.parametrize(
    ("header", "body", "now", "reason"),
    [
        (None, BODY, NOW, "no signature header"),
        ("v1=abc", BODY, NOW, "malformed"),
        ("t=abc,v1=abc", BODY, NOW, "malformed"),
        (sign(BODY, "whsec_forged", NOW), BODY, NOW, "no signature matches"),
        (sign(BODY, "whsec_a", NOW), b'{"id":"evt_2"}', NOW, "no signature matches"),
        (sign(BODY, "whsec_a", NOW - 301), BODY, NOW, "outside the 300s tolerance"),
        (sign(BODY, "whsec_a", NOW + 301), BODY, NOW, "outside the 300s tolerance"),
    ],
    ids=["missing", "malformed", "bad-timestamp", "forged", "altered-body", "stale", "future"],
)
def test_bad_signatures_are_refused(header: str | None, body: bytes, now: int, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(header, body, ["whsec_a"], now=now, tolerance_s=300)


def test_the_edge_of_the_tolerance_is_accepted() -> None:
    assert verify(sign(BODY, "whsec_a", NOW - 300), BODY, ["whsec_a"], now=NOW, tolerance_s=300) == NOW - 300
