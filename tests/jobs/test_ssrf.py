"""The SSRF guard on user-supplied URLs, with real name resolution (no network: literals and localhost)."""

from __future__ import annotations

import pytest

from jobs.ssrf import UnsafeUrl, check_outbound_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.5/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fd00:ec2::254]/",
        "ftp://93.184.216.34/",
        "not a url",
    ],
)
async def test_unsafe_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        await check_outbound_url(url)


async def test_public_address_is_allowed() -> None:
    await check_outbound_url("https://93.184.216.34/services/T000/B000/XXX")


async def test_allow_list_lets_tests_reach_loopback() -> None:
    await check_outbound_url("http://127.0.0.1:9999/hook", allowed_hosts=["127.0.0.1"])
    with pytest.raises(UnsafeUrl):
        await check_outbound_url("http://localhost:9999/hook", allowed_hosts=["127.0.0.1"])
