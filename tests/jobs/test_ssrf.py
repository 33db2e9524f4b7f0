"""The SSRF guard on user-supplied URLs, with real name resolution (no network: literals and localhost)."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.ssrf import Resolver, UnsafeUrl, _GuardedBackend, check_outbound_url, guarded_client, is_public


@dataclass
class CountingServer:
    """A real HTTP server on loopback that counts what reaches it: it must stay at zero."""

    server: asyncio.Server
    port: int
    requests: int = field(default=0)

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


async def start_counting_server() -> CountingServer:
    holder: list[CountingServer] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        holder[0].requests += 1
        await reader.readline()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    holder.append(CountingServer(server=server, port=server.sockets[0].getsockname()[1]))
    return holder[0]


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


@pytest.mark.parametrize(
    "address",
    ["100.64.0.1", "100.100.100.200", "192.0.0.170", "198.18.0.1", "240.0.0.1", "[64:ff9b::a00:1]", "[2002:a00:1::]"],
)
async def test_every_address_that_is_not_globally_routable_is_refused(address: str) -> None:
    """Shared address space (a cloud's metadata service lives there), benchmarks, reserved, and IPv4
    private addresses wrapped in NAT64 or 6to4 prefixes."""
    with pytest.raises(UnsafeUrl):
        await check_outbound_url(f"http://{address}/hook")


# The oracle: the IANA special-purpose registries' ranges that are not globally reachable, written out
# here rather than read from `ipaddress`, whose tables vary with the Python release (3.11.7's predate 2024).
NOT_GLOBAL_V4 = [
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space: a cloud's metadata service lives at 100.100.100.200
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast: no TCP connection goes there
        "240.0.0.0/4",  # reserved, and 255.255.255.255
    )
]
NOT_GLOBAL_V6 = [
    ipaddress.IPv6Network(n)
    for n in (
        "::/96",  # ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/32",
        "2001:2::/48",
        "2001:10::/28",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]


def wrapped(inner: ipaddress.IPv4Address) -> list[ipaddress.IPv6Address]:
    """`inner` as IPv6 reaches it: mapped, 6to4, NAT64 (well-known prefix) and Teredo (client obfuscated)."""
    return [
        ipaddress.IPv6Address(f"::ffff:{inner}"),
        ipaddress.IPv6Address((0x2002 << 112) | (int(inner) << 80)),
        ipaddress.IPv6Address((0x64FF9B << 96) | int(inner)),
        ipaddress.IPv6Address((0x20010000 << 96) | (int(inner) << 64) | (~int(inner) & 0xFFFFFFFF)),
    ]


def in_any(address: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: list[Any]) -> bool:
    return any(address in network for network in networks)


ipv4_anywhere = st.one_of(
    st.ip_addresses(v=4), st.sampled_from(NOT_GLOBAL_V4).flatmap(lambda n: st.ip_addresses(network=n))
)


@settings(max_examples=1000, deadline=None)
@given(ipv4_anywhere)
def test_an_ipv4_address_is_public_exactly_when_it_is_globally_reachable(address: ipaddress.IPv4Address) -> None:
    assert is_public(address) == (not in_any(address, NOT_GLOBAL_V4))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(NOT_GLOBAL_V6).flatmap(lambda n: st.ip_addresses(network=n)))
def test_no_ipv6_address_of_a_range_that_is_not_globally_reachable_is_public(address: ipaddress.IPv6Address) -> None:
    assert not is_public(address)


@settings(max_examples=500, deadline=None)
@given(st.ip_addresses())
def test_nothing_python_calls_not_global_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert address.is_global or not is_public(address)


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(network="2400::/6"))
def test_global_unicast_ipv6_is_public(address: ipaddress.IPv6Address) -> None:
    """2400::/6 is allocated to the regional registries whole: nothing special lives there."""
    assert is_public(address)


@settings(max_examples=500, deadline=None)
@given(ipv4_anywhere)
def test_ipv4_wrapped_in_ipv6_is_public_exactly_when_the_ipv4_address_is(inner: ipaddress.IPv4Address) -> None:
    """Mapped, 6to4 and NAT64 reach the IPv4 address inside; Teredo (2001::/32) is never public."""
    mapped, sixtofour, nat64, teredo = wrapped(inner)
    assert [is_public(mapped), is_public(sixtofour), is_public(nat64)] == [is_public(inner)] * 3
    assert not is_public(teredo)
    assert not is_public(ipaddress.IPv6Address(int(inner)))  # IPv4-compatible ::a.b.c.d, deprecated


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands in for the network: notes where the guard asked to connect, and connects nowhere."""

    def __init__(self) -> None:
        self.hosts: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        self.hosts.append(host)
        raise httpcore.ConnectError("not connecting in a test")


def resolver_answering(*answers: list[str]) -> Resolver:
    """A DNS that answers each lookup with the next of `answers`: what a rebinding attacker runs."""
    pending = list(answers)

    async def resolve(host: str, port: int) -> list[str]:
        return pending.pop(0) if len(pending) > 1 else pending[0]

    return resolve


async def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    recording = RecordingBackend()
    backend = _GuardedBackend((), resolver_answering(["93.184.216.34"]), inner=recording)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("hooks.example.com", 443)
    assert recording.hosts == ["93.184.216.34"]  # the checked address, not the name resolved anew


async def test_a_name_that_rebinds_to_loopback_after_the_check_is_refused_at_connection() -> None:
    served = await start_counting_server()
    rebinding = resolver_answering(["93.184.216.34"], ["127.0.0.1"])
    url = f"http://rebind.example:{served.port}/hook"
    await check_outbound_url(url, resolver=rebinding)  # at save time it looked public
    async with guarded_client(timeout=httpx.Timeout(2.0), resolver=rebinding) as client:
        with pytest.raises(UnsafeUrl, match=r"127\.0\.0\.1"):
            await client.post(url, json={})
    assert served.requests == 0
    await served.close()
