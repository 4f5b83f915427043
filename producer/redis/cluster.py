"""Redis Cluster: ``redis+cluster://`` URLs and clients that follow the slots.

``redis+cluster://[[user]:password@]host[:port][,host[:port]...]`` lists seed nodes
(6379 when a port is left out); ``rediss+cluster://`` reaches them over TLS, with the
``ssl_*`` parameters of a ``rediss://`` URL. A client asks the seeds which primary
serves which slot and follows ``MOVED``/``ASK`` redirections. Every key of ours shares
the hash tag of ``KEY_PREFIX`` (``{cliq}``), so all of them live in one slot: commands,
Lua scripts and transactions that touch many keys stay on one node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS

from producer.redis.urls import scheme_of, split_hosts_url

SCHEME = "redis+cluster"
TLS_SCHEME = "rediss+cluster"
DEFAULT_NODE_PORT = 6379
TLS_PARAMETERS = frozenset(
    {"ssl_ca_certs", "ssl_cert_reqs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"}
)


def hash_tag(prefix: str) -> str | None:
    """The hash tag of keys starting with ``prefix``, as Redis Cluster finds it, if any.

    Redis hashes only what is between the first ``{`` and the next ``}`` when that is not
    empty; a prefix without such a tag spreads our keys over many slots.
    """
    opening = prefix.find("{")
    closing = prefix.find("}", opening + 1)
    if opening < 0 or closing < 0 or closing == opening + 1:
        return None
    return prefix[opening + 1 : closing]


class BlockingRedisCluster(RedisCluster):
    """A cluster client that, like our blocking pool, makes a burst wait for a connection.

    redis-py's cluster client fails a command with ``MaxConnectionsError`` when its
    node's connections are all in use. Here at most ``max_connections`` commands and
    pipelines run at once, each holding one connection at a time (all our keys are on
    one node); the others wait up to ``timeout`` seconds (``None``: as long as it takes).
    """

    def __init__(self, *, max_connections: int, timeout: float | None, **options: Any) -> None:
        super().__init__(max_connections=max_connections, **options)
        self._turns = asyncio.Semaphore(max_connections)
        self._turn_timeout = timeout

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the ``max_connections`` turns while a command or pipeline runs."""
        try:
            async with asyncio.timeout(self._turn_timeout):
                await self._turns.acquire()
        except TimeoutError:
            raise redis_errors.ConnectionError("No connection available.") from None
        try:
            yield
        finally:
            self._turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Run one command in its turn."""
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        """A pipeline (``transaction=True``: MULTI/EXEC) that runs in its turn."""
        if shard_hint:
            raise redis_errors.RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py builds its own pipelines so too; its typing marks an attribute that
        # only the client sets as abstract.
        return BlockingClusterPipeline(self, transaction)  # type: ignore[abstract]

    def relearn_slots(self) -> None:
        """Read the slot map again before the next command.

        redis-py does so after a command's connection error, not after a pipeline's: a
        client whose first command after a failover is a pipeline would keep sending
        everything to the primary that died.
        """
        self._initialize = True

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        """Learn the slots from the seed nodes; failing to is a ``ConnectionError``.

        redis-py reports no seed answering, slots no node serves or a seed that is no
        cluster node as a ``RedisClusterException``, which callers would take for a bug
        rather than for a Redis they cannot use (the API answers 503 to that).
        """
        try:
            return await super().initialize(*args, **kwargs)
        except redis_errors.RedisClusterException as exc:
            raise redis_errors.ConnectionError(str(exc)) from exc


class BlockingClusterPipeline(ClusterPipeline):
    """A pipeline of a :class:`BlockingRedisCluster`, executed in one of its turns.

    A transaction sent to a node that no longer serves our slot (it moved) is refused
    whole (``MOVED``, then ``EXECABORT``: nothing applied). redis-py's cluster client
    follows ``MOVED`` for commands but not for transactions, so this one learns where the
    slot went and sends the transaction there, once. After a connection error the client
    reads the slot map again (:meth:`BlockingRedisCluster.relearn_slots`).
    """

    __slots__ = ("_is_transaction", "_owner", "_queued")

    def __init__(self, client: BlockingRedisCluster, transaction: bool | None) -> None:
        super().__init__(client, transaction)
        self._owner = client
        self._is_transaction = bool(transaction)
        self._queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Queue a command (and remember it, to send the transaction again)."""
        self._queued.append((args, kwargs))
        return super().execute_command(*args, **kwargs)

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        """Send the queued commands once a turn is free."""
        queued, self._queued = self._queued, []
        async with self._owner.turn():
            try:
                return await self._send(queued, raise_on_error, allow_redirections)
            except RedisCluster.ERRORS_ALLOW_RETRY:
                self._owner.relearn_slots()
                raise

    async def _send(
        self,
        queued: list[tuple[tuple[Any, ...], dict[str, Any]]],
        raise_on_error: bool,
        allow_redirections: bool,
    ) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except redis_errors.MovedError as moved:
            if not self._is_transaction:
                raise
            await self._owner.nodes_manager.move_slot(moved)
            for args, kwargs in queued:
                super().execute_command(*args, **kwargs)
            return await super().execute(raise_on_error, allow_redirections)


@dataclass(frozen=True)
class ClusterUrl:
    """What a ``redis+cluster://`` or ``rediss+cluster://`` URL names."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # rediss+cluster://: TLS, with these options (ssl_ca_certs=..., ...).
    tls: dict[str, Any] | None = None

    def client(
        self, *, max_connections: int, timeout: float | None = None, **options: Any
    ) -> BlockingRedisCluster:
        """A client of the cluster; ``options`` go to its connections."""
        tls: dict[str, Any] = {"ssl": True, **self.tls} if self.tls is not None else {}
        return BlockingRedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in self.nodes],
            # Always ask the seeds named in the URL for the slots: they may be names (a
            # service's configuration endpoint) behind which the nodes change address.
            dynamic_startup_nodes=False,
            username=self.username,
            password=self.password,
            max_connections=max_connections,
            timeout=timeout,
            **tls,
            **options,
        )


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster."""
    return scheme_of(url) in {SCHEME, TLS_SCHEME}


def parse_cluster_url(url: str) -> ClusterUrl:
    """Parse a ``redis+cluster://`` URL; raises ``ValueError`` saying what is wrong."""
    if not is_cluster_url(url):
        raise ValueError(f"not a {SCHEME}:// or {TLS_SCHEME}:// URL")
    parts = split_hosts_url(url, DEFAULT_NODE_PORT, "cluster node")
    if parts.path not in {(), ("0",)}:
        raise ValueError("a cluster has database 0 only: nothing may follow the nodes but /0")
    tls = parts.scheme == TLS_SCHEME
    parts.refuse_parameters(TLS_PARAMETERS if tls else frozenset())
    # Typed as in a rediss:// URL (e.g. ssl_check_hostname=false).
    options = {
        name: URL_QUERY_ARGUMENT_PARSERS.get(name, str)(value)
        for name, value in parts.query.items()
    }
    return ClusterUrl(
        nodes=parts.hosts,
        username=parts.username,
        password=parts.password,
        tls=options if tls else None,
    )
