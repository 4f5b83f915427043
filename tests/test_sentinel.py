"""Redis behind Sentinel: ``redis+sentinel://`` URLs work for the producer and the workers.

A real primary (and, for the failover, a real replica) and a real Sentinel, each a
private ``redis-server`` on a free 127.0.0.1 port, stopped by its own PID.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions

from producer.context import Producer
from producer.events import Event
from producer.publisher import PublishResult
from producer.redis.clients import MAX_CONNECTIONS, bullmq_connection, probe_client, redis_client
from producer.redis.sentinel import (
    BlockingSentinelPool,
    SentinelMasterClient,
    SentinelUrl,
    parse_sentinel_url,
)
from producer.redis_guard import RedisEvictingError
from producer.settings import ProducerSettings, SettingsError
from worker.service import WorkerService
from worker.settings import WorkerSettings

from harness import Receiver, RedisServer, RedisServerFactory
from harness.polling import wait_until
from harness.redis_server import SentinelServer
from support import make_event, producer_for, start_worker, worker_env

PRIMARY = "cliq"


@dataclass
class Watched:
    """A Sentinel watching a primary, and the URL that reaches it through the Sentinel."""

    sentinel: SentinelServer
    primary: RedisServer

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{PRIMARY}/0"

    async def command(self, *args: str) -> object:
        """Send a command to the Sentinel itself."""
        client = aioredis.Redis(port=self.sentinel.port, decode_responses=True)
        try:
            # redis-py leaves execute_command untyped.
            reply: object = await client.execute_command(*args)  # type: ignore[no-untyped-call]
            return reply
        finally:
            await client.aclose()


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[SentinelServer]:
    """A private Sentinel, monitoring nothing yet."""
    server = SentinelServer(directory=tmp_path / "sentinel")
    server.start()
    try:
        yield server
    finally:
        server.close()


async def watch(sentinel: SentinelServer, primary: RedisServer) -> Watched:
    """Make ``sentinel`` monitor ``primary``, quick to notice that it went down."""
    watched = Watched(sentinel, primary)
    await watched.command("SENTINEL", "MONITOR", PRIMARY, "127.0.0.1", str(primary.port), "1")
    await watched.command("SENTINEL", "SET", PRIMARY, "down-after-milliseconds", "1000")
    await watched.command("SENTINEL", "SET", PRIMARY, "failover-timeout", "10000")
    return watched


@pytest.fixture
async def watched(sentinel: SentinelServer, redis_server_factory: RedisServerFactory) -> Watched:
    """A fresh primary, watched by the test's Sentinel."""
    return await watch(sentinel, redis_server_factory())


async def info(port: int, section: str) -> dict[str, Any]:
    """``INFO section`` of the private server on ``port``."""
    client = aioredis.Redis(port=port, decode_responses=True)
    try:
        return await client.info(section)
    finally:
        await client.aclose()


async def deliver(producer: Producer, receiver: Receiver, events: list[Event]) -> None:
    """Publish ``events`` (retrying a publish that failed, as API callers do) and wait."""
    before = len(receiver.received)
    for event in events:
        results: list[PublishResult] = []

        async def published(event: Event = event, results: list[PublishResult] = results) -> bool:
            try:
                results.append(await producer.publisher.publish(event))
            except redis.exceptions.ConnectionError:
                return False
            return True

        await wait_until(published, 15, interval=0.1, message=f"could not publish {event.id}")
    got = await receiver.wait_for(before + len(events), 20)
    assert {request.json()["id"] for request in got[before:]} == {e.id for e in events}


