"""Redis Cluster: ``redis+cluster://`` URLs work for the producer, the workers and the API.

A real cluster of three primaries, each a private ``redis-server --cluster-enabled yes``
on a free 127.0.0.1 port, stopped by its own PID. The URL names only a node that does not
serve the slot of ``{cliq}``: every client has to follow the slots from its first command.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from aiohttp.test_utils import TestClient, TestServer

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.events import Event
from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.redis.clients import (
    MAX_CONNECTIONS,
    bullmq_connection,
    ping,
    probe_client,
    redis_client,
)
from producer.redis.cluster import BlockingRedisCluster, ClusterUrl, hash_tag, parse_cluster_url
from producer.redis.errors import REDIS_UNAVAILABLE_ERRORS
from producer.redis_guard import RedisEvictingError
from producer.settings import ProducerSettings, SettingsError, without_password
from worker.service import WorkerService
from worker.settings import WorkerSettings

from harness import Receiver, RedisServer
from harness.polling import wait_until
from harness.redis_cluster import RedisClusterServers, command, slot_of
from harness.redis_server import ClusterNodeServer, free_port
from harness.tls import self_signed
from support import RunningWorker, make_event, start_worker, worker_env

PREFIX = "{cliq}"
SLOT = slot_of(PREFIX)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """Three primaries sharing the slots, for the tests of this module."""
    servers = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    servers.start()
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def cluster_url(cluster: RedisClusterServers) -> str:
    """The emptied cluster's URL, naming one node that does not serve our slot."""
    return f"redis+cluster://127.0.0.1:{seed_node(cluster).port}"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_cluster(
    tmp_path_factory: pytest.TempPathFactory, tls_files: tuple[Path, Path]
) -> Iterator[RedisClusterServers]:
    """Three primaries that also serve TLS clients and speak TLS among themselves."""
    servers = RedisClusterServers(tmp_path_factory.mktemp("tls-cluster"), tls=tls_files)
    servers.start()
    try:
        yield servers
    finally:
        servers.close()


def seed_node(cluster: RedisClusterServers) -> ClusterNodeServer:
    """Empty the cluster; the node to name in its URL: one that does not serve our slot."""
    for port in cluster.ports:
        command(port, "FLUSHALL")
    return next(node for node in cluster.nodes if node.port != cluster.owner(SLOT))


@pytest.fixture
async def producer(cluster_url: str) -> AsyncIterator[Producer]:
    """A producer whose keys carry the hash tag, on the cluster."""
    async with Producer(ProducerSettings.from_env(env(cluster_url))) as p:
        yield p


def env(url: str, **overrides: str) -> dict[str, str]:
    """Settings for the cluster: its URL and a hash-tag prefix."""
    return {"REDIS_URL": url, "KEY_PREFIX": PREFIX, "ALLOW_PRIVATE_DESTINATIONS": "1", **overrides}


def keys_per_node(cluster: RedisClusterServers) -> dict[int, int]:
    """How many keys each node holds, by port."""
    return {port: int(command(port, "DBSIZE")) for port in cluster.ports}


async def subscribe(producer: Producer, receiver: Receiver) -> None:
    await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )


async def deliver(producer: Producer, receiver: Receiver, count: int, label: str) -> None:
    """Publish ``count`` events (retrying a publish that failed, as API callers do after a
    503); wait until the receiver got each of them and the worker recorded it."""
    before = len(receiver.received)
    events = [make_event(producer, data={label: n}) for n in range(count)]
    for event in events:

        async def published(event: Event = event) -> bool:
            try:
                await producer.publisher.publish(event)
            except REDIS_UNAVAILABLE_ERRORS:
                return False
            return True

        await wait_until(published, 20, interval=0.1, message=f"could not publish {event.id}")
    got = await receiver.wait_for(before + count, 30)
    assert {request.json()["id"] for request in got[before:]} == {e.id for e in events}

    async def recorded() -> bool:
        for event in events:
            (delivery,) = await producer.deliveries.for_event(event.id)
            if delivery.state != DeliveryState.DELIVERED:
                return False
        return True

    await wait_until(recorded, 10, interval=0.05, message="the deliveries were not recorded")


