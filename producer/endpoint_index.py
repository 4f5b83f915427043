"""Which partition holds an endpoint, for lookups by endpoint id alone (PARTITIONS > 1).

An endpoint lives in its workspace's partition (:mod:`producer.partitioning`); a caller
that knows only its id (an operator's API key, the CLI, a worker's notification) finds
the partition in one small hash of partition 0 (``LAYOUT["endpoint_partitions"]``)
instead of probing every partition. With one partition there is no index: everything
is in partition 0, and the key layout stays what it was before partitions existed.
"""

from __future__ import annotations

from producer.partitioning import Partitions, stage_partition_count
from producer.redis.clients import RedisClient
from producer.redis_guard import stage_generation

# Ids whose partition a process remembers (an endpoint never changes partition; a
# deleted one's entry only sends a lookup to a partition that no longer has it).
MAX_REMEMBERED = 100_000


class EndpointIndex:
    """The home partition's index endpoint id -> partition."""

    def __init__(self, redis: RedisClient, partitions: Partitions) -> None:
        self._redis = redis
        self._partitions = partitions
        self._known: dict[str, int] = {}

    async def add(self, endpoint_id: str, partition: int) -> None:
        """Record the endpoint's partition before the endpoint is written there, with the
        generation marker (producer.redis_guard) and the partition count that a first
        endpoint writes: both live
        in partition 0, which the endpoint's own transaction may not reach on a cluster."""
        home = self._partitions.home
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(home.endpoint_partitions, endpoint_id, partition)
            stage_generation(pipe, home)
            stage_partition_count(pipe, home, self._partitions.count)
            await pipe.execute()
        self._remember(endpoint_id, partition)

    async def remove(self, endpoint_id: str) -> None:
        """Forget a deleted endpoint (after its partition no longer has it)."""
        await self._redis.hdel(self._partitions.home.endpoint_partitions, endpoint_id)
        self._known.pop(endpoint_id, None)

    async def locate(self, endpoint_id: str) -> int | None:
        """The partition of the endpoint, ``None`` if the index does not have it."""
        if endpoint_id in self._known:
            return self._known[endpoint_id]
        found = await self._redis.hget(self._partitions.home.endpoint_partitions, endpoint_id)
        if found is None:
            return None
        partition = int(found)
        if partition >= self._partitions.count:
            return None
        self._remember(endpoint_id, partition)
        return partition

    def _remember(self, endpoint_id: str, partition: int) -> None:
        if len(self._known) >= MAX_REMEMBERED:
            del self._known[next(iter(self._known))]
        self._known[endpoint_id] = partition