def test_a_sentinel_url_names_the_sentinels_the_primary_and_the_database() -> None:
    parsed = parse_sentinel_url(
        "redis+sentinel://:s%40cret@10.0.0.1:26380,[::1],sentinel.example/main/3"
        "?sentinel_password=other"
    )
    assert parsed == SentinelUrl(
        sentinels=(("10.0.0.1", 26380), ("::1", 26379), ("sentinel.example", 26379)),
        primary="main",
        db=3,
        password="s@cret",
        sentinel_password="other",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://127.0.0.1:26379", "/<primary name>"),
        ("redis+sentinel://127.0.0.1:26379/cliq/zero", "not a number"),
        ("redis+sentinel://127.0.0.1:port/cliq", "not host:port"),
        ("redis+sentinel://127.0.0.1/cliq?ssl=true", "unknown"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_by_the_settings(url: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem) as caught:
        ProducerSettings.from_env({"REDIS_URL": url.replace("127.0.0.1", ":pw@127.0.0.1")})
    assert "pw" not in str(caught.value)  # the URL may hold a password: never echoed


async def test_the_clients_reach_the_primary_through_the_sentinel(watched: Watched) -> None:
    own, probe, for_bullmq = redis_client(watched.url), probe_client(watched.url), None
    try:
        for_bullmq = bullmq_connection(watched.url)
        assert isinstance(for_bullmq, SentinelMasterClient)
        # Our client keeps its bounded pool: a burst waits for a connection, as before.
        assert isinstance(own, aioredis.Redis)
        assert isinstance(own.connection_pool, BlockingSentinelPool)
        assert own.connection_pool.max_connections == MAX_CONNECTIONS
        assert await own.set("seen-through-sentinel", "yes")
        assert await probe.ping()
        assert await for_bullmq.get("seen-through-sentinel") == "yes"
        assert (await info(watched.primary.port, "keyspace"))["db0"]["keys"] == 1
    finally:
        await own.aclose()
        await probe.aclose()
        if isinstance(for_bullmq, aioredis.Redis):
            await for_bullmq.aclose()
            await for_bullmq.aclose()  # bullmq closes it twice: harmless


async def test_publish_and_deliver_through_a_sentinel(
    watched: Watched, receiver: Receiver, tmp_path: Path
) -> None:
    async with producer_for(watched.url) as producer:
        await producer.endpoints.create(
            workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
        )
        worker = await start_worker(worker_env(watched.url, NOTIFY_OUTBOX=str(tmp_path)))
        try:
            await deliver(
                producer, receiver, [make_event(producer, data={"n": n}) for n in range(5)]
            )
        finally:
            assert await worker.stop() == 0


async def test_deliveries_go_on_after_a_failover(
    sentinel: SentinelServer,
    redis_server_factory: RedisServerFactory,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    primary = redis_server_factory()
    replica = redis_server_factory("--replicaof", "127.0.0.1", str(primary.port))

    async def replicating() -> bool:
        return (await info(replica.port, "replication")).get("master_link_status") == "up"

    await wait_until(replicating, 10, message="the replica did not connect to the primary")
    watched = await watch(sentinel, primary)

    async with producer_for(watched.url) as producer:
        await producer.endpoints.create(
            workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
        )
        worker = await start_worker(worker_env(watched.url, NOTIFY_OUTBOX=str(tmp_path)))
        try:
            await deliver(
                producer, receiver, [make_event(producer, data={"before": n}) for n in range(3)]
            )

            async def failed_over() -> bool:
                try:
                    await watched.command("SENTINEL", "FAILOVER", PRIMARY)
                except redis.exceptions.ResponseError:  # e.g. NOGOODSLAVE: not seen the replica yet
                    return False
                return True

            await wait_until(failed_over, 20, interval=0.2, message="Sentinel did not fail over")

            async def promoted() -> bool:
                address = await watched.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", PRIMARY)
                role = (await info(replica.port, "replication")).get("role")
                return address == ["127.0.0.1", str(replica.port)] and role == "master"

            await wait_until(promoted, 20, interval=0.1, message="the replica was not promoted")
            await deliver(
                producer, receiver, [make_event(producer, data={"after": n}) for n in range(3)]
            )
        finally:
            assert await worker.stop() == 0


async def test_the_eviction_policy_checked_is_that_of_the_primary_the_sentinel_names(
    watched: Watched,
) -> None:
    """The Sentinel itself has no maxmemory-policy to speak of: the primary's is read."""
    client = aioredis.Redis(port=watched.primary.port)
    try:
        await client.config_set("maxmemory-policy", "allkeys-random")
    finally:
        await client.aclose()
    with pytest.raises(RedisEvictingError, match="allkeys-random"):
        await WorkerService(WorkerSettings.from_env(worker_env(watched.url))).run()