# -- URLs and settings -----------------------------------------------------------------


def test_a_cluster_url_names_the_seed_nodes() -> None:
    assert parse_cluster_url(
        "redis+cluster://:s%40cret@10.0.0.1:7000,[::1],node.example:7001"
    ) == ClusterUrl(
        nodes=(("10.0.0.1", 7000), ("::1", 6379), ("node.example", 7001)), password="s@cret"
    )
    assert parse_cluster_url("redis+cluster://user:pw@10.0.0.1/0") == ClusterUrl(
        nodes=(("10.0.0.1", 6379),), username="user", password="pw"
    )
    tls = parse_cluster_url(
        "rediss+cluster://10.0.0.1:7000?ssl_ca_certs=/ca.pem&ssl_check_hostname=false"
    )
    assert tls.tls == {"ssl_ca_certs": "/ca.pem", "ssl_check_hostname": False}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+cluster://127.0.0.1:7000/1", "database 0 only"),
        ("redis+cluster://127.0.0.1:port", "not host:port"),
        ("redis+cluster://127.0.0.1:7000,", "not host:port"),
        ("redis+cluster://127.0.0.1?ssl_ca_certs=/ca.pem", "unknown"),
        ("rediss+cluster://127.0.0.1?db=1", "unknown"),
    ],
)
def test_a_malformed_cluster_url_is_refused_by_the_settings(url: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem) as caught:
        ProducerSettings.from_env(env(url.replace("127.0.0.1", ":pw@127.0.0.1")))
    assert "pw" not in str(caught.value)  # the URL may hold a password: never echoed


@pytest.mark.parametrize(
    ("prefix", "tag"),
    [("{cliq}", "cliq"), ("app{x}", "x"), ("{cliq", None), ("cliq", None), ("{}cliq", None)],
)
def test_the_hash_tag_is_found_as_redis_finds_it(prefix: str, tag: str | None) -> None:
    assert hash_tag(prefix) == tag
    if tag is not None:
        assert slot_of(f"{prefix}:evt:1") == slot_of(f"{prefix}:deliveries:wait")


@pytest.mark.parametrize("prefix", ["cliq", "{}cliq"])
def test_a_prefix_without_a_hash_tag_is_refused_at_startup(prefix: str) -> None:
    url = "redis+cluster://127.0.0.1:7000"
    for read in (ProducerSettings.from_env, WorkerSettings.from_env, ApiSettings.from_env):
        with pytest.raises(SettingsError, match=r"KEY_PREFIX=.*needs a hash tag, e\.g\. \{cliq\}"):
            read(env(url, KEY_PREFIX=prefix))
    # Only a cluster needs one.
    ProducerSettings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0", "KEY_PREFIX": prefix})


def test_the_password_of_a_cluster_url_is_masked() -> None:
    assert (
        without_password("redis+cluster://user:s3cret@10.0.0.1:7000,10.0.0.2:7000")
        == "redis+cluster://user:***@10.0.0.1:7000,10.0.0.2:7000"
    )


# -- against the cluster ---------------------------------------------------------------


async def test_the_clients_follow_the_slots_from_a_node_that_does_not_serve_ours(
    cluster: RedisClusterServers, cluster_url: str
) -> None:
    (seed,) = parse_cluster_url(cluster_url).nodes
    assert seed[1] != cluster.owner(SLOT)  # the seed answers our keys with MOVED
    own, probe, for_bullmq = redis_client(cluster_url), probe_client(cluster_url), None
    try:
        for_bullmq = bullmq_connection(cluster_url)
        assert isinstance(own, BlockingRedisCluster)
        assert isinstance(for_bullmq, BlockingRedisCluster)
        assert await own.set(f"{PREFIX}:seen", "yes")
        assert await for_bullmq.get(f"{PREFIX}:seen") == "yes"
        assert await ping(probe, PREFIX)
        assert keys_per_node(cluster)[cluster.owner(SLOT)] == 1

        # A burst larger than a node's connections waits for them instead of failing
        # (redis-py's cluster client would raise MaxConnectionsError), as with one server.
        burst = 3 * MAX_CONNECTIONS
        counts = await asyncio.gather(*(own.incr(f"{PREFIX}:n") for _ in range(burst)))
        assert sorted(counts) == list(range(1, burst + 1))

        async def transaction() -> list[Any]:
            async with own.pipeline(transaction=True) as pipe:
                pipe.incr(f"{PREFIX}:t")
                pipe.expire(f"{PREFIX}:t", 60)
                return await pipe.execute()

        results = await asyncio.gather(*(transaction() for _ in range(burst)))
        assert sorted(count for count, _ in results) == list(range(1, burst + 1))
    finally:
        await own.aclose()
        await probe.aclose()
        if isinstance(for_bullmq, BlockingRedisCluster):
            await for_bullmq.aclose()
            await for_bullmq.aclose()  # bullmq closes it twice: harmless


