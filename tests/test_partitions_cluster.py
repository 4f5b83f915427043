"""PARTITIONS=3 on the harness's 3-primary cluster: deliveries of many workspaces arrive,
and the Redis CPU they cost spreads over the three primaries (``INFO cpu`` before and
after, per primary; none carries more than 45% of the total)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.events import parse_event
from producer.partitioning import partition_of
from producer.settings import ProducerSettings
from producer.totals import hot_totals

from harness import Receiver
from harness.polling import wait_until
from harness.redis_cluster import RedisClusterServers, command
from support import start_worker, worker_env


def workspaces(per_partition: int) -> list[str]:
    """``per_partition`` workspaces of each of the 3 partitions: an equal load per
    partition, so that the shares measure the layout, not the luck of 30 hashes."""
    found: dict[int, list[str]] = {0: [], 1: [], 2: []}
    n = 0
    while any(len(names) < per_partition for names in found.values()):
        name = f"ws_{n}"
        if len(found[partition_of(name, 3)]) < per_partition:
            found[partition_of(name, 3)].append(name)
        n += 1
    return sorted(name for names in found.values() for name in names)


WORKSPACES = workspaces(10)
DELIVERIES = 3000
# The most one primary may carry of the deliveries' Redis CPU.
MAX_SHARE = 0.45


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """Three primaries sharing the slots evenly, as the harness forms them."""
    servers = RedisClusterServers(tmp_path_factory.mktemp("partitioned-cluster"))
    servers.start()
    try:
        yield servers
    finally:
        servers.close()


def cpu_seconds(port: int) -> float:
    """The Redis CPU (system + user) the node has used so far."""
    info = command(port, "INFO", "cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def test_three_partitions_spread_delivery_cpu_over_three_primaries(
    cluster: RedisClusterServers, receiver: Receiver
) -> None:
    for port in cluster.ports:
        command(port, "FLUSHALL")
    url = f"redis+cluster://127.0.0.1:{cluster.ports[0]}"
    env = {
        "REDIS_URL": url,
        "KEY_PREFIX": "{cliq}",
        "PARTITIONS": "3",
        "ALLOW_PRIVATE_DESTINATIONS": "1",
    }
    async with Producer(ProducerSettings.from_env(env)) as producer:
        await producer.check_partitions()
        for ws in WORKSPACES:
            await producer.endpoints.create(
                workspace_id=ws, url=receiver.url(), events=["*"], owner_email="o@example.com"
            )
        worker = await start_worker(worker_env(url, **{**env, "WORKER_CONCURRENCY": "100"}))
        try:
            before = {port: cpu_seconds(port) for port in cluster.ports}
            events = [
                parse_event(
                    {"type": "issue.created", "workspace_id": ws, "data": {"n": n}},
                    producer.catalogue,
                    max_payload_bytes=256 * 1024,
                )
                for n in range(DELIVERIES // len(WORKSPACES))
                for ws in WORKSPACES
            ]
            for start in range(0, len(events), 100):
                await producer.publisher.publish_many(events[start : start + 100])

            async def all_delivered() -> bool:
                totals = await hot_totals(producer.redis, producer.partitions, producer.dispatchers)
                return totals.stats.get(DeliveryState.DELIVERED.value, 0) == len(events)

            await wait_until(all_delivered, 120, 0.2, "not every delivery was recorded")
            after = {port: cpu_seconds(port) for port in cluster.ports}
        finally:
            await worker.stop()
        assert len(receiver.received) == len(events)
    holder = {cluster.owner(slot): k for k, slot in enumerate(producer.partitions.slots)}
    assert set(holder) == set(cluster.ports)  # one partition per primary
    used = {port: after[port] - before[port] for port in cluster.ports}
    total = sum(used.values())
    shares = {port: used[port] / total for port in cluster.ports}
    print(
        "Redis CPU per primary over",
        len(events),
        "deliveries:",
        ", ".join(
            f"partition {holder[port]} (port {port}): {used[port]:.3f} s ({shares[port]:.1%})"
            for port in sorted(cluster.ports, key=holder.__getitem__)
        ),
    )
    assert max(shares.values()) <= MAX_SHARE, shares
