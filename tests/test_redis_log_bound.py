"""Without DATABASE_URL the delivery log in Redis is bounded: each endpoint keeps its
latest LOG_KEEP_PER_ENDPOINT delivered deliveries (their events too), dead ones stay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.deliveries import DeliveryState

from harness import ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import (
    RunningWorker,
    make_event,
    marker_size,
    markers_counted,
    start_worker,
    worker_env,
)

KEEP = 3


@pytest.fixture
async def worker(producer: Producer, tmp_path: Any) -> AsyncIterator[RunningWorker]:
    running = await start_worker(
        worker_env(
            producer.settings.redis_url,
            LOG_KEEP_PER_ENDPOINT=str(KEEP),
            NOTIFY_OUTBOX=str(tmp_path / "outbox"),
        )
    )
    yield running
    assert await running.stop() == 0


async def keys_of(redis: aioredis.Redis, producer: Producer, pattern: str) -> list[str]:
    return [k async for k in redis.scan_iter(f"{producer.keys.prefix}:{pattern}")]


async def test_an_endpoint_keeps_its_latest_delivered_and_the_rest_leaves_redis(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    worker: RunningWorker,
) -> None:
    good = await receiver_factory()
    ep = await producer.endpoints.create(
        workspace_id="ws_1", url=good.url(), events=["*"], owner_email="o@example.com"
    )
    events = [make_event(producer, "issue.created", {"n": n}) for n in range(8)]
    for event in events:  # one at a time: each is delivered before the next
        await producer.publisher.publish(event)
        await good.wait_for(events.index(event) + 1, 10)

    async def trimmed() -> bool:
        return len(await keys_of(redis, producer, "dlv:*")) == KEEP

    await wait_until(trimmed, 10, message="the endpoint kept more than its latest")
    kept = await producer.deliveries.for_endpoint(ep.id)
    assert [d.event_id for d in kept] == [e.id for e in reversed(events[-KEEP:])]
    assert all(d.state == DeliveryState.DELIVERED for d in kept)
    # Kept no longer than the retention, with their events (finish.lua).
    retention = producer.settings.delivery_retention
    for delivery in kept:
        assert 0 < await redis.ttl(producer.keys.delivery(delivery.id)) <= retention
        assert 0 < await redis.ttl(producer.keys.event(delivery.event_id)) <= retention
    assert await redis.zcard(producer.keys.endpoint_done(ep.id)) == KEEP
    assert await redis.zcard(producer.keys.endpoint_deliveries(ep.id)) == KEEP
    # The trimmed deliveries' events left too, each leaving a small marker.
    for event in events[:-KEEP]:
        assert not await redis.exists(producer.keys.event(event.id))
        assert not await redis.exists(producer.keys.event_deliveries(event.id))
        assert await marker_size(producer, event.id, producer.settings.delivery_retention)
        assert await producer.deliveries.for_event(event.id) == []
    # Counted in their bucket (record.lua), from which the next bucket's width follows.
    assert await markers_counted(producer, producer.settings.delivery_retention) == 8 - KEEP
    for event in events[-KEEP:]:
        assert await redis.exists(producer.keys.event(event.id))
    # A re-publish of a trimmed event is still a duplicate: nothing is sent again.
    again = await producer.publisher.publish(events[0])
    assert again.duplicate
    assert len(await keys_of(redis, producer, "dlv:*")) == KEEP
    assert len(good.received) == 8


async def test_dead_deliveries_stay_for_replay_whatever_the_bound(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    worker: RunningWorker,
) -> None:
    bad = await receiver_factory(default=ScriptedResponse(status=500, body=b"nope"))
    ep = await producer.endpoints.create(
        workspace_id="ws_1", url=bad.url(), events=["*"], owner_email="o@example.com"
    )
    events = [make_event(producer, "issue.created", {"n": n}) for n in range(KEEP + 2)]
    await producer.publisher.publish_many(events)

    async def all_dead() -> bool:
        return len(await producer.deliveries.dead_ids(ep.id)) == KEEP + 2

    await wait_until(all_dead, 30, message="not all dead")
    assert len(await producer.deliveries.for_endpoint(ep.id)) == KEEP + 2
    assert await redis.zcard(producer.keys.endpoint_done(ep.id)) == 0
