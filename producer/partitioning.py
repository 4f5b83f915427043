"""Partitions of the hot state: which hash tag (hence which Redis Cluster slot) a key has.

With ``PARTITIONS`` = 1 every key has ``KEY_PREFIX`` as its prefix (``{cliq}``), as
before partitions existed: one slot, one shard. With more, partition 0 keeps that
prefix and partition k > 0 gets its own hash tag (``{cliq.<n>}``). An event, its
deliveries and the keys its scripts touch with them live in the partition of its
**workspace**: :func:`partition_of`, the CRC-32 of the UTF-8 workspace id modulo the
count, a hash that never changes between releases or processes. A workspace's
idempotency and FIFO order are then local to one slot, and a publish stays one script
call per partition (plus the claim of its event ids, in the partitions of the ids' own
hashes, that keeps an id one workspace's: :mod:`producer.claims`).

The tags of partitions 1..N-1 are chosen so that their slots fall in the N equal slot
ranges that partition 0's slot leaves free (the layout of ``redis-cli --cluster create``
and of the test harness): on a cluster whose primaries serve equal ranges, N partitions
land on N different primaries. Which tag a partition has depends only on the prefix and
N, never on the cluster, so every process agrees without asking it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import cached_property

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.redis.cluster import hash_tag
from producer.settings import SettingsError

# How far the search for a tag in a slot range goes: far beyond what any range of a
# cluster with up to 16384 primaries needs (a range of 1/N of the slots is hit within a
# few N tries on average).
MAX_TAG_SEARCH = 1_000_000


class PartitionCountChanged(SettingsError):
    """Redis holds state written with another ``PARTITIONS``: refused at startup
    (docs/operations.md, "Adding a shard", says how to drain and change it)."""

    def __init__(self, stored: int, configured: int) -> None:
        super().__init__(
            f"PARTITIONS={configured}, but this Redis holds data written with "
            f"PARTITIONS={stored}: drain it and change the stored count first "
            "(docs/operations.md, 'Adding a shard')"
        )
        self.stored = stored
        self.configured = configured


class TooFewPartitions(SettingsError):
    """On a cluster, fewer partitions than primaries leave primaries without work."""

    def __init__(self, partitions: int, primaries: int) -> None:
        super().__init__(
            f"PARTITIONS={partitions} on a Redis Cluster of {primaries} primaries: "
            f"some primaries would hold none of the hot state; set PARTITIONS={primaries} "
            "or more, or PARTITIONS_BELOW_PRIMARIES=1 to run so anyway"
        )


def partition_of(workspace_id: str, partitions: int) -> int:
    """The partition of a workspace: CRC-32 (zlib) of its UTF-8 id modulo ``partitions``."""
    if partitions == 1:
        return 0
    return zlib.crc32(workspace_id.encode()) % partitions


def _slot_range(slot: int, partitions: int) -> int:
    return slot * partitions // REDIS_CLUSTER_HASH_SLOTS


def partition_prefixes(prefix: str, partitions: int) -> tuple[str, ...]:
    """The key prefix of each partition; partition 0's is ``prefix`` itself.

    Without a hash tag in ``prefix`` (a plain Redis) partition k is ``<prefix>.<k>``.
    """
    tag = hash_tag(prefix)
    if partitions == 1:
        return (prefix,)
    if tag is None:
        return (prefix, *(f"{prefix}.{k}" for k in range(1, partitions)))
    taken = _slot_range(key_slot(prefix.encode()), partitions)
    free = [r for r in range(partitions) if r != taken]
    prefixes = [prefix]
    n = 0
    for wanted in free:
        while True:
            n += 1
            if n > MAX_TAG_SEARCH:
                raise ValueError(f"no hash tag found for {partitions} partitions")
            candidate = prefix.replace("{" + tag + "}", "{" + f"{tag}.{n}" + "}", 1)
            if _slot_range(key_slot(candidate.encode()), partitions) == wanted:
                prefixes.append(candidate)
                break
    return tuple(prefixes)


@dataclass(frozen=True)
class Partitions:
    """The key layout of every partition under one prefix."""

    prefix: str = "cliq"
    count: int = 1
    _all: tuple[Keys, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("PARTITIONS must be at least 1")
        keys = tuple(Keys(p) for p in partition_prefixes(self.prefix, self.count))
        object.__setattr__(self, "_all", keys)

    @property
    def all(self) -> tuple[Keys, ...]:
        """Each partition's keys, partition 0 first."""
        return self._all

    @property
    def home(self) -> Keys:
        """Partition 0: what is not per workspace (the stored partition count, users,
        tokens, sessions, API keys) and, with one partition, everything."""
        return self._all[0]

    def of(self, index: int) -> Keys:
        """The keys of partition ``index``."""
        return self._all[index]

    def for_workspace(self, workspace_id: str) -> Keys:
        """The keys of the partition a workspace's events and deliveries live in."""
        return self._all[partition_of(workspace_id, self.count)]

    @cached_property
    def slots(self) -> tuple[int, ...]:
        """The cluster slot of each partition."""
        return tuple(key_slot(keys.prefix.encode()) for keys in self._all)


def stage_partition_count(pipe: Pipeline | ClusterPipeline, home: Keys, count: int) -> None:
    """Add the storing of the partition ``count`` under partition 0's keys ``home``,
    unless one is stored, to ``pipe``: done with the first endpoint's creation (as the
    generation marker), so that a process that only starts writes nothing to Redis."""
    pipe.set(home.partitions, count, nx=True)


async def check_partitions(
    redis: RedisClient, partitions: Partitions, *, below_primaries: bool
) -> None:
    """Refuse to start on a Redis whose stored partition count differs from ``partitions``
    (:class:`PartitionCountChanged`; the first endpoint's creation stores it:
    :func:`stage_partition_count`), and on a cluster with more primaries than
    partitions unless ``below_primaries`` (:class:`TooFewPartitions`).

    A Redis without a stored count but with data of ours was written before partitions
    existed: with one partition, as this layout keeps it; it is stored as 1.
    """
    key = partitions.home.partitions
    stored = await redis.get(key)  # also what makes a cluster client learn its nodes
    if isinstance(redis, RedisCluster) and not below_primaries:
        primaries = len(redis.get_primaries())
        if primaries > partitions.count:
            raise TooFewPartitions(partitions.count, primaries)
    if stored is None:
        # One key per command: a multi-key command is refused while our slot migrates.
        home = partitions.home
        if not (await redis.exists(home.endpoints) or await redis.exists(home.ready)):
            return  # nothing written yet: the first endpoint stores the count
        await redis.set(key, 1, nx=True)
        stored = await redis.get(key)
    if stored is not None and int(stored) != partitions.count:
        raise PartitionCountChanged(int(stored), partitions.count)
