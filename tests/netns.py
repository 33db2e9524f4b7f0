"""A test host of the test's own: a network namespace joined to this machine by a veth pair, whose link
the test can cut and heal. Traffic stays on the pair; the namespace has no route anywhere else."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass(frozen=True, slots=True)
class IsolatedHost:
    name: str
    #: this machine's end of the pair: servers the test host must reach listen here
    host_address: str
    address: str

    @property
    def wrap(self) -> tuple[str, ...]:
        """Prefix for a command to run on the test host."""
        return ("ip", "netns", "exec", self.name)

    def cut(self) -> None:
        """A partition: packets are dropped, nobody is told (no reset), as when a switch fails."""
        _ip("link", "set", f"{self.name}-h", "down")

    def heal(self) -> None:
        _ip("link", "set", f"{self.name}-h", "up")

    def cut_far_end(self) -> None:
        """A partition as this machine sees it: the test host's end of the link goes down, and this machine
        keeps sending into the link (the host's address pinned in its neighbour table), which drops every
        packet. Established connections and new connects alike wait unanswered. (With `cut`, a connect from
        this machine finds no route on the link and leaves by the default route instead.)"""
        far_end = [*self.wrap, "ip", "-j", "link", "show", f"{self.name}-n"]
        shown = subprocess.run(far_end, check=True, capture_output=True)
        mac = json.loads(shown.stdout)[0]["address"]
        _ip("neigh", "replace", self.address, "lladdr", mac, "dev", f"{self.name}-h", "nud", "permanent")
        _ip("netns", "exec", self.name, "ip", "link", "set", f"{self.name}-n", "down")

    def heal_far_end(self) -> None:
        _ip("netns", "exec", self.name, "ip", "link", "set", f"{self.name}-n", "up")


@contextmanager
def isolated_host() -> Iterator[IsolatedHost]:
    """Make a namespace with a /30 between it and this machine; removed on the way out, whatever happens."""
    tag = random.randrange(1, 250)
    name = f"mrtest{tag}"
    host = IsolatedHost(name=name, host_address=f"10.254.{tag}.1", address=f"10.254.{tag}.2")
    _ip("netns", "add", name)
    try:
        _ip("link", "add", f"{name}-h", "type", "veth", "peer", "name", f"{name}-n")
        _ip("link", "set", f"{name}-n", "netns", name)
        _ip("addr", "add", f"{host.host_address}/30", "dev", f"{name}-h")
        _ip("link", "set", f"{name}-h", "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{host.address}/30", "dev", f"{name}-n")
        _ip("netns", "exec", name, "ip", "link", "set", f"{name}-n", "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield host
    finally:
        subprocess.run(["ip", "link", "del", f"{name}-h"], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
