"""Which addresses a delivery may connect to.

The check runs on the addresses a host name resolves to, at connection time
(a resolver wrapped around aiohttp's), so a name that resolves to a public
address when registered and to 127.0.0.1 later (DNS rebinding) is still refused.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver


class DestinationRefused(OSError):
    """The destination is not a public address and private destinations are not allowed."""


def is_public(address: str) -> bool:
    """Whether ``address`` is a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_literal(host: str) -> None:
    """Refuse a URL host that is a non-public IP literal (aiohttp skips the resolver for them)."""
    try:
        public = is_public(host.strip("[]"))
    except ValueError:
        return  # a name: the resolver checks what it resolves to
    if not public:
        raise DestinationRefused(f"destination {host} is not a public address")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops every non-public address."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host``; raise :class:`DestinationRefused` if nothing public remains."""
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if is_public(r["host"])]
        if not allowed:
            found = ", ".join(sorted({r["host"] for r in results}))
            raise DestinationRefused(f"{host} resolves to non-public addresses only ({found})")
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()
