"""URLs that name several Redis servers: Sentinels (``redis+sentinel://``) or cluster nodes.

``scheme://[[user]:password@]host[:port][,host[:port]...][/path][?query]``: the parts
common to both, split here once; :mod:`producer.redis.sentinel` and
:mod:`producer.redis.cluster` check what follows the hosts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True)
class HostsUrl:
    """The parts of a URL naming several servers."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    # The path's non-empty segments, unquoted.
    path: tuple[str, ...] = ()
    # The last value of each query parameter.
    query: dict[str, str] = field(default_factory=dict)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def refuse_parameters(self, known: frozenset[str] = frozenset()) -> None:
        """Raise ``ValueError`` naming the query parameters not in ``known``."""
        unknown = set(self.query) - known
        if unknown:
            raise ValueError(f"unknown {self.scheme}:// parameter(s): {', '.join(sorted(unknown))}")


def scheme_of(url: str) -> str:
    """The URL's scheme, lowercased (empty when it has none)."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


def split_hosts_url(url: str, default_port: int, role: str) -> HostsUrl:
    """Split ``url``; ``role`` names the servers in errors ("Sentinel", "cluster node").

    A host without a port gets ``default_port``; an IPv6 address is written in brackets.
    Raises ``ValueError`` saying what is wrong.
    """
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    return HostsUrl(
        scheme=parts.scheme.lower(),
        hosts=tuple(_address(host, default_port, role) for host in hosts.split(",")),
        path=tuple(unquote(segment) for segment in parts.path.split("/") if segment),
        query={name: values[-1] for name, values in parse_qs(parts.query).items()},
        username=unquote(username) or None,
        password=unquote(password) if password else None,
    )


def _address(text: str, default_port: int, role: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or text.endswith("]"):
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"{role} address {text!r} is not host:port")
    return host, int(port)
