"""Redis behind Sentinel: ``redis+sentinel://`` URLs and clients of the primary they name.

``redis+sentinel://[[user]:password@]host:port[,host:port...]/<primary name>[/<db>]``
lists the Sentinels to ask (26379 when a port is left out) and the name they monitor
the primary under. The password is the primary's; ``?sentinel_password=...`` gives one
for the Sentinels themselves. A client asks a Sentinel for the primary's address each
time it opens a connection, and drops connections to a primary that became a replica,
so it follows a failover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
# Asking a Sentinel is a short exchange: one that does not answer in time is skipped.
SENTINEL_TIMEOUT_S = 5


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """A Sentinel pool that, like our plain one, waits for a free connection when full."""


class SentinelMasterClient(aioredis.Redis):
    """A client of the primary; closing it also closes its connections to the Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client, its pool and the Sentinel clients it asked for the primary."""
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


@dataclass(frozen=True)
class SentinelUrl:
    """What a ``redis+sentinel://`` URL names."""

    sentinels: tuple[tuple[str, int], ...]
    primary: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    def client(
        self, pool_class: type[SentinelConnectionPool] = SentinelConnectionPool, **options: Any
    ) -> aioredis.Redis:
        """A client of the current primary; ``options`` go to its connections (and pool)."""
        sentinel_options: dict[str, Any] = {
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
        }
        if self.sentinel_password is not None:
            sentinel_options["password"] = self.sentinel_password
        # redis-py leaves Sentinel's constructor untyped.
        manager = Sentinel(list(self.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
        client: aioredis.Redis = manager.master_for(
            self.primary,
            redis_class=SentinelMasterClient,
            connection_pool_class=pool_class,
            db=self.db,
            username=self.username,
            password=self.password,
            **options,
        )
        return client


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a Redis through its Sentinels."""
    return url.partition("://")[0].lower() == SCHEME


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a ``redis+sentinel://`` URL; raises ``ValueError`` saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme.lower() != SCHEME:
        raise ValueError(f"not a {SCHEME}:// URL")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    sentinels = tuple(_address(host) for host in hosts.split(","))
    path = [unquote(segment) for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2:
        raise ValueError(f"{SCHEME}:// URLs end with /<primary name>[/<db>]")
    try:
        db = int(path[1]) if len(path) == 2 else 0
    except ValueError:
        raise ValueError(f"database {path[1]!r} is not a number") from None
    query = parse_qs(parts.query)
    unknown = set(query) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown {SCHEME}:// parameter(s): {', '.join(sorted(unknown))}")
    return SentinelUrl(
        sentinels=sentinels,
        primary=path[0],
        db=db,
        username=unquote(username) or None,
        password=unquote(password) if password else None,
        sentinel_password=query["sentinel_password"][-1] if query else None,
    )


def _address(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or text.endswith("]"):
        host, port = text, str(DEFAULT_SENTINEL_PORT)
    host = host.strip("[]")  # an IPv6 address is written in brackets
    if not host or not port.isdigit():
        raise ValueError(f"Sentinel address {text!r} is not host:port")
    return host, int(port)
