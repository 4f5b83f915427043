"""Which Redis a URL names, decided here once, and the clients we build for it.

Three kinds: one server (``redis://``, ``rediss://``), the primary that Sentinels name
(``redis+sentinel://``) and a Redis Cluster (``redis+cluster://``, ``rediss+cluster://``).
Every client of the project comes from this module: the project's own
(:func:`redis_client`), bullmq's (:func:`bullmq_connection`) and the readiness probe's
(:func:`probe_client`).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff

from producer.backoff import RECONNECT_BASE_S, RECONNECT_CAP_S, RECONNECT_TRIES
from producer.redis.cluster import SCHEME as CLUSTER_SCHEME
from producer.redis.cluster import TLS_SCHEME as CLUSTER_TLS_SCHEME
from producer.redis.cluster import parse_cluster_url
from producer.redis.sentinel import SCHEME as SENTINEL_SCHEME
from producer.redis.sentinel import BlockingSentinelPool, parse_sentinel_url
from producer.redis.urls import scheme_of

RedisClient: TypeAlias = aioredis.Redis | RedisCluster
"""Our clients: of one server (or of the primary that Sentinels name), or of a cluster."""

# No command of ours blocks: a reply slower than this means Redis is in trouble.
REDIS_TIMEOUT_S = 10
MAX_CONNECTIONS = 50
# A readiness check gives up after this long (API and workers alike).
PROBE_TIMEOUT_S = 2.0
# Readiness checks running at once on a cluster; more wait their turn (within the above).
PROBE_CONNECTIONS = 4


class RedisKind(Enum):
    """What a Redis URL names."""

    SERVER = "server"
    SENTINEL = "sentinel"
    CLUSTER = "cluster"


def kind_of(url: str) -> RedisKind:
    """The kind of Redis ``url`` names, from its scheme."""
    scheme = scheme_of(url)
    if scheme == SENTINEL_SCHEME:
        return RedisKind.SENTINEL
    if scheme in {CLUSTER_SCHEME, CLUSTER_TLS_SCHEME}:
        return RedisKind.CLUSTER
    return RedisKind.SERVER


def check_url(url: str) -> str:
    """``url`` itself; raises ``ValueError`` for a malformed Sentinel or cluster URL (a
    server's URL is checked on connecting)."""
    kind = kind_of(url)
    if kind is RedisKind.SENTINEL:
        parse_sentinel_url(url)
    elif kind is RedisKind.CLUSTER:
        parse_cluster_url(url)
    return url


def _client(url: str, options: dict[str, Any], *, pooled: bool = False) -> RedisClient:
    """A client of the Redis ``url`` names; ``options`` go to its connections (and pool).

    ``pooled``: on one server, a blocking pool of ``max_connections`` rather than
    redis-py's default pool (a Sentinel client gets the blocking pool alike).
    """
    kind = kind_of(url)
    if kind is RedisKind.SENTINEL:
        if pooled:
            return parse_sentinel_url(url).client(BlockingSentinelPool, **options)
        return parse_sentinel_url(url).client(**options)
    if kind is RedisKind.CLUSTER:
        return parse_cluster_url(url).client(**options)
    if pooled:
        pool = aioredis.BlockingConnectionPool(**parse_url(url), **options)
        return aioredis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
    return aioredis.Redis.from_url(url, **options)


def redis_client(redis_url: str) -> RedisClient:
    """The project's own Redis client: text replies, bounded waits, no silent retries.

    Commands are not retried after a lost connection: a publish script whose reply was
    lost must surface as an error (the caller retries with the same event ids), not
    run again and report the events as duplicates. Workers recover through bullmq,
    which runs a failed batch job again. A ``redis+sentinel://`` URL gives a client of
    the primary its Sentinels name, with the same blocking pool; a ``redis+cluster://``
    URL a cluster client that makes a burst wait alike.
    """
    options: dict[str, Any] = {
        # A blocking pool: a burst of concurrent commands waits for a connection instead
        # of failing with "Too many connections" (redis-py's default pool allows 100).
        "max_connections": MAX_CONNECTIONS,
        "timeout": REDIS_TIMEOUT_S,
        "decode_responses": True,
        "socket_timeout": REDIS_TIMEOUT_S,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "retry": Retry(NoBackoff(), 0),
    }
    return _client(redis_url, options, pooled=True)


def bullmq_connection(redis_url: str) -> RedisClient:
    """A client for one bullmq queue or worker, of the server, Sentinel's primary or
    cluster that ``redis_url`` names: a fresh one per call, as bullmq builds one per
    options dict.

    Pooled, also on one server: given options, bullmq builds a single-connection client,
    on which every command of the worker (each job's move to active and to completed, the
    lock renewals) waits for the one before it to be answered; a busy worker then spent
    most of its time in that line (moves of 100+ ms at 16 jobs in progress), not
    delivering. bullmq uses the client it is given for both its main and its blocking
    connection and closes it twice (harmless): the blocking wait holds one connection of
    the pool. The retries are those bullmq sets on clients it builds itself; they also
    carry it over a failover.

    ``socket_timeout=None``: redis-py 8 defaults to 5 s, as long as bullmq's blocking
    wait, which made idle workers time out, reconnect and notice new jobs 16-30 s late.
    """
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": None,
        "socket_keepalive": True,
        "retry": Retry(
            ExponentialBackoff(cap=RECONNECT_CAP_S, base=RECONNECT_BASE_S), RECONNECT_TRIES
        ),
        "retry_on_error": [
            redis_errors.BusyLoadingError,
            redis_errors.ConnectionError,
            redis_errors.TimeoutError,
        ],
    }
    if kind_of(redis_url) is RedisKind.CLUSTER:
        options["max_connections"] = MAX_CONNECTIONS
    return _client(redis_url, options)


def probe_client(redis_url: str) -> RedisClient:
    """A client for readiness checks: no retries, so an outage shows within the timeout."""
    options: dict[str, Any] = {
        "socket_connect_timeout": PROBE_TIMEOUT_S,
        "socket_timeout": PROBE_TIMEOUT_S,
        "retry": Retry(NoBackoff(), 0),
    }
    if kind_of(redis_url) is RedisKind.CLUSTER:
        options["max_connections"] = PROBE_CONNECTIONS
    return _client(redis_url, options)


async def server_of(client: RedisClient, key: str) -> dict[str, Any]:
    """Options that send a command to the server holding ``key``: on a cluster, the
    primary serving its slot (``target_nodes``); nothing for a single server.

    A cluster client sends a keyless command (``PING``, ``CONFIG GET``) to any one node,
    which may answer while the one holding our data is down, or be configured otherwise.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        return {"target_nodes": client.get_node_from_key(key)}
    return {}


async def ping(client: RedisClient, key: str) -> bool:
    """``PING`` the server that holds ``key`` (see :func:`server_of`)."""
    return bool(await client.ping(**await server_of(client, key)))
