"""Where deliveries may go: the destination policy (the SSRF guard), one rule for all.

The API, the CLI and the dashboard apply it when an endpoint is registered or its URL
changed (:class:`RegistrationCheck`: an IP literal, or every address its name resolves
to), and the workers apply it again on every connection (:class:`GuardedResolver`:
the addresses a name resolves to then, so a name that was public when registered and
resolves to 127.0.0.1 later, DNS rebinding, is still refused). Both read the same
settings, ``ALLOW_PRIVATE_DESTINATIONS`` and ``ALLOWED_PRIVATE_NETWORKS``
(:mod:`producer.settings`); which addresses are public is :mod:`producer.addresses`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from producer.addresses import IPAddress, IPNetwork, embedded_ipv4, special_range

# How long registration waits for a name to resolve.
RESOLVE_TIMEOUT_S = 5.0
HOW_TO_ALLOW = (
    "set ALLOW_PRIVATE_DESTINATIONS=1, or add its network to ALLOWED_PRIVATE_NETWORKS, "
    "to deliver there"
)


class DestinationRefused(OSError):
    """The destination is not a public address and no allowlist entry covers it.

    An ``OSError``: raised from inside aiohttp's connector, it fails the connection.
    """


def parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDR blocks (or single addresses) allowed despite being private."""
    entries = (entry.strip() for entry in raw.split(","))
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries if entry)


def parse_address(text: str) -> IPAddress:
    """An IP address as a URL or a resolver writes it (brackets, ``%zone`` allowed)."""
    return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])


def is_legacy_ipv4(host: str) -> bool:
    """Whether ``host`` is an IPv4 address written other than as four decimal numbers.

    ``2130706433``, ``127.1``, ``0177.0.0.1`` or ``0x7f.0.0.1``: ``inet_aton`` reads
    them as addresses, and aiohttp refuses the all-digit ones ("not a canonical IPv4
    address") on every attempt.
    """
    if not host or ":" in host:
        return False
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return False
    if host.replace(".", "").isdigit():
        return True
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


class DestinationPolicy:
    """Public addresses, plus the networks of an operator's allowlist."""

    def __init__(self, allowed: Sequence[IPNetwork] = ()) -> None:
        self._allowed = tuple(allowed)

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why a connection to ``address`` is refused (``loopback (127.0.0.0/8, RFC
        1122)``); None when it is permitted."""
        ip = parse_address(address) if isinstance(address, str) else address
        if any(ip.version == net.version and ip in net for net in self._allowed):
            return None
        # :: and ::1 are judged as themselves, not as IPv4-compatible forms (int 0, 1).
        if isinstance(ip, ipaddress.IPv6Address) and int(ip) > 1:
            embedding = embedded_ipv4(ip)
            if embedding is not None:
                form, inner = embedding
                refused = [(v4, self.refusal(v4)) for v4 in inner]
                reasons = [f"for {v4}, which is {why}" for v4, why in refused if why]
                return f"{form.describe()} " + "; and ".join(reasons) if reasons else None
        found = special_range(ip)
        return None if found is None else found.describe()

    def permits(self, address: str | IPAddress) -> bool:
        """Whether a connection to ``address`` may be made."""
        return self.refusal(address) is None

    def check_literal(self, host: str) -> None:
        """Refuse a URL host that is a non-permitted IP literal (names are resolved)."""
        try:
            why = self.refusal(host)
        except ValueError:
            return
        if why is not None:
            raise DestinationRefused(f"destination {host} is not a public address: it is {why}")


def is_public(address: str | IPAddress) -> bool:
    """Whether ``address`` is a globally reachable unicast address (no allowlist)."""
    return DestinationPolicy().permits(address)


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
            found = sorted({r["host"] for r in results})
            why = "; ".join(f"{a} is {self._policy.refusal(a)}" for a in found)
            raise DestinationRefused(f"{host} resolves to non-public addresses only: {why}")
        return allowed

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


class RegistrationCheck:
    """The policy applied to an endpoint's URL host when it is registered or changed.

    ``policy`` None allows everything (``ALLOW_PRIVATE_DESTINATIONS=1``): nothing is
    resolved then. Otherwise an IP literal must be permitted, and a name must resolve
    (within :data:`RESOLVE_TIMEOUT_S`) to permitted addresses only: a name that does not
    resolve is refused too, since what it will reach cannot be checked.
    """

    def __init__(
        self,
        policy: DestinationPolicy | None,
        resolver: AbstractResolver | None = None,
        timeout_s: float = RESOLVE_TIMEOUT_S,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._timeout_s = timeout_s

    async def check(self, host: str, port: int) -> None:
        """Raise :class:`DestinationRefused` naming the rule if ``host`` is not allowed."""
        policy = self._policy
        if policy is None:
            return
        try:
            why = policy.refusal(host)
        except ValueError:
            pass  # a name
        else:
            if why is not None:
                raise DestinationRefused(
                    f"destination {host} is not a public address: it is {why}; {HOW_TO_ALLOW}"
                )
            return
        for address in await self._resolve(host, port):
            why = policy.refusal(address)
            if why is not None:
                raise DestinationRefused(
                    f"destination {host} resolves to {address}, which is not a public "
                    f"address: it is {why}; {HOW_TO_ALLOW}"
                )

    async def _resolve(self, host: str, port: int) -> list[str]:
        """Every address ``host`` resolves to, IPv4 and IPv6 alike (as workers connect)."""
        if self._resolver is None:
            self._resolver = DefaultResolver()  # needs the running loop: made on first use
        try:
            async with asyncio.timeout(self._timeout_s):
                results = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except TimeoutError:
            raise DestinationRefused(
                f"destination {host} did not resolve within {self._timeout_s:g} s, so it "
                "cannot be checked; register it once its DNS answers"
            ) from None
        except OSError as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise DestinationRefused(
                f"destination {host} does not resolve ({reason}), so it cannot be checked; "
                "register it once its DNS answers"
            ) from None
        addresses = list(dict.fromkeys(r["host"] for r in results))
        if not addresses:
            raise DestinationRefused(f"destination {host} resolves to no address")
        return addresses

    async def close(self) -> None:
        """Close the resolver, if one was made."""
        if self._resolver is not None:
            await self._resolver.close()
