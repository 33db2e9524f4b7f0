"""Guarding URLs that users supply (Slack webhooks): never a request into our own network.

The host is resolved and every address it resolves to is checked, so a public name that points at
127.0.0.1 or at the cloud metadata service (169.254.169.254) is refused like the address itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection

import httpx

from millrace import GiveUp


class UnsafeUrl(GiveUp):
    """Permanent: the same URL resolves the same way on the next attempt."""


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def check_outbound_url(url: str, *, allowed_hosts: Collection[str] = ()) -> None:
    """Raise UnsafeUrl unless `url` is http(s) and every address of its host is public (or allow-listed)."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise UnsafeUrl(f"not a URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UnsafeUrl(f"only http(s) URLs with a host are allowed, not {url!r}")
    if parsed.host in allowed_hosts:
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UnsafeUrl(f"cannot resolve {parsed.host!r}: {error}") from None
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if _forbidden(address):
            raise UnsafeUrl(f"{parsed.host!r} resolves to {address}, which is not a public address")
