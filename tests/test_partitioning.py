"""Partitions of the hot state: their key prefixes, which partition a workspace is in,
and the start-up checks (the stored count, a cluster's primaries) on real servers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.partitioning import (
    PartitionCountChanged,
    Partitions,
    TooFewPartitions,
    check_partitions,
    partition_of,
    partition_prefixes,
)
from producer.redis.clients import redis_client
from producer.settings import ProducerSettings, SettingsError

from harness.redis_cluster import RedisClusterServers, command, slot_of
from support import producer_for


def test_one_partition_keeps_the_names_of_a_single_shard() -> None:
    assert partition_prefixes("{cliq}", 1) == ("{cliq}",)
    assert Partitions("{cliq}").for_workspace("ws_1").event("evt_1") == "{cliq}:evt:evt_1"
    assert Partitions().home.stats == "cliq:stats"


def test_partition_zero_keeps_the_prefix_and_every_partition_has_its_own_tag() -> None:
    prefixes = partition_prefixes("{cliq}", 3)
    assert prefixes[0] == "{cliq}"
    assert len({slot_of(p) for p in prefixes}) == 3
    assert all(p.startswith("{cliq.") for p in prefixes[1:])
    assert partition_prefixes("cliq", 2) == ("cliq", "cliq.1")


@pytest.mark.parametrize("count", [2, 3, 4, 7, 16])
def test_n_partitions_fall_in_n_equal_slot_ranges(count: int) -> None:
    ranges = {slot_of(p) * count // 16384 for p in partition_prefixes("{cliq}", count)}
    assert ranges == set(range(count))


def test_the_workspace_hash_is_crc32_and_spreads() -> None:
    # Fixed values: the hash must never change between releases (data would move).
    assert [partition_of(f"ws_{n}", 3) for n in range(6)] == [1, 1, 2, 1, 0, 1]
    assert partition_of("anything", 1) == 0
    counts = Counter(partition_of(f"ws_{n}", 3) for n in range(3000))
    assert set(counts) == {0, 1, 2}
    assert min(counts.values()) > 900


def test_partitions_setting_defaults_to_one() -> None:
    assert ProducerSettings.from_env({}).partition_count == 1
    assert ProducerSettings.from_env({"PARTITIONS": "3"}).partitions == 3
    with pytest.raises(SettingsError, match="PARTITIONS"):
        ProducerSettings.from_env({"PARTITIONS": "0"})


async def test_the_first_endpoint_stores_the_count_and_another_count_is_refused(
    redis: aioredis.Redis, redis_url: str
) -> None:
    client = redis_client(redis_url)
    try:
        await check_partitions(client, Partitions(), below_primaries=False)
        assert await redis.dbsize() == 0  # a process that only starts writes nothing
        async with producer_for(redis_url) as producer:
            await producer.endpoints.create(
                workspace_id="ws_1",
                events=["issue.created"],
                url="http://127.0.0.1:9/",
                owner_email="ana@example.com",
            )
        assert await redis.get("cliq:partitions") == "1"
        await check_partitions(client, Partitions(), below_primaries=False)  # same: fine
        await redis.set("cliq:partitions", "3")
        with pytest.raises(PartitionCountChanged, match="PARTITIONS=3"):
            await check_partitions(client, Partitions(), below_primaries=False)
    finally:
        await client.aclose()


async def test_data_written_before_partitions_counts_as_one(
    redis: aioredis.Redis, redis_url: str
) -> None:
    await redis.zadd("cliq:eps", {"ep_1": 1})
    client = redis_client(redis_url)
    try:
        await check_partitions(client, Partitions(), below_primaries=False)
    finally:
        await client.aclose()
    assert await redis.get("cliq:partitions") == "1"


async def test_the_first_endpoint_of_three_partitions_stores_three(
    redis: aioredis.Redis, redis_url: str
) -> None:
    settings = ProducerSettings.from_env(
        {"REDIS_URL": redis_url, "PARTITIONS": "3", "ALLOW_PRIVATE_DESTINATIONS": "1"}
    )
    async with Producer(settings) as producer:
        await producer.check_partitions()
        assert await redis.dbsize() == 0
        await producer.endpoints.create(
            workspace_id="ws_1",
            events=["issue.created"],
            url="http://127.0.0.1:9/",
            owner_email="ana@example.com",
        )
    assert await redis.get("cliq:partitions") == "3"
    client = redis_client(redis_url)
    try:
        with pytest.raises(PartitionCountChanged, match="PARTITIONS=3"):
            await check_partitions(client, Partitions(), below_primaries=False)
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """Three primaries sharing the slots evenly, as the harness forms them."""
    servers = RedisClusterServers(Path(tmp_path_factory.mktemp("partitions-cluster")))
    servers.start()
    try:
        yield servers
    finally:
        servers.close()


def test_three_partitions_land_on_the_three_primaries(cluster: RedisClusterServers) -> None:
    owners = {cluster.owner(slot) for slot in Partitions("{cliq}", 3).slots}
    assert owners == set(cluster.ports)


def cluster_settings(cluster: RedisClusterServers, **env: str) -> ProducerSettings:
    for port in cluster.ports:
        command(port, "FLUSHALL")
    url = f"redis+cluster://127.0.0.1:{cluster.ports[0]}"
    return ProducerSettings.from_env({"REDIS_URL": url, "KEY_PREFIX": "{cliq}", **env})


async def test_fewer_partitions_than_primaries_are_refused_unless_allowed(
    cluster: RedisClusterServers,
) -> None:
    async with Producer(cluster_settings(cluster, PARTITIONS="1")) as producer:
        with pytest.raises(TooFewPartitions, match="3 primaries"):
            await producer.check_partitions()
    allowed = cluster_settings(cluster, PARTITIONS="1", PARTITIONS_BELOW_PRIMARIES="1")
    async with Producer(allowed) as producer:
        await producer.check_partitions()
        assert await producer.redis.get("{cliq}:partitions") is None  # stored with data
    # Not set: the single-partition layout of earlier releases, started as before.
    async with Producer(cluster_settings(cluster)) as producer:
        await producer.check_partitions()
