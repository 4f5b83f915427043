"""Which addresses a delivery may connect to (the SSRF guard).

The check runs on the addresses a host name resolves to, at connection time (a
resolver wrapped around aiohttp's), so a name that resolved to a public address
when it was registered and to 127.0.0.1 later (DNS rebinding) is still refused.
IP literals in URLs, which aiohttp never resolves, are checked before connecting.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from producer.settings import parse_list

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IPv6 ranges that carry an IPv4 address a gateway would forward to.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class DestinationRefused(OSError):
    """The destination is not a public address and no allowlist entry covers it."""


def parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDR blocks (or single addresses) allowed despite being private."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in parse_list(raw))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(address: str | IPAddress) -> bool:
    """Whether ``address`` is a globally routable unicast address.

    Refused: loopback, private, link-local (169.254.169.254 included), unique-local,
    shared (CGNAT), documentation, multicast, unspecified and reserved ranges, and IPv6
    forms that embed such an IPv4 address.
    """
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        if inner is not None and not is_public(inner):
            return False
    return ip.is_global and not ip.is_multicast


class DestinationPolicy:
    """Public addresses, plus the networks of an operator's allowlist."""

    def __init__(self, allowed: Sequence[IPNetwork] = ()) -> None:
        self._allowed = tuple(allowed)

    def permits(self, address: str) -> bool:
        """Whether a connection to ``address`` may be made."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip.version == net.version and ip in net for net in self._allowed):
            return True
        return is_public(ip)

    def check_literal(self, host: str) -> None:
        """Refuse a URL host that is a non-permitted IP literal."""
        try:
            permitted = self.permits(host.strip("[]"))
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not permitted:
            raise DestinationRefused(f"destination {host} is not a public address")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops every non-permitted address."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``; raise :class:`DestinationRefused` if nothing permitted remains."""
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.permits(r["host"])]
        if not allowed:
            found = ", ".join(sorted({r["host"] for r in results}))
            raise DestinationRefused(f"{host} resolves to non-public addresses only ({found})")
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()