@pytest.fixture
async def cluster_worker(
    producer: Producer, receiver: Receiver, tmp_path: Path
) -> AsyncIterator[RunningWorker]:
    """A worker on the cluster, and an endpoint of ``producer``'s sending to ``receiver``."""
    await subscribe(producer, receiver)
    worker = await start_worker(
        worker_env(producer.settings.redis_url, KEY_PREFIX=PREFIX, NOTIFY_OUTBOX=str(tmp_path))
    )
    yield worker
    assert await worker.stop() == 0


@pytest.mark.usefixtures("cluster_worker")
async def test_publish_retry_and_deliver_through_a_cluster(
    cluster: RedisClusterServers, producer: Producer, receiver: Receiver
) -> None:
    await deliver(producer, receiver, 5, "n")
    receiver.respond(status=500)  # the first attempt fails, the retry is delivered
    failed = await producer.publisher.publish(make_event(producer, data={"retried": True}))

    async def retried() -> bool:
        (delivery,) = await producer.deliveries.for_event(failed.event_id)
        return delivery.state == DeliveryState.DELIVERED

    await wait_until(retried, 15, interval=0.1, message="the failed delivery was not retried")
    (delivery,) = await producer.deliveries.for_event(failed.event_id)
    assert [attempt.status for attempt in delivery.attempts] == [500, 200]
    # Every key, ours and bullmq's, is in our slot, on the node that serves it.
    per_node = keys_per_node(cluster)
    assert per_node.pop(cluster.owner(SLOT)) > 0
    assert set(per_node.values()) == {0}


async def test_the_api_is_ready_and_publishes_on_a_cluster(cluster_url: str) -> None:
    client = TestClient(
        TestServer(create_app(ApiSettings.from_env(env(cluster_url))), host="127.0.0.1", port=0)
    )
    await client.start_server()
    try:
        ready = await client.get("/readyz")
        assert (ready.status, await ready.json()) == (200, {"status": "ready"})
        event = {"type": "issue.created", "workspace_id": "ws_1", "data": {"n": 1}}
        assert (await client.post("/v1/events", json=event)).status == 202
    finally:
        await client.close()


async def test_an_unreachable_cluster_is_503_not_a_server_error() -> None:
    url = f"redis+cluster://127.0.0.1:{free_port()}"
    client = TestClient(
        TestServer(create_app(ApiSettings.from_env(env(url))), host="127.0.0.1", port=0)
    )
    await client.start_server()
    try:
        assert (await client.get("/readyz")).status == 503
        event = {"type": "issue.created", "workspace_id": "ws_1", "data": {"n": 1}}
        response = await client.post("/v1/events", json=event)
        assert response.status == 503
        assert (await response.json())["type"].endswith("redis-unavailable")
    finally:
        await client.close()


