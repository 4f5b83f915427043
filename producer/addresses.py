"""What an IP address is: public, or in which special-purpose range, and what it embeds.

The ranges are those of IANA's IPv4 and IPv6 special-purpose address registries that are
not globally reachable, written out here (not taken from :mod:`ipaddress`, whose
``is_global`` changes between Python versions) so that every process, whatever its
Python, applies the same rule and can name the range and the RFC in its refusals.

IPv6 addresses that stand for an IPv4 address (RFC 4291's mapped and compatible forms,
RFC 2765/6145's translated form, RFC 6052/8215's NAT64 prefixes, RFC 3056's 6to4 and
RFC 4380's Teredo) are judged by the IPv4 addresses they carry: a connection to them
ends at that IPv4 host.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

V4_MASK = 0xFFFFFFFF
# RFC 6052 section 2.2: the prefix lengths a NAT64 translator may use.
RFC6052_PREFIX_LENGTHS = (32, 40, 48, 56, 64, 96)


@dataclass(frozen=True)
class Range:
    """A range that is not globally reachable: ``it is <what> (<network>, <rfc>)``."""

    network: IPNetwork
    what: str
    rfc: str

    def describe(self) -> str:
        """The range as a refusal names it."""
        return f"{self.what} ({self.network}, {self.rfc})"


def _ranges(*rows: tuple[str, str, str]) -> tuple[Range, ...]:
    return tuple(Range(ipaddress.ip_network(net), what, rfc) for net, what, rfc in rows)


NON_PUBLIC_V4 = _ranges(
    ("0.0.0.0/8", "in 'this network' (0.0.0.0 reaches the local host)", "RFC 1122"),
    ("10.0.0.0/8", "in a private network", "RFC 1918"),
    ("100.64.0.0/10", "in the shared address space of carrier-grade NAT", "RFC 6598"),
    ("127.0.0.0/8", "loopback", "RFC 1122"),
    ("169.254.0.0/16", "link-local, where cloud metadata services answer", "RFC 3927"),
    ("172.16.0.0/12", "in a private network", "RFC 1918"),
    ("192.0.0.0/24", "reserved for IETF protocol assignments", "RFC 6890"),
    ("192.0.2.0/24", "reserved for documentation", "RFC 5737"),
    ("192.88.99.0/24", "the deprecated 6to4 relay anycast", "RFC 7526"),
    ("192.168.0.0/16", "in a private network", "RFC 1918"),
    ("198.18.0.0/15", "reserved for benchmarking", "RFC 2544"),
    ("198.51.100.0/24", "reserved for documentation", "RFC 5737"),
    ("203.0.113.0/24", "reserved for documentation", "RFC 5737"),
    ("224.0.0.0/4", "multicast", "RFC 5771"),
    ("255.255.255.255/32", "the limited broadcast address", "RFC 919"),
    ("240.0.0.0/4", "reserved", "RFC 1112"),
)

# ::/128 and ::1/128 come first: they lie inside the IPv4-compatible ::/96, and are
# judged as themselves, not by what they would embed.
NON_PUBLIC_V6 = _ranges(
    ("::/128", "the unspecified address", "RFC 4291"),
    ("::1/128", "loopback", "RFC 4291"),
    ("100::/64", "discard-only", "RFC 6666"),
    ("2001:db8::/32", "reserved for documentation", "RFC 3849"),
    ("2001::/23", "reserved for IETF protocol assignments", "RFC 2928"),
    ("3fff::/20", "reserved for documentation", "RFC 9637"),
    ("5f00::/16", "reserved for SRv6 segment identifiers", "RFC 9602"),
    ("fc00::/7", "unique-local", "RFC 4193"),
    ("fe80::/10", "link-local", "RFC 4291"),
    ("fec0::/10", "site-local (deprecated)", "RFC 3879"),
    ("ff00::/8", "multicast", "RFC 4291"),
)
GLOBAL_UNICAST = Range(
    ipaddress.IPv6Network("2000::/3"), "outside the global unicast space", "RFC 4291"
)


@dataclass(frozen=True)
class Embedding:
    """An IPv6 form that carries IPv4 addresses: ``<form> (<network>, <rfc>)``."""

    network: ipaddress.IPv6Network
    form: str
    rfc: str

    def describe(self) -> str:
        """The form as a refusal names it."""
        return f"{self.form} ({self.network}, {self.rfc})"


IPV4_MAPPED = Embedding(
    ipaddress.IPv6Network("::ffff:0:0/96"), "an IPv4-mapped address", "RFC 4291"
)
IPV4_TRANSLATED = Embedding(
    ipaddress.IPv6Network("::ffff:0:0:0/96"), "an IPv4-translated address", "RFC 2765, RFC 6145"
)
IPV4_COMPATIBLE = Embedding(
    ipaddress.IPv6Network("::/96"), "an IPv4-compatible address (deprecated)", "RFC 4291"
)
NAT64_WELL_KNOWN = Embedding(
    ipaddress.IPv6Network("64:ff9b::/96"), "an address in the NAT64 well-known prefix", "RFC 6052"
)
NAT64_LOCAL_USE = Embedding(
    ipaddress.IPv6Network("64:ff9b:1::/48"),
    "an address in the NAT64 local-use prefix",
    "RFC 8215, RFC 6052",
)
SIX_TO_FOUR = Embedding(ipaddress.IPv6Network("2002::/16"), "a 6to4 address", "RFC 3056")
TEREDO = Embedding(ipaddress.IPv6Network("2001::/32"), "a Teredo address", "RFC 4380")
EMBEDDINGS = (
    IPV4_MAPPED,
    IPV4_TRANSLATED,
    IPV4_COMPATIBLE,
    NAT64_WELL_KNOWN,
    NAT64_LOCAL_USE,
    SIX_TO_FOUR,
    TEREDO,
)


def rfc6052_extract(ip: ipaddress.IPv6Address, prefix_length: int) -> ipaddress.IPv4Address:
    """The IPv4 address embedded after a NAT64 prefix of ``prefix_length`` bits.

    RFC 6052 section 2.2: the 32 bits follow the prefix, skipping bits 64 to 71 (the
    "u" octet, kept zero for the interface identifier's sake); with /96 they are the
    last 32 bits.
    """
    if prefix_length not in RFC6052_PREFIX_LENGTHS:
        raise ValueError(f"RFC 6052 allows prefixes of {RFC6052_PREFIX_LENGTHS} bits")
    bits = int(ip)
    if prefix_length == 96:
        return ipaddress.IPv4Address(bits & V4_MASK)
    without_u = ((bits >> 64) << 56) | (bits & ((1 << 56) - 1))  # 120 bits
    return ipaddress.IPv4Address((without_u >> (120 - prefix_length - 32)) & V4_MASK)


def _local_use_lengths(ip: ipaddress.IPv6Address) -> tuple[int, ...]:
    """The prefix lengths an address of the local-use /48 could have been written with.

    The translator's prefix lies inside the /48, so it is /48 to /96; the shorter ones
    only when the u octet is zero, as RFC 6052 requires of them. Longest first: the /96
    form is the common one, and the one a refusal names first.
    """
    u_octet = (int(ip) >> 56) & 0xFF
    lengths = (n for n in RFC6052_PREFIX_LENGTHS if n >= 48 and (n == 96 or u_octet == 0))
    return tuple(sorted(lengths, reverse=True))


def embedded_ipv4(
    ip: ipaddress.IPv6Address,
) -> tuple[Embedding, tuple[ipaddress.IPv4Address, ...]] | None:
    """The form of an IPv6 address that carries IPv4 addresses, and those; None if none.

    Several for Teredo (server and client) and for the local-use NAT64 prefix (one per
    prefix length it may have been written with: the translator's is a local choice).
    """
    bits = int(ip)
    high = bits >> 32
    if high == 0xFFFF:
        return IPV4_MAPPED, (ipaddress.IPv4Address(bits & V4_MASK),)
    if high == 0xFFFF_0000:
        return IPV4_TRANSLATED, (ipaddress.IPv4Address(bits & V4_MASK),)
    if high == 0:
        return IPV4_COMPATIBLE, (ipaddress.IPv4Address(bits & V4_MASK),)
    if ip in NAT64_WELL_KNOWN.network:
        return NAT64_WELL_KNOWN, (rfc6052_extract(ip, 96),)
    if ip in NAT64_LOCAL_USE.network:
        found = dict.fromkeys(rfc6052_extract(ip, n) for n in _local_use_lengths(ip))
        return NAT64_LOCAL_USE, tuple(found)
    if ip in SIX_TO_FOUR.network:
        return SIX_TO_FOUR, (ipaddress.IPv4Address((bits >> 80) & V4_MASK),)
    if ip in TEREDO.network:
        server = ipaddress.IPv4Address((bits >> 64) & V4_MASK)
        client = ipaddress.IPv4Address(~bits & V4_MASK)  # stored inverted (obfuscated)
        return TEREDO, (server, client)
    return None


def special_range(ip: IPAddress) -> Range | None:
    """The non-public range ``ip`` itself lies in (what it embeds aside); None if none."""
    table = NON_PUBLIC_V4 if isinstance(ip, ipaddress.IPv4Address) else NON_PUBLIC_V6
    found = next((r for r in table if ip in r.network), None)
    if found is None and isinstance(ip, ipaddress.IPv6Address) and ip not in GLOBAL_UNICAST.network:
        return GLOBAL_UNICAST
    return found
