"""With DATABASE_URL a dead delivery leaves Redis once written, and stays replayable:
replay (one, or all since a time) re-creates it in Redis from its stored record and the
stored event body; which are dead and how many is the union of Redis and the store,
each dead delivery counted once (the API's dead_total, the CLI's status)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.fields import DELIVERY_FIELDS, EVENT_FIELDS
from producer.settings import ProducerSettings
from producer.store.logstore import EventRecord, OutcomeRecord
from producer.store.postgres import PostgresLogStore
from producer.store.reads import StoredDeliveryLog

from harness import ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import PROJECT, RunningWorker, make_event, start_worker, worker_env

FIVE_ATTEMPTS = 5  # support.TEST_SCHEDULE


@pytest.fixture
async def stored(redis_url: str, postgres_url: str) -> AsyncIterator[Producer]:
    """A producer reading the delivery log from the test's database."""
    env = {"REDIS_URL": redis_url, "DATABASE_URL": postgres_url, "ALLOW_PRIVATE_DESTINATIONS": "1"}
    async with Producer(ProducerSettings.from_env(env)) as p:
        await p.open_log_store()
        yield p


def status(redis_url: str, postgres_url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json"],
        env={**os.environ, **worker_env(redis_url, DATABASE_URL=postgres_url)},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


async def redis_records(redis: aioredis.Redis, producer: Producer) -> list[str]:
    """The delivery and event records left in Redis (idempotency markers aside)."""
    found = [k async for k in redis.scan_iter(f"{producer.keys.prefix}:dlv:*")]
    found += [k async for k in redis.scan_iter(f"{producer.keys.prefix}:evt:*")]
    return [k for k in found if not k.endswith(":seen")]


async def no_records(redis: aioredis.Redis, producer: Producer) -> bool:
    return await redis_records(redis, producer) == []


async def dead_in_store(store: PostgresLogStore, endpoint_id: str, n: int) -> bool:
    return len(await store.dead_delivery_ids(endpoint_id)) == n


async def test_dead_deliveries_leave_redis_and_replay_recreates_them_from_the_store(
    stored: Producer,
    redis: aioredis.Redis,
    redis_url: str,
    postgres_url: str,
    receiver_factory: ReceiverFactory,
    tmp_path: Any,
) -> None:
    bad = await receiver_factory(default=ScriptedResponse(status=500, body=b"nope"))
    endpoint = await stored.endpoints.create(
        workspace_id="ws_1", url=bad.url(), events=["*"], owner_email="o@example.com"
    )
    assert stored.log_store is not None
    store = stored.log_store
    worker = await start_worker(
        worker_env(redis_url, DATABASE_URL=postgres_url, NOTIFY_OUTBOX=str(tmp_path / "out"))
    )
    try:
        events = [make_event(stored, "issue.created", {"n": n}) for n in range(3)]
        await stored.publisher.publish_many(events)
        await wait_until(lambda: dead_in_store(store, endpoint.id, 3), 30, message="not dead")
        # Final and written: neither the deliveries nor their events stay in Redis.
        await wait_until(
            lambda: no_records(redis, stored), 20, message="the dead records stayed in Redis"
        )
        assert await redis.zcard(stored.keys.endpoint_dead(endpoint.id)) == 0
        assert await stored.deliveries.dead_total(endpoint.id) == 3
        assert status(redis_url, postgres_url)["deliveries"]["dead"] == 3
        dead = await stored.deliveries.dead_ids(endpoint.id)
        assert len(dead) == 3

        bad.default = ScriptedResponse(status=200, body=b"ok")
        # One by id: re-created from the store, sent again, numbered after its last.
        assert await stored.deliveries.replay([dead[0]]) == [dead[0]]
        assert await stored.deliveries.replay([dead[0]]) == []  # once
        assert await stored.deliveries.dead_total(endpoint.id) == 2

        async def delivered(delivery_id: str) -> bool:
            found = await store.load_deliveries([delivery_id])
            return found[0] is not None and found[0].state == DeliveryState.DELIVERED

        await wait_until(lambda: delivered(dead[0]), 30, message="the replay was not delivered")
        again = await stored.deliveries.get(dead[0])
        assert [a.number for a in again.attempts] == list(range(1, FIVE_ATTEMPTS + 2))
        sent = [r for r in bad.received if r.json()["id"] == again.event_id]
        assert len(sent) == FIVE_ATTEMPTS + 1
        assert sent[-1].body == sent[0].body  # the stored body, byte for byte the same

        # The rest since a time (all of them), as the API's bulk replay reads them.
        deaths = [(await stored.deliveries.get(d)).attempts[-1].at_ms for d in dead[1:]]
        since = min(deaths)
        rest = await stored.deliveries.dead_ids(endpoint.id, since)
        assert sorted(rest) == sorted(dead[1:])
        assert sorted(await stored.deliveries.replay(rest)) == sorted(dead[1:])
        for delivery_id in dead[1:]:
            await wait_until(lambda d=delivery_id: delivered(d), 30, message="not delivered")
        await wait_until(
            lambda: no_records(redis, stored), 20, message="the replayed records stayed"
        )
        assert await stored.deliveries.dead_total(endpoint.id) == 0
        assert status(redis_url, postgres_url)["deliveries"]["dead"] == 0
    finally:
        assert await worker.stop() == 0


async def test_the_dead_of_redis_and_the_store_are_counted_and_replayed_once(
    stored: Producer,
    producer: Producer,
    redis_url: str,
    postgres_url: str,
    receiver_factory: ReceiverFactory,
    tmp_path: Any,
) -> None:
    bad = await receiver_factory(default=ScriptedResponse(status=500, body=b"nope"))
    endpoint = await stored.endpoints.create(
        workspace_id="ws_1", url=bad.url(), events=["*"], owner_email="o@example.com"
    )
    assert stored.log_store is not None
    assert isinstance(stored.deliveries, StoredDeliveryLog)
    store = stored.log_store
    outbox = str(tmp_path / "out")

    async def run(worker: RunningWorker, n: int, done: Any) -> None:
        try:
            await stored.publisher.publish_many(
                [make_event(stored, "issue.created", {"n": i}) for i in range(n)]
            )
            await wait_until(done, 30, message="not dead")
        finally:
            assert await worker.stop() == 0

    # Two die with the database (they leave Redis), two without (they stay in Redis).
    await run(
        await start_worker(worker_env(redis_url, DATABASE_URL=postgres_url, NOTIFY_OUTBOX=outbox)),
        2,
        lambda: dead_in_store(store, endpoint.id, 2),
    )
    redis_dead = stored.keys.endpoint_dead(endpoint.id)

    async def two_in_redis() -> bool:
        return int(await stored.redis.zcard(redis_dead)) == 2

    await run(await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=outbox)), 2, two_in_redis)
    # One of Redis's is written to the store as well (its writer had not deleted it yet).
    both = str((await stored.redis.zrange(redis_dead, 0, 0))[0])
    delivery = await producer.deliveries.get(both)  # Redis's own
    body = str(await stored.redis.hget(stored.keys.event(delivery.event_id), EVENT_FIELDS.body))
    await store.write(
        [
            EventRecord(
                delivery.event_id, "issue.created", "ws_1", delivery.created_ms,
                body.encode(), delivery.created_ms, ((both, endpoint.id),),
            )
        ],
        [
            OutcomeRecord(both, delivery.created_ms, delivery.event_id, endpoint.id, a)
            for a in delivery.attempts
        ],
    )  # fmt: skip
    assert await dead_in_store(store, endpoint.id, 3)

    assert await stored.deliveries.dead_total(endpoint.id) == 4
    assert await stored.deliveries.dead_overall() == 4
    assert status(redis_url, postgres_url)["deliveries"]["dead"] == 4
    dead = await stored.deliveries.dead_ids(endpoint.id)
    assert len(dead) == len(set(dead)) == 4
    started = int(time.time() * 1000)
    replayed = await stored.deliveries.replay(dead)
    assert sorted(replayed) == sorted(dead)
    assert await stored.deliveries.replay(dead) == []
    assert await stored.deliveries.dead_total(endpoint.id) == 0
    in_store = await store.load_deliveries(dead)
    assert sorted(d.state for d in in_store if d is not None) == [DeliveryState.QUEUED] * 3
    for delivery_id in dead:
        queued = await producer.deliveries.get(delivery_id)
        assert queued.state == DeliveryState.QUEUED
        updated = await stored.redis.hget(
            stored.keys.delivery(delivery_id), DELIVERY_FIELDS.updated
        )
        assert int(str(updated)) >= started
