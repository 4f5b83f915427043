"""The log outbox and its writer: every recorded outcome reaches the PostgreSQL delivery
log once, also when the database goes away in the middle of a run and comes back; what
is final and written leaves Redis; the delivery log is then read from the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.deliveries import Attempt, AttemptFilter, AttemptOutcome, Delivery, DeliveryState
from producer.settings import ProducerSettings
from producer.store.migrate import migrate
from producer.store.partitions import DAYS_AHEAD, existing_partitions
from producer.store.postgres import PostgresLogStore
from producer.store.reads import StoredDeliveryLog
from worker.localredis import free_port
from worker.logwriter import GROUP, LogWriter, upkeep_partitions
from worker.metrics import Metrics

from harness import ReceiverFactory, ScriptedResponse
from harness.logbatches import assert_each_attempt_once, logged
from harness.polling import wait_until
from harness.postgres import PostgresServer
from support import (
    RunningWorker,
    endpoint_for,
    make_event,
    marker_size,
    markers_counted,
    outbox_empty,
    publish_numbered,
    start_worker,
    worker_env,
)

FIVE_ATTEMPTS = 5  # support.TEST_SCHEDULE


async def redis_deliveries(producer: Producer, event_ids: list[str]) -> list[Delivery]:
    found: list[Delivery] = []
    for event_id in event_ids:
        found += await producer.deliveries.for_event(event_id)
    return found


async def keys_of(redis: aioredis.Redis, producer: Producer, pattern: str) -> list[str]:
    return [k async for k in redis.scan_iter(f"{producer.keys.prefix}:{pattern}")]


async def start_logging_worker(producer: Producer, tmp_path: Any, url: str, **env: str) -> Any:
    return await start_worker(
        worker_env(
            producer.settings.redis_url,
            DATABASE_URL=url,
            NOTIFY_OUTBOX=str(tmp_path / "outbox"),
            **env,
        )
    )


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
    bad_id = await endpoint_for(producer, bad)
    worker = await start_logging_worker(producer, tmp_path, postgres_url)
    try:
        event_ids = await publish_numbered(producer, 6)
        await wait_until(lambda: logged(store, 6, 6), 30, message="not all in the log")
        await wait_until(lambda: outbox_empty(redis, producer), 20, message="not drained")
        total = 6 * 1 + 6 * FIVE_ATTEMPTS
        await assert_each_attempt_once(store, total)
        assert worker.metrics.log.written._value.get() == total
        assert worker.metrics.log.outbox._value.get() == 0
        for event_id in event_ids:
            stored = await store.get_event(event_id)
            assert stored is not None
            assert stored.type == "issue.created"
        # The dead left Redis too, once written: the log has them, for replay.
        assert await producer.deliveries.for_endpoint(bad_id) == []
        assert len(await store.dead_delivery_ids(bad_id)) == 6
    finally:
        assert await worker.stop() == 0


async def test_delivered_deliveries_and_their_events_leave_redis_once_written(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    postgres_url: str,
    store: PostgresLogStore,
    tmp_path: Any,
) -> None:
    good = await receiver_factory()
    good_id = await endpoint_for(producer, good)
    worker = await start_logging_worker(producer, tmp_path, postgres_url, IDEMPOTENCY_WINDOW="60")
    try:
        events = [make_event(producer, "issue.created", {"n": n}) for n in range(8)]
        await producer.publisher.publish_many(events)
        await wait_until(lambda: logged(store, 8, 0), 30, message="not all in the log")

        async def gone() -> bool:
            left = await keys_of(redis, producer, "dlv:*") + await keys_of(redis, producer, "evt:*")
            return left == []

        await wait_until(gone, 20, message="the delivered records stayed in Redis")
        await wait_until(lambda: outbox_empty(redis, producer), 20, message="not drained")
        assert await redis.zcard(producer.keys.endpoint_deliveries(good_id)) == 0
        # Each event leaves a marker of a few bytes in a shared hash, which expires once
        # the bucket after its own is over (the window is 60 s: within 120 s).
        for event in events:
            size = await marker_size(producer, event.id, 60)
            assert size is not None
            assert size <= 16
        for marker in await keys_of(redis, producer, "seen:60:*"):
            assert 0 < await redis.ttl(marker) <= 120
        # Counted in their bucket (logdone.lua), from which the next bucket's width follows.
        assert await markers_counted(producer, 60) == 8
        # Within the window the same ids are still duplicates: nothing is sent again.
        again = await producer.publisher.publish_many(events)
        assert [r.duplicate for r in again] == [True] * 8
        assert await keys_of(redis, producer, "dlv:*") == []
        assert len(good.received) == 8
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
    worker: RunningWorker = await start_logging_worker(
        producer, tmp_path, url, METRICS_PORT=str(port), METRICS_HOST="127.0.0.1"
    )
    try:
        before = await publish_numbered(producer, 5)
        # Written to the log, not only received: the worker records after the receiver
        # answers, so an outbox still empty then may fill after the database stops.
        store = await PostgresLogStore.open(url)
        try:
            await wait_until(lambda: logged(store, 5, 0), 15, message="not in the log")
        finally:
            await store.close()
        await wait_until(lambda: outbox_empty(redis, producer), 15, message="not drained")

        own_postgres.stop()
        during = await publish_numbered(producer, 5)
        # Delivering goes on without the database; the outcomes wait in Redis.
        await good.wait_for(10, 15)

        async def delivered_in_redis() -> bool:
            found = await redis_deliveries(producer, during)
            return len(found) == 5 and all(d.state == DeliveryState.DELIVERED for d in found)

        await wait_until(delivered_in_redis, 15, message="not delivered")
        # Their records wait for the database without expiring (finish.lua), as do
        # their events: however long it is down, they leave once written.
        for delivery in await redis_deliveries(producer, during):
            assert await redis.ttl(producer.keys.delivery(delivery.id)) == -1
            assert await redis.ttl(producer.keys.event(delivery.event_id)) == -1
        # One outcome per attempt of `during`, waiting in Redis.
        waiting = int(await redis.xlen(producer.keys.log_outbox))
        assert waiting == 5
        writer = worker.service.log_writer
        assert writer is not None
        await wait_until(
            lambda: writer.failing_since is not None, 15, message="the writer did not notice"
        )
        ready = await readyz(port)
        assert ready["log_store"] == "failing"
        assert ready["log_outbox"] == waiting

        own_postgres.restart()
        await wait_until(lambda: outbox_empty(redis, producer), 30, message="not drained")
        await wait_until(lambda: writer.failing_since is None, 10, message="not recovered")
        assert (await readyz(port))["log_store"] == "ok"
        store = await PostgresLogStore.open(url)
        try:
            await wait_until(lambda: logged(store, 10, 0), 10, message="not all in the log")
            await assert_each_attempt_once(store, 10)
            events = [await store.event_deliveries(event_id) for event_id in before + during]
            assert [len(found) for found in events] == [1] * 10
            assert all(found[0].state == DeliveryState.DELIVERED for found in events)
        finally:
            await store.close()
        assert await keys_of(redis, producer, "dlv:*") == []
    finally:
        assert await worker.stop() == 0


async def test_with_a_database_the_delivery_log_reads_it_and_shows_what_redis_shows(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    postgres_url: str,
    store: PostgresLogStore,
    tmp_path: Any,
) -> None:
    good = await receiver_factory()
    bad = await receiver_factory(default=ScriptedResponse(status=500, body=b"nope"))
    good_id = await endpoint_for(producer, good)
    bad_id = await endpoint_for(producer, bad)
    worker = await start_logging_worker(producer, tmp_path, postgres_url)
    stored = Producer(
        ProducerSettings.from_env(
            {"REDIS_URL": producer.settings.redis_url, "DATABASE_URL": postgres_url}
        )
    )
    try:
        await stored.open_log_store()
        assert isinstance(stored.deliveries, StoredDeliveryLog)
        event_ids = await publish_numbered(producer, 4)
        await wait_until(lambda: logged(store, 4, 4), 30, message="not all in the log")
        await wait_until(lambda: outbox_empty(redis, producer), 20, message="not drained")

        # The dead are only in the log now too, with every attempt.
        assert await producer.deliveries.for_endpoint(bad_id) == []
        dead_ones = await stored.deliveries.for_endpoint(bad_id)
        assert [d.state for d in dead_ones] == [DeliveryState.DEAD] * 4
        assert [len(d.attempts) for d in dead_ones] == [FIVE_ATTEMPTS] * 4
        summary = await stored.deliveries.recent(bad_id)
        assert (summary.deliveries, summary.dead) == (4, 4)
        assert sorted(await stored.deliveries.dead_ids(bad_id)) == sorted(d.id for d in dead_ones)
        assert await stored.deliveries.dead_total(bad_id) == 4
        for selected in (AttemptFilter(), AttemptFilter(outcome=AttemptOutcome.RETRY)):
            entries, _ = await stored.deliveries.scan_attempts(bad_id, selected, None, 3)
            assert [e["outcome"] for e in entries] == (
                ["dead", "retry", "retry"] if selected.outcome is None else ["retry"] * 3
            )
        # The delivered are only in the log now.
        delivered = await stored.deliveries.for_endpoint(good_id)
        assert [d.state for d in delivered] == [DeliveryState.DELIVERED] * 4
        assert [len(d.attempts) for d in delivered] == [1] * 4
        assert await producer.deliveries.for_endpoint(good_id) == []
        summary = await stored.deliveries.recent(good_id)
        assert (summary.deliveries, summary.delivered, summary.last_error) == (4, 4, None)
        for event_id in event_ids:
            both = await stored.deliveries.for_event(event_id)
            assert sorted(d.endpoint_id for d in both) == sorted([good_id, bad_id])
        assert await stored.deliveries.event_types(event_ids) == dict.fromkeys(
            event_ids, "issue.created"
        )

        # A replay re-creates the dead in Redis from the log and marks them in the store;
        # the new attempts reach the log too, and the records leave Redis again.
        dead = await stored.deliveries.dead_ids(bad_id)
        assert len(dead) == 4
        assert sorted(await stored.deliveries.replay(dead)) == sorted(dead)
        assert await stored.deliveries.dead_total(bad_id) == 0
        await wait_until(lambda: logged(store, 4, 4), 30, message="replays not final")
        await wait_until(lambda: outbox_empty(redis, producer), 20, message="not drained")
        for delivery_id in dead:
            again = await stored.deliveries.get(delivery_id)
            assert again.state == DeliveryState.DEAD
            assert [a.number for a in again.attempts] == list(range(1, 2 * FIVE_ATTEMPTS + 1))
        assert await keys_of(redis, producer, "dlv:*") == []
    finally:
        await stored.close()
        assert await worker.stop() == 0


async def test_a_delivery_not_written_yet_is_read_from_redis_by_id_and_by_event(
    producer: Producer, receiver_factory: ReceiverFactory, postgres_url: str
) -> None:
    receiver = await receiver_factory()
    endpoint_id = await endpoint_for(producer, receiver)
    stored = Producer(
        ProducerSettings.from_env(
            {"REDIS_URL": producer.settings.redis_url, "DATABASE_URL": postgres_url}
        )
    )
    try:
        await stored.open_log_store()
        (event_id,) = await publish_numbered(producer, 1)  # no worker: it stays queued
        (queued,) = await stored.deliveries.for_event(event_id)
        assert (queued.endpoint_id, queued.state, queued.attempts) == (
            endpoint_id,
            DeliveryState.QUEUED,
            (),
        )
        assert await stored.deliveries.get(queued.id) == queued
        assert await stored.deliveries.load([queued.id, "dlv_none"]) == [queued, None]
    finally:
        await stored.close()


async def test_the_partition_upkeep_makes_the_coming_days_and_keeps_the_retention(
    store: PostgresLogStore,
) -> None:
    await upkeep_partitions(store, retention_s=7 * 24 * 3600)
    async with store.pool.acquire() as conn:
        days = {p.day for p in await existing_partitions(conn)}
    today = datetime.now(UTC).date()
    assert {today + timedelta(days=n) for n in range(DAYS_AHEAD + 1)} <= days
    # Again: nothing new, nothing dropped (every day is within the retention).
    await upkeep_partitions(store, retention_s=7 * 24 * 3600)
    async with store.pool.acquire() as conn:
        assert {p.day for p in await existing_partitions(conn)} == days


async def test_a_dead_writers_batch_is_taken_over_and_written_once(
    producer: Producer, redis: aioredis.Redis, postgres_url: str, store: PostgresLogStore
) -> None:
    attempt = Attempt(1, 1_700_000_000_000, 200, None, 3.5, "ok", AttemptOutcome.DELIVERED)
    for n in range(3):
        await redis.xadd(
            producer.keys.log_outbox,
            {"d": f"dlv_{n}", "c": "1700000000000", "e": f"evt_{n}", "p": "ep_1",
             "a": attempt.to_json()},
        )  # fmt: skip
    metrics = Metrics().log
    # Writer a reads the batch, then its database goes away for good (as if it died).
    gone = await PostgresLogStore.open(postgres_url)
    await gone.close()
    a = LogWriter(producer.redis, producer.keys, gone, "a", metrics, 60_000, 60)
    await a.start()
    with pytest.raises(asyncpg.InterfaceError):
        await a.write_batch()
    pending = await redis.xpending(producer.keys.log_outbox, GROUP)
    assert (pending["pending"], pending["consumers"][0]["name"]) == (3, "a")
    # Writer b takes it over once it has been idle long enough (here: at once).
    b = LogWriter(producer.redis, producer.keys, store, "b", metrics, 0, 60)
    await b.start()
    assert await b.write_batch() == 3
    assert await redis.xlen(producer.keys.log_outbox) == 0
    assert (await redis.xpending(producer.keys.log_outbox, GROUP))["pending"] == 0
    assert await b.write_batch() == 0
    await assert_each_attempt_once(store, 3)


async def test_a_full_log_outbox_stops_new_work_until_the_database_is_back(
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
    worker = await start_logging_worker(
        producer, tmp_path, url, LOG_OUTBOX_MAX="3", METRICS_PORT=str(port),
        METRICS_HOST="127.0.0.1",
    )  # fmt: skip
    try:
        own_postgres.stop()
        await publish_numbered(producer, 3)
        await good.wait_for(3, 15)
        await wait_until(lambda: worker.service._intake_stopped, 15, message="intake went on")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/readyz") as response,
        ):
            assert response.status == 503
        # A full batch is a queue job, which a worker that stopped its intake leaves
        # alone (a claim of the ready list already waiting may still take single ones).
        later = await publish_numbered(producer, producer.settings.batch_size)
        total = 3 + len(later)
        with pytest.raises(AssertionError):
            await good.wait_for(4, 5)  # two housekeeping rounds and more
        assert len(good.received) == 3
        own_postgres.restart()
        await good.wait_for(total, 30)
        await wait_until(lambda: outbox_empty(redis, producer), 30, message="not drained")
        assert not worker.service._intake_stopped
        store = await PostgresLogStore.open(url)
        try:
            await wait_until(lambda: logged(store, total, 0), 10, message="not all in the log")
            assert len(await store.event_deliveries(later[0])) == 1
        finally:
            await store.close()
    finally:
        assert await worker.stop() == 0
