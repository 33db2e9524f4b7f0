"""The guarded client connects to the address it checked, to real servers on loopback.

DNS is a resolver we pass to the guard (one that rebinds: public first, private afterwards), and the
internet is `Internet` below: a routing table that sends the public address to one real loopback
server and anything on 127.0.0.1 to another, and that looks a name up again when asked to connect to
a name, as the operating system would. The guard, httpx, httpcore and TLS are the real ones.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import subprocess
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpcore
import httpx
import pytest

from jobs.ssrf import ResolverUnavailable, UnsafeUrl, check_outbound_url, guarded_client, resolution_failed
from tests.programs import needs_programs

NAME = "hooks.rebind.test"
PUBLIC = "93.184.216.34"
TIMEOUT = httpx.Timeout(5.0)
#: the TLS tests make their certificates with it (tls_pair)
needs_openssl = needs_programs("openssl", package="openssl")


@dataclass
class Server:
    """A real HTTP(S) server on loopback that keeps the Host header and the TLS name of every request."""

    port: int = 0
    hosts: list[str] = field(default_factory=list)
    tls_names: list[str | None] = field(default_factory=list)

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in head[1:] if line)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        self.hosts.append(headers["host"])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


@asynccontextmanager
async def serving(tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server()
    if tls is not None:
        tls.sni_callback = lambda _socket, name, _context: server.tls_names.append(name)
    listening = await asyncio.start_server(server.answer, "127.0.0.1", 0, ssl=tls)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()
        await listening.wait_closed()


class RebindingDns:
    """Answers the first lookup of a name with `first`, every later one with `then`."""

    def __init__(self, first: list[str], then: list[str]) -> None:
        self.answers = [first, then]
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        if host != NAME:
            return [host]  # an IP literal resolves to itself
        self.lookups += 1
        return self.answers[0] if self.lookups == 1 else self.answers[1]


class Internet(httpcore.AsyncNetworkBackend):
    """Public addresses routed to loopback servers; 127.0.0.1 as it is; a name looked up again."""

    def __init__(self, dns: RebindingDns, routes: dict[str, int]) -> None:
        self._dns = dns
        self._routes = routes
        self._sockets = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = (await self._dns(host, port))[0]
        if address in self._routes:
            return await self._sockets.connect_tcp("127.0.0.1", self._routes[address], timeout)
        if ipaddress.ip_address(address).is_loopback:
            return await self._sockets.connect_tcp(address, port, timeout)
        raise httpcore.ConnectError(f"no route to {address}")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def tls_pair(folder: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a self-signed certificate for `name`, and a client context trusting only it."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    key_type = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    files = ["-keyout", str(key), "-out", str(cert), "-days", "1"]
    subprocess.run(
        ["openssl", "req", "-x509", *key_type, *files, "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
        check=True,
        capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


async def test_checking_a_name_then_connecting_by_name_reaches_the_private_server() -> None:
    """The attack this guards against, shown on the same stand-ins: a check, then a second lookup."""
    async with serving() as public, serving() as private:
        dns = RebindingDns([PUBLIC], ["127.0.0.1"])
        internet = Internet(dns, {PUBLIC: public.port})
        url = f"http://{NAME}:{private.port}/hook"
        await check_outbound_url(url, resolver=dns)  # looked public
        # the guard waved through (allow-listed), so the connection is made by name: looked up again
        async with guarded_client(timeout=TIMEOUT, allowed_hosts=[NAME], network=internet) as unguarded:
            assert (await unguarded.post(url, json={})).status_code == 200
    assert (public.hosts, private.hosts) == ([], [f"{NAME}:{private.port}"])


async def test_the_connection_goes_to_the_address_the_guard_checked() -> None:
    async with serving() as public, serving() as private:
        dns = RebindingDns([PUBLIC], ["127.0.0.1"])
        url = f"http://{NAME}:{private.port}/hook"
        async with guarded_client(timeout=TIMEOUT, resolver=dns, network=Internet(dns, {PUBLIC: public.port})) as c:
            assert (await c.post(url, json={"text": "hi"})).status_code == 200
    assert dns.lookups == 1  # once, by the guard; the socket was given the address, not the name
    assert public.hosts == [f"{NAME}:{private.port}"]  # the Host header still names the host
    assert private.hosts == []


@needs_openssl
async def test_tls_names_the_host_while_the_socket_goes_to_the_checked_address(tmp_path: Path) -> None:
    server_tls, client_tls = tls_pair(tmp_path, NAME)
    async with serving(server_tls) as public, serving() as private:
        dns = RebindingDns([PUBLIC], ["127.0.0.1"])
        internet = Internet(dns, {PUBLIC: public.port})
        async with guarded_client(timeout=TIMEOUT, resolver=dns, verify=client_tls, network=internet) as client:
            response = await client.post(f"https://{NAME}:{private.port}/hook", json={})
    assert response.status_code == 200
    assert public.tls_names == [NAME]  # SNI, and the certificate was checked against the name
    assert private.hosts == []


@needs_openssl
async def test_the_certificate_is_checked_against_the_name_not_the_address(tmp_path: Path) -> None:
    server_tls, _ = tls_pair(tmp_path, "someone-else.test")
    _, client_tls = tls_pair(tmp_path, NAME)
    async with serving(server_tls) as public:
        dns = RebindingDns([PUBLIC], ["127.0.0.1"])
        internet = Internet(dns, {PUBLIC: public.port})
        async with guarded_client(timeout=TIMEOUT, resolver=dns, verify=client_tls, network=internet) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.post(f"https://{NAME}:443/hook", json={})
    assert public.hosts == []


async def test_a_checked_address_that_does_not_answer_gives_way_to_the_next_one() -> None:
    async with serving() as public:
        dns = RebindingDns(["2400:cb00::1", PUBLIC], [PUBLIC])  # no route to the IPv6 address here
        async with guarded_client(timeout=TIMEOUT, resolver=dns, network=Internet(dns, {PUBLIC: public.port})) as c:
            assert (await c.post(f"http://{NAME}/hook", json={})).status_code == 200
    assert public.hosts == [NAME]


async def test_one_private_address_among_public_ones_refuses_the_whole_name() -> None:
    async with serving() as public, serving() as private:
        dns = RebindingDns([PUBLIC, "10.0.0.8"], [PUBLIC])
        async with guarded_client(timeout=TIMEOUT, resolver=dns, network=Internet(dns, {PUBLIC: public.port})) as c:
            with pytest.raises(UnsafeUrl, match=r"10\.0\.0\.8"):
                await c.post(f"http://{NAME}:{private.port}/hook", json={})
    assert public.hosts == private.hosts == []


async def test_a_resolver_failing_for_now_is_a_connection_error_to_retry() -> None:
    async def failing(host: str, port: int) -> list[str]:
        raise ResolverUnavailable(f"cannot resolve {host!r} now: Temporary failure in name resolution")

    async with guarded_client(timeout=TIMEOUT, resolver=failing) as client:
        with pytest.raises(httpx.ConnectError, match="Temporary failure"):
            await client.post(f"http://{NAME}/hook", json={})
    with pytest.raises(UnsafeUrl, match="Temporary failure"):  # at save time the user hears of it
        await check_outbound_url(f"http://{NAME}/hook", resolver=failing)


async def test_a_resolver_that_hangs_is_bounded_by_the_connect_timeout() -> None:
    async def hanging(host: str, port: int) -> list[str]:
        await asyncio.sleep(60)
        return [PUBLIC]

    async with guarded_client(timeout=httpx.Timeout(0.2), resolver=hanging) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.post(f"http://{NAME}/hook", json={})


@pytest.mark.parametrize(
    ("errno", "outcome"),
    [
        (socket.EAI_NONAME, UnsafeUrl),
        (socket.EAI_NODATA, UnsafeUrl),
        (socket.EAI_AGAIN, ResolverUnavailable),
        (socket.EAI_FAIL, ResolverUnavailable),
    ],
)
def test_no_such_name_is_permanent_and_a_failing_resolver_is_not(errno: int, outcome: type[Exception]) -> None:
    assert type(resolution_failed(NAME, socket.gaierror(errno, "from getaddrinfo"))) is outcome
