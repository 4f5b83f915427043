"""The log outbox and its writer: every recorded outcome reaches the PostgreSQL delivery
log once, also when the database goes away in the middle of a run and comes back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.deliveries import AttemptFilter, AttemptOutcome, Delivery, DeliveryState
from producer.settings import ProducerSettings
from producer.store.migrate import migrate
from producer.store.postgres import PostgresLogStore
from producer.store.reads import StoredDeliveryLog
from worker.localredis import free_port

from harness import Receiver, ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from harness.postgres import PostgresServer
from support import RunningWorker, make_event, start_worker, worker_env


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresLogStore]:
    opened = await PostgresLogStore.open(postgres_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, stopped and started again by it."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


async def endpoint_for(producer: Producer, receiver: Receiver) -> str:
    created = await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    return created.id


async def all_deliveries(producer: Producer, event_ids: list[str]) -> list[Delivery]:
    found: list[Delivery] = []
    for event_id in event_ids:
        found += await producer.deliveries.for_event(event_id)
    return found


async def final_in_redis(producer: Producer, event_ids: list[str], expected: int) -> bool:
    deliveries = await all_deliveries(producer, event_ids)
    return len(deliveries) == expected and all(
        d.state in (DeliveryState.DELIVERED, DeliveryState.DEAD) for d in deliveries
    )


async def outbox_len(redis: aioredis.Redis, producer: Producer) -> int:
    return int(await redis.xlen(producer.keys.log_outbox))


async def assert_log_matches_redis(
    producer: Producer, store: PostgresLogStore, event_ids: list[str]
) -> None:
    """Each delivery in the log is Redis's, attempt for attempt, and each attempt once."""
    in_redis = await all_deliveries(producer, event_ids)
    in_log = await store.load_deliveries([d.id for d in in_redis])
    assert in_log == in_redis
    rows = await store.pool.fetch(
        "SELECT delivery_id, number, count(*) AS n FROM attempts GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert rows == []
    total = await store.pool.fetchval("SELECT count(*) FROM attempts")
    assert total == sum(len(d.attempts) for d in in_redis)
    for event_id in event_ids:
        stored = await store.get_event(event_id)
        assert stored is not None
        assert stored.id == event_id


async def outbox_empty(redis: aioredis.Redis, producer: Producer) -> bool:
    return await outbox_len(redis, producer) == 0


async def publish(producer: Producer, count: int) -> list[str]:
    events = [make_event(producer, "issue.created", {"n": n}) for n in range(count)]
    await producer.publisher.publish_many(events)
    return [e.id for e in events]


async def test_every_outcome_reaches_the_log_once_and_the_outbox_drains(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    postgres_url: str,
    store: PostgresLogStore,
    tmp_path: Any,
) -> None:
    good = await receiver_factory()
    bad = await receiver_factory(default=ScriptedResponse(status=500, body=b"nope"))
    await endpoint_for(producer, good)
    await endpoint_for(producer, bad)
    worker = await start_worker(
        worker_env(
            producer.settings.redis_url,
            DATABASE_URL=postgres_url,
            NOTIFY_OUTBOX=str(tmp_path / "outbox"),
        )
    )
    try:
        event_ids = await publish(producer, 6)
        await wait_until(
            lambda: final_in_redis(producer, event_ids, 12), 30, message="not all final"
        )

        async def drained() -> bool:
            return await outbox_len(
                redis, producer
            ) == 0 and worker.metrics.log_written._value.get() == (
                sum(len(d.attempts) for d in await all_deliveries(producer, event_ids))
            )

        await wait_until(drained, 20, message="the log outbox did not drain")
        await assert_log_matches_redis(producer, store, event_ids)
        counts = await store.state_counts()
        assert counts[DeliveryState.DELIVERED] == 6
        assert counts[DeliveryState.DEAD] == 6
    finally:
        assert await worker.stop() == 0


async def readyz(port: int) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_the_database_stopping_mid_run_loses_nothing_and_blocks_nothing(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    own_postgres: PostgresServer,
    tmp_path: Any,
) -> None:
    url = own_postgres.url()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    await migrate(pool)
    await pool.close()
    good = await receiver_factory()
    await endpoint_for(producer, good)
    port = free_port()
    worker: RunningWorker = await start_worker(
        worker_env(
            producer.settings.redis_url,
            DATABASE_URL=url,
            METRICS_PORT=str(port),
            METRICS_HOST="127.0.0.1",
            NOTIFY_OUTBOX=str(tmp_path / "outbox"),
        )
    )
    try:
        before = await publish(producer, 5)
        await good.wait_for(5, 15)
        await wait_until(lambda: outbox_empty(redis, producer), 15, message="not drained")

        own_postgres.stop()
        during = await publish(producer, 5)
        # Delivering goes on without the database; the outcomes wait in Redis.
        await good.wait_for(10, 15)
        await wait_until(lambda: final_in_redis(producer, during, 5), 15, message="not delivered")
        assert await outbox_len(redis, producer) == 5
        await wait_until(
            lambda: (
                worker.service.log_writer is not None
                and worker.service.log_writer.failing_since is not None
            ),
            15,
            message="the writer did not notice",
        )
        ready = await readyz(port)
        assert ready["log_store"] == "failing"
        assert ready["log_outbox"] == 5

        own_postgres.restart()
        await wait_until(lambda: outbox_empty(redis, producer), 30, message="not drained")
        assert worker.metrics.log_outbox._value.get() == 0
        assert (await readyz(port))["log_store"] == "ok"
        store = await PostgresLogStore.open(url)
        try:
            await assert_log_matches_redis(producer, store, before + during)
        finally:
            await store.close()
    finally:
        assert await worker.stop() == 0


async def test_with_a_database_the_delivery_log_reads_it_and_shows_what_redis_shows(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    postgres_url: str,
    tmp_path: Any,
) -> None:
    good = await receiver_factory()
    bad = await receiver_factory(default=ScriptedResponse(status=500, body=b"nope"))
    good_id = await endpoint_for(producer, good)
    bad_id = await endpoint_for(producer, bad)
    env = worker_env(
        producer.settings.redis_url,
        DATABASE_URL=postgres_url,
        NOTIFY_OUTBOX=str(tmp_path / "outbox"),
    )
    worker = await start_worker(env)
    stored = Producer(ProducerSettings.from_env(env))
    try:
        await stored.open_log_store()
        assert isinstance(stored.deliveries, StoredDeliveryLog)
        event_ids = await publish(producer, 4)
        await wait_until(
            lambda: final_in_redis(producer, event_ids, 8), 30, message="not all final"
        )
        await wait_until(lambda: outbox_empty(redis, producer), 20, message="not drained")
        for endpoint_id in (good_id, bad_id):
            assert await stored.deliveries.for_endpoint(
                endpoint_id
            ) == await producer.deliveries.for_endpoint(endpoint_id)
            assert await stored.deliveries.recent(endpoint_id) == await producer.deliveries.recent(
                endpoint_id
            )
            assert sorted(await stored.deliveries.dead_ids(endpoint_id)) == sorted(
                await producer.deliveries.dead_ids(endpoint_id)
            )
            assert await stored.deliveries.dead_total(
                endpoint_id
            ) == await producer.deliveries.dead_total(endpoint_id)
            everything = AttemptFilter()
            failures = AttemptFilter(outcome=AttemptOutcome.RETRY)
            for selected in (everything, failures):
                assert await stored.deliveries.scan_attempts(
                    endpoint_id, selected, None, 3
                ) == await producer.deliveries.scan_attempts(endpoint_id, selected, None, 3)
        for event_id in event_ids:
            by_id = sorted(await producer.deliveries.for_event(event_id), key=lambda d: d.id)
            assert await stored.deliveries.for_event(event_id) == by_id
        assert await stored.deliveries.event_types(event_ids) == dict.fromkeys(
            event_ids, "issue.created"
        )

        # A replay queues the dead again in Redis and marks them in the store; the new
        # attempts reach the log too.
        dead = await stored.deliveries.dead_ids(bad_id)
        assert len(dead) == 4
        assert sorted(await stored.deliveries.replay(dead)) == sorted(dead)
        assert await stored.deliveries.dead_total(bad_id) == 0
        await wait_until(
            lambda: final_in_redis(producer, event_ids, 8), 30, message="replays not final"
        )
        await wait_until(lambda: outbox_empty(redis, producer), 20, message="not drained")
        assert sorted(await stored.deliveries.dead_ids(bad_id)) == sorted(dead)
        for delivery_id in dead:
            again = await stored.deliveries.get(delivery_id)
            assert again == await producer.deliveries.get(delivery_id)
            assert len(again.attempts) == 10
    finally:
        await stored.close()
        assert await worker.stop() == 0
