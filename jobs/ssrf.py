"""Guarding URLs that users supply (Slack webhooks): never a request into our own network.

Only globally routable addresses are allowed (`ipaddress`'s `is_global`, with IPv4 embedded in IPv6
checked too), so private, loopback, link-local (the cloud metadata service), shared (100.64.0.0/10),
reserved and benchmark ranges are all refused. And the check holds for the connection itself: the
guarded client resolves the name once, checks every address, and connects to the address it checked,
so a DNS answer that changes between the check and the connection (rebinding) cannot reach inside.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import typing
from collections.abc import Awaitable, Callable, Collection

import httpcore
import httpx

from millrace import GiveUp

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: resolves (host, port) to IP addresses; the guard's only view of DNS
Resolver = Callable[[str, int], Awaitable[list[str]]]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeUrl(GiveUp):
    """Permanent: the same URL resolves the same way on the next attempt."""


def is_public(address: IPAddress) -> bool:
    """Globally routable, and so is any IPv4 address it carries inside it."""
    if not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return True
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(inner is None or inner.is_global for inner in embedded)


async def resolve(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UnsafeUrl(f"cannot resolve {host!r}: {error}") from None
    return [str(sockaddr[0]) for *_, sockaddr in infos]


async def public_addresses(host: str, port: int, resolver: Resolver = resolve) -> list[str]:
    """Every address of `host`, or UnsafeUrl if any of them is not public."""
    addresses = await resolver(host, port)
    if not addresses:
        raise UnsafeUrl(f"{host!r} resolves to no address")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
        if not is_public(address):
            raise UnsafeUrl(f"{host!r} resolves to {address}, which is not a public address")
    return addresses


def parse_user_url(url: str) -> httpx.URL:
    """The URL, if it is http(s) with a host; UnsafeUrl otherwise."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise UnsafeUrl(f"not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnsafeUrl(f"only http(s) URLs with a host are allowed, not {url[:200]!r}")
    return parsed


async def check_outbound_url(url: str, *, allowed_hosts: Collection[str] = (), resolver: Resolver = resolve) -> None:
    """Raise UnsafeUrl unless `url` is http(s) and every address of its host is public (or allow-listed).

    For a user's answer at save time; the guarded client checks again, for real, when it connects.
    """
    parsed = parse_user_url(url)
    if parsed.host not in allowed_hosts:
        await public_addresses(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80), resolver)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to checked public addresses: the address checked is the address connected to."""

    def __init__(
        self, allowed_hosts: Collection[str], resolver: Resolver, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self._inner = inner or httpcore.AnyIOBackend()
        self._allowed_hosts = frozenset(allowed_hosts)
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface, passed on as it is
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        targets = [host] if host in self._allowed_hosts else await public_addresses(host, port, self._resolver)
        # TLS still names `host`: httpcore passes the URL's host as SNI and checks the certificate against it
        return await self._inner.connect_tcp(
            targets[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UnsafeUrl("unix sockets are not reachable from user-supplied URLs")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, its connections made through the guard (no proxy: a proxy would resolve anew)."""

    def __init__(self, *, allowed_hosts: Collection[str] = (), resolver: Resolver = resolve) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=_GuardedBackend(allowed_hosts, resolver),
        )


def guarded_client(
    *, timeout: httpx.Timeout, allowed_hosts: Collection[str] = (), resolver: Resolver = resolve
) -> httpx.AsyncClient:
    """The client for URLs users supply: no redirects, no proxies from the environment, public addresses only."""
    transport = GuardedTransport(allowed_hosts=allowed_hosts, resolver=resolver)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
