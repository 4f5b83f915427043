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

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from producer.redis.urls import scheme_of, split_hosts_url

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
        # redis-py before 8 leaves Sentinel's constructor untyped (8.x types it).
        manager = Sentinel(list(self.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call, unused-ignore]
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
    return scheme_of(url) == SCHEME


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse a ``redis+sentinel://`` URL; raises ``ValueError`` saying what is wrong."""
    if not is_sentinel_url(url):
        raise ValueError(f"not a {SCHEME}:// URL")
    parts = split_hosts_url(url, DEFAULT_SENTINEL_PORT, "Sentinel")
    if not parts.path or len(parts.path) > 2:
        raise ValueError(f"{SCHEME}:// URLs end with /<primary name>[/<db>]")
    try:
        db = int(parts.path[1]) if len(parts.path) == 2 else 0
    except ValueError:
        raise ValueError(f"database {parts.path[1]!r} is not a number") from None
    parts.refuse_parameters(frozenset({"sentinel_password"}))
    return SentinelUrl(
        sentinels=parts.hosts,
        primary=parts.path[0],
        db=db,
        username=parts.username,
        password=parts.password,
        sentinel_password=parts.query.get("sentinel_password"),
    )
