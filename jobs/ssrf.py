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
import ssl
import typing
from collections.abc import Awaitable, Callable, Collection

import httpcore
import httpx

from millrace import GiveUp

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: resolves (host, port) to IP addresses; the guard's only view of DNS
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: httpx's own defaults, which its transport keeps private
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: `::a.b.c.d`, deprecated since 2006 (RFC 4291): no public host lives there, and a stack that still
#: tunnels it would reach the IPv4 address inside, so the whole range is refused
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
#: not globally reachable by the IANA special-purpose registries, yet `is_global` in a Python without
#: the 2024 update of its tables (gh-113171, CVE-2024-4032; this project's 3.11.7 is one) says they are;
#: with a newer Python `is_global` refuses most of them already and this changes nothing
_STALE_IN_OLD_PYTHONS = (
    ipaddress.IPv4Network("192.0.0.0/24"),  # IETF protocol assignments (only /29 and .170/31 are known)
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
    ipaddress.IPv6Network("5f00::/16"),  # segment routing SIDs (RFC 9602)
    ipaddress.IPv6Network("fec0::/10"),  # site-local, deprecated (RFC 3879)
)
#: getaddrinfo's answers for a name that does not exist: the same on the next attempt
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


class UnsafeUrl(GiveUp):
    """Permanent: the same URL resolves the same way on the next attempt."""


class ResolverUnavailable(OSError):
    """The resolver failed for now (a timeout, a server failure): worth another attempt, unlike no such name."""


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast, and so is any IPv4 address it carries inside it."""
    # TCP has no multicast, and `is_global` counts global-scope multicast groups as global
    if not address.is_global or address.is_multicast or any(address in net for net in _STALE_IN_OLD_PYTHONS):
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return True
    if address in _IPV4_COMPATIBLE:
        return False
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return all(inner is None or is_public(inner) for inner in embedded)


async def resolve(host: str, port: int) -> list[str]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise resolution_failed(host, error) from None
    except UnicodeError as error:  # a name IDNA cannot encode
        raise UnsafeUrl(f"cannot resolve {host!r}: {error}") from None
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def resolution_failed(host: str, error: socket.gaierror) -> UnsafeUrl | ResolverUnavailable:
    """No such name is permanent (give up); any other failure of the resolver may pass (retry)."""
    if error.errno in _NO_SUCH_NAME:
        return UnsafeUrl(f"cannot resolve {host!r}: {error.strerror}")
    return ResolverUnavailable(f"cannot resolve {host!r} now: {error.strerror}")


async def public_addresses(host: str, port: int, resolver: Resolver = resolve) -> list[str]:
    """Every address of `host`, or UnsafeUrl if any of them is not public."""
    addresses = list(dict.fromkeys(await resolver(host, port)))
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
    # the host as the connection sees it (IDNA-encoded, IPv6 without brackets), so the allow-list means the same
    host = parsed.raw_host.decode("ascii")
    if host in allowed_hosts:
        return
    try:
        await public_addresses(host, parsed.port or (443 if parsed.scheme == "https" else 80), resolver)
    except ResolverUnavailable as error:  # the user is waiting for an answer: tell them, they may try again
        raise UnsafeUrl(str(error)) from None


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
        targets = [host] if host in self._allowed_hosts else await self._checked_addresses(host, port, timeout)
        # TLS still names `host`: httpcore passes the URL's host as SNI and checks the certificate against it,
        # and httpx writes it in the Host header; only the socket is given the checked address
        for target in targets[:-1]:
            try:
                return await self._inner.connect_tcp(target, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                continue  # e.g. an IPv6 address without an IPv6 route: the next checked address may answer
        return await self._inner.connect_tcp(targets[-1], port, timeout, local_address, socket_options)

    async def _checked_addresses(self, host: str, port: int, within_s: float | None) -> list[str]:
        # resolving is part of connecting: the connect timeout bounds it, and a failure for now is retried
        try:
            async with asyncio.timeout(within_s):
                return await public_addresses(host, port, self._resolver)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host!r} took longer than {within_s}s") from None
        except ResolverUnavailable as error:
            raise httpcore.ConnectError(str(error)) from None

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

    def __init__(
        self,
        *,
        allowed_hosts: Collection[str] = (),
        resolver: Resolver = resolve,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = DEFAULT_LIMITS,
        network: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=False)
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        # httpx takes no network backend, so the pool it just built is replaced by the same pool (same TLS
        # context, same limits) whose connections go through the guard; httpx sends and closes through
        # `_pool`, and tests/jobs/test_ssrf_pinning.py fails if that ever stops being true
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allowed_hosts, resolver, network),
        )


def guarded_client(
    *,
    timeout: httpx.Timeout,
    allowed_hosts: Collection[str] = (),
    resolver: Resolver = resolve,
    verify: ssl.SSLContext | bool = True,
    network: httpcore.AsyncNetworkBackend | None = None,
) -> httpx.AsyncClient:
    """The client for URLs users supply: no redirects, no proxies from the environment, public addresses only.

    `resolver` stands for DNS and `network` for the sockets under the guard (httpcore's own by default).
    """
    transport = GuardedTransport(allowed_hosts=allowed_hosts, resolver=resolver, verify=verify, network=network)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