async def test_publish_and_deliver_through_a_tls_cluster(
    tls_cluster: RedisClusterServers,
    tls_files: tuple[Path, Path],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    cert, _key = tls_files
    seed = seed_node(tls_cluster).tls_port
    url = f"rediss+cluster://127.0.0.1:{seed}?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    async with Producer(ProducerSettings.from_env(env(url))) as producer:
        await subscribe(producer, receiver)
        worker = await start_worker(worker_env(url, KEY_PREFIX=PREFIX, NOTIFY_OUTBOX=str(tmp_path)))
        try:
            await deliver(producer, receiver, 3, "tls")
        finally:
            assert await worker.stop() == 0

    # A certificate that is not trusted (the system CAs do not know it) is refused.
    untrusted = url.split("&ssl_ca_certs=")[0]
    async with Producer(ProducerSettings.from_env(env(untrusted))) as producer:
        with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
            await producer.redis.ping()


async def test_a_cluster_url_naming_a_server_that_is_no_cluster_node_fails_clearly(
    redis_server: RedisServer,
) -> None:
    url = f"redis+cluster://127.0.0.1:{redis_server.port}"
    async with Producer(ProducerSettings.from_env(env(url))) as producer:
        with pytest.raises(redis.exceptions.ConnectionError, match="Cluster mode is not enabled"):
            await producer.redis.ping()


async def test_deliveries_go_on_after_a_failover_to_a_replica(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, tmp_path: Path
) -> None:
    """Our slot's primary dies; its replica takes over; clients find it through the seed."""
    servers = RedisClusterServers(tmp_path_factory.mktemp("failover"), node_timeout_ms=1000)
    servers.start()
    try:
        primary = servers.owner(SLOT)
        replica = servers.add_replica(primary).port
        seed = next(port for port in servers.ports if port not in (primary, replica))
        url = f"redis+cluster://127.0.0.1:{seed}"
        async with Producer(ProducerSettings.from_env(env(url))) as producer:
            await subscribe(producer, receiver)
            worker = await start_worker(
                worker_env(url, KEY_PREFIX=PREFIX, NOTIFY_OUTBOX=str(tmp_path))
            )
            try:
                await deliver(producer, receiver, 3, "before")
                servers.node(primary).kill()
                await wait_until(
                    lambda: servers.owner(SLOT, asked=seed) == replica,
                    20,
                    interval=0.1,
                    message="the replica did not take over",
                )
                await deliver(producer, receiver, 3, "after")
            finally:
                assert await worker.stop() == 0
    finally:
        servers.close()


@pytest.mark.usefixtures("cluster_worker")
async def test_deliveries_go_on_after_the_slot_moves_to_another_primary(
    cluster: RedisClusterServers, producer: Producer, receiver: Receiver
) -> None:
    await deliver(producer, receiver, 3, "before")
    before = cluster.owner(SLOT)
    after = next(port for port in cluster.ports if port != before)
    # While idle (no delivery in flight); the worker's housekeeping goes on meanwhile.
    await asyncio.to_thread(cluster.move_slot, SLOT, after)
    assert keys_per_node(cluster)[before] == 0
    # The producer's first command after the move is a transaction (MULTI/EXEC), which
    # the old node refuses with MOVED: it is sent again to the new one.
    await producer.endpoints.create(
        workspace_id="ws_2", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    await deliver(producer, receiver, 3, "after")
    assert keys_per_node(cluster)[after] > 0


async def test_the_eviction_policy_checked_is_that_of_the_primary_serving_our_slot(
    cluster: RedisClusterServers, cluster_url: str
) -> None:
    """An evicting primary that holds our slot is refused, an evicting other one is not
    (the URL names a node that does not serve our slot)."""
    owner = cluster.owner(SLOT)
    others = [port for port in cluster.ports if port != owner]

    async def api_starts() -> None:
        client = TestClient(
            TestServer(create_app(ApiSettings.from_env(env(cluster_url))), host="127.0.0.1", port=0)
        )
        try:
            await client.start_server()
            assert (await client.get("/readyz")).status == 200
        finally:
            await client.close()

    try:
        command(owner, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        with pytest.raises(RedisEvictingError, match="allkeys-lru"):
            await api_starts()
        with pytest.raises(RedisEvictingError, match="allkeys-lru"):
            await WorkerService(
                WorkerSettings.from_env(worker_env(cluster_url, KEY_PREFIX=PREFIX))
            ).run()
        command(owner, "CONFIG", "SET", "maxmemory-policy", "noeviction")
        for port in others:
            command(port, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        await api_starts()
    finally:
        for port in cluster.ports:
            command(port, "CONFIG", "SET", "maxmemory-policy", "noeviction")
