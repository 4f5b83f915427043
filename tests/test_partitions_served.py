"""PARTITIONS=3 on one private Redis: publishing routed by workspace, workers serving every
partition, lookups by endpoint id, replay, pause and resume, poll feeds, test sends and
totals over the partitions (real Redis and in-process workers, a real receiver)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from producer.claims import EventClaims
from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.endpoint import Endpoint
from producer.endpoint_rules import EndpointNotFound
from producer.events import Event, parse_event
from producer.partitioning import partition_of
from producer.redis_guard import GuardMetrics, RedisGuard
from producer.routed import RoutedDeliveryLog, RoutedFeeds, RoutedPausing, RoutedPublisher
from producer.routing import RoutedRegistry
from producer.settings import ProducerSettings
from producer.testsends import request_test_send
from producer.totals import hot_totals

from harness import Receiver
from harness.polling import wait_until
from support import RunningWorker

PARTITIONS = "3"
# Twelve workspaces: every one of the three partitions has some (asserted below).
WORKSPACES = [f"ws_{n}" for n in range(12)]

PRODUCER_ENV = {"PARTITIONS": PARTITIONS, "ALLOW_PRIVATE_DESTINATIONS": "1"}
Factory = Callable[..., Awaitable[RunningWorker]]


@pytest.fixture
async def partitioned(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[Producer]:
    """A producer with PARTITIONS=3 (and the delivery log ``log_env`` chooses)."""
    settings = ProducerSettings.from_env(PRODUCER_ENV | log_env | {"REDIS_URL": redis_url})
    async with Producer(settings) as producer:
        await producer.check_partitions()
        await producer.open_log_store()
        yield producer


def event_of(producer: Producer, workspace: str, n: int, **fields: Any) -> Event:
    raw = {"type": "issue.created", "workspace_id": workspace, "data": {"n": n}, **fields}
    return parse_event(raw, producer.catalogue, max_payload_bytes=256 * 1024)


async def endpoints_of(
    producer: Producer, receiver: Receiver, **options: Any
) -> dict[str, Endpoint]:
    return {
        ws: await producer.endpoints.create(
            workspace_id=ws,
            url=receiver.url(f"/hook/{ws}"),
            events=["*"],
            owner_email="o@example.com",
            **options,
        )
        for ws in WORKSPACES
    }


async def delivered(producer: Producer) -> int:
    return (await hot_totals(producer.redis, producer.partitions, producer.dispatchers)).stats.get(
        DeliveryState.DELIVERED.value, 0
    )


def test_the_workspaces_span_every_partition() -> None:
    assert {partition_of(ws, 3) for ws in WORKSPACES} == {0, 1, 2}


@pytest.mark.both_stores
async def test_every_workspace_is_delivered_once_signed_from_its_partition(
    partitioned: Producer,
    receiver: Receiver,
    redis: aioredis.Redis,
    worker_factory: Factory,
    log_env: dict[str, str],
) -> None:
    producer = partitioned
    endpoints = await endpoints_of(producer, receiver)
    # Each endpoint's hash is in its workspace's partition, and only there.
    for ws, ep in endpoints.items():
        home = partition_of(ws, 3)
        for k, keys in enumerate(producer.partitions.all):
            assert bool(await redis.exists(keys.endpoint(ep.id))) == (k == home)
    events = [event_of(producer, ws, n) for n in range(5) for ws in WORKSPACES]
    results = await producer.publisher.publish_many(events)
    assert [r.deliveries for r in results] == [1] * len(events)
    for event in events:
        (delivery,) = await producer.deliveries.for_event(event.id)
        keys = producer.partitions.for_workspace(event.workspace_id)
        assert await redis.exists(keys.delivery(delivery.id), keys.event(event.id)) == 2
    await worker_factory(PARTITIONS=PARTITIONS, WORKER_CONCURRENCY="20", **log_env)
    await wait_until(lambda: _equals(delivered(producer), len(events)), 20, 0.05)
    received = receiver.received
    assert len(received) == len(events)  # every delivery recorded, each sent once
    ids = {r.headers["webhook-id"] for r in received}
    assert len(ids) == len(events)
    for request in received:
        ws = request.path.rsplit("/", 1)[1]
        verified = Webhook(endpoints[ws].secret).verify(request.body, dict(request.headers))
        assert verified["workspace_id"] == ws
    # Idempotency per workspace: the same ids again store nothing new.
    again = await producer.publisher.publish_many(events)
    assert all(r.duplicate and r.deliveries == 0 for r in again)

    # The totals over the partitions are the per-endpoint counts (with DATABASE_URL
    # once the log writers wrote every outcome).
    async def per_endpoint() -> int:
        found = 0
        for ep in endpoints.values():
            listed = await producer.deliveries.for_endpoint(ep.id)
            found += sum(d.state == DeliveryState.DELIVERED for d in listed)
        return found

    await wait_until(lambda: _equals(per_endpoint(), len(events)), 20, 0.05)
    assert await delivered(producer) == len(events)
    assert len(receiver.received) == len(events)


async def _equals(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


async def test_an_endpoint_is_found_by_id_alone_in_every_partition(
    partitioned: Producer, receiver: Receiver, redis_url: str, redis: aioredis.Redis
) -> None:
    endpoints = await endpoints_of(partitioned, receiver)
    settings = ProducerSettings.from_env(PRODUCER_ENV | {"REDIS_URL": redis_url})
    # A process that did not create them (no remembered partition) finds each by id.
    async with Producer(settings) as fresh:
        for ws, ep in endpoints.items():
            assert (await fresh.endpoints.get(ep.id)).workspace_id == ws
            assert isinstance(fresh.endpoints, RoutedRegistry)
            assert await fresh.endpoints.partition_of_endpoint(ep.id) == partition_of(ws, 3)
        listed = await fresh.endpoints.all()
        assert {e.id for e in listed} == {e.id for e in endpoints.values()}
        page, cursor = await fresh.endpoints.scan(None, None, 5)
        seen = [e.id for e in page]
        while cursor is not None:
            page, cursor = await fresh.endpoints.scan(None, cursor, 5)
            seen += [e.id for e in page]
        assert seen == [e.id for e in sorted(listed, key=lambda e: (e.created_ms, e.id))]
        gone = endpoints[WORKSPACES[1]]
        await fresh.endpoints.delete(gone.id)
    index = partitioned.partitions.home.endpoint_partitions
    assert not await redis.hexists(index, gone.id)
    assert await redis.hlen(index) == len(WORKSPACES) - 1
    with pytest.raises(EndpointNotFound):
        await partitioned.endpoints.get(gone.id)


async def test_fifo_order_holds_per_endpoint_in_every_partition(
    partitioned: Producer, receiver: Receiver, worker_factory: Factory
) -> None:
    producer = partitioned
    await endpoints_of(producer, receiver, ordering="fifo")
    for n in range(8):  # one at a time, so each workspace's order is publish order
        await producer.publisher.publish_many([event_of(producer, ws, n) for ws in WORKSPACES])
    await worker_factory(PARTITIONS=PARTITIONS, WORKER_CONCURRENCY="20")
    await receiver.wait_for(8 * len(WORKSPACES), timeout=30)
    for ws in WORKSPACES:
        order = [r.json()["data"]["n"] for r in receiver.received if r.path.endswith(f"/{ws}")]
        assert order == list(range(8)), ws


@pytest.mark.both_stores
async def test_dead_deliveries_of_every_partition_are_replayed(
    partitioned: Producer, receiver: Receiver, worker_factory: Factory, log_env: dict[str, str]
) -> None:
    producer = partitioned
    endpoints = await endpoints_of(producer, receiver)
    receiver.respond(500, times=len(WORKSPACES))
    await producer.publisher.publish_many([event_of(producer, ws, 1) for ws in WORKSPACES])
    await worker_factory(PARTITIONS=PARTITIONS, RETRY_SCHEDULE="0", **log_env)

    async def all_dead() -> bool:
        return await producer.deliveries.dead_overall() == len(WORKSPACES)

    await wait_until(all_dead, 20, 0.05)
    dead = [i for ep in endpoints.values() for i in await producer.deliveries.dead_ids(ep.id)]
    assert len(dead) == len(WORKSPACES)
    replayed = await producer.deliveries.replay(dead)
    assert sorted(replayed) == sorted(dead)
    await wait_until(lambda: _equals(delivered(producer), len(WORKSPACES)), 20, 0.05)
    # With the database the count is its own plus Redis's: a replayed delivery stays dead
    # there until its writer has written the new round's attempt (up to a batch later).
    await wait_until(lambda: _equals(producer.deliveries.dead_overall(), 0), 20, 0.05)
    assert len(receiver.received) == 2 * len(WORKSPACES)


async def test_disabled_endpoints_of_every_partition_pause_and_resume_in_order(
    partitioned: Producer, receiver: Receiver, worker_factory: Factory
) -> None:
    producer = partitioned
    endpoints = await endpoints_of(producer, receiver)
    await worker_factory(PARTITIONS=PARTITIONS, WORKER_CONCURRENCY="20")
    for ep in endpoints.values():
        await producer.pausing.disable(ep.id)
    for n in range(3):
        await producer.publisher.publish_many([event_of(producer, ws, n) for ws in WORKSPACES])

    async def all_paused() -> bool:
        counts = [await producer.pausing.paused(ep.id) for ep in endpoints.values()]
        return counts == [3] * len(WORKSPACES)

    await wait_until(all_paused, 10, 0.05)
    assert receiver.received == []  # no attempt spent while paused
    for ep in endpoints.values():
        await producer.pausing.enable(ep.id)
    await receiver.wait_for(3 * len(WORKSPACES), timeout=20)
    await wait_until(lambda: _equals(delivered(producer), 3 * len(WORKSPACES)), 20, 0.05)
    for ws in WORKSPACES:
        order = [r.json()["data"]["n"] for r in receiver.received if r.path.endswith(f"/{ws}")]
        assert sorted(order) == [0, 1, 2], ws
    assert all([await producer.pausing.paused(ep.id) == 0 for ep in endpoints.values()])


async def test_poll_endpoints_of_every_partition_are_fetched_and_acknowledged(
    partitioned: Producer, redis: aioredis.Redis
) -> None:
    producer = partitioned
    endpoints = {
        ws: await producer.endpoints.create(workspace_id=ws, kind="poll", events=["*"])
        for ws in WORKSPACES
    }
    events = {ws: [event_of(producer, ws, n) for n in range(3)] for ws in WORKSPACES}
    await producer.publisher.publish_many([e for batch in events.values() for e in batch])
    for ws, ep in endpoints.items():
        # The feed is in the workspace's partition, in publish order.
        feed = producer.partitions.for_workspace(ws).endpoint_feed(ep.id)
        assert await redis.zcard(feed) == 3
        entries = await producer.feeds.entries(ep.id, 0, 10)
        assert [e.event_id for e in entries] == [e.id for e in events[ws]]
        assert await producer.feeds.ack(ep.id, entries[-1].cursor) == 3
        assert await producer.feeds.backlog(ep.id) == 0
        assert await producer.feeds.entries(ep.id, 0, 10) == []
    assert await delivered(producer) == 3 * len(WORKSPACES)


async def test_test_sends_reach_endpoints_of_every_partition_through_a_worker(
    partitioned: Producer, receiver: Receiver, worker_factory: Factory
) -> None:
    producer = partitioned
    endpoints = await endpoints_of(producer, receiver)
    await worker_factory(PARTITIONS=PARTITIONS)
    for ws, ep in endpoints.items():
        keys = producer.keys_of(ep)
        assert keys == producer.partitions.for_workspace(ws)
        result = await request_test_send(producer.redis, keys, ep.id, "issue.created", 10)
        assert result is not None, ws
        assert result.ok, ws
    assert sorted(r.path for r in receiver.received) == sorted(f"/hook/{ws}" for ws in WORKSPACES)


async def test_a_partition_that_lost_its_data_is_noticed(
    partitioned: Producer, receiver: Receiver, redis: aioredis.Redis
) -> None:
    producer = partitioned
    await endpoints_of(producer, receiver)
    guard = RedisGuard(
        producer.redis,
        producer.partitions.all,
        GuardMetrics(CollectorRegistry()),
        allow_evicting=False,
    )
    await guard.check()
    markers = [await redis.get(keys.generation) for keys in producer.partitions.all]
    assert None not in markers
    assert len(set(markers)) == 3  # one per partition
    await guard.check()
    assert guard.data_lost is None
    # The shard of partition 2 comes back empty (a restart without persistence).
    lost = producer.partitions.of(2)
    async for key in redis.scan_iter(f"{lost.prefix}:*"):
        await redis.delete(key)
    await guard.check()
    assert guard.data_lost is not None
    assert guard.data_lost.partition == 2
    assert guard.data_lost.previous == markers[2]
    assert "partition 2" in guard.data_lost.describe()


@pytest.mark.parametrize(
    ("routed", "inherited"),
    [
        (RoutedPublisher, {"publish"}),  # calls publish_many
        (RoutedFeeds, set()),
        (RoutedPausing, set()),
        (RoutedDeliveryLog, {"get"}),  # calls load
        (RoutedRegistry, set()),
    ],
)
def test_the_routed_parts_route_every_public_method(routed: type, inherited: set[str]) -> None:
    # A method inherited unrouted would run on a base whose state the routed class never
    # set up (or on partition 0 only): each is overridden, or named here with its reason.
    base = routed.__mro__[1]
    public = {n for n, v in inspect.getmembers(base, inspect.isfunction) if not n.startswith("_")}
    assert {n for n in public if n not in routed.__dict__} == inherited


async def test_the_lanes_of_a_worker_share_its_slots_and_its_stalled_budget(
    partitioned: Producer, worker_factory: Factory
) -> None:
    worker = await worker_factory(
        PARTITIONS=PARTITIONS, WORKER_CONCURRENCY="40", STALLED_CONCURRENCY_SHARE="0.25"
    )
    lanes = worker.service.lanes
    assert len(lanes) == 3
    # One budget for the process: the stalled share bounds the worker, not each partition.
    budgets = {id(lane.limiter._budget) for lane in lanes}
    assert len(budgets) == 1
    assert lanes[0].limiter._budget.size == 10


async def test_an_event_id_is_one_workspaces_across_partitions(
    partitioned: Producer, receiver: Receiver, redis: aioredis.Redis
) -> None:
    producer = partitioned
    await endpoints_of(producer, receiver)
    # Two workspaces of different partitions, and an id each would publish.
    first, second = (
        WORKSPACES[0],
        next(ws for ws in WORKSPACES if partition_of(ws, 3) != partition_of(WORKSPACES[0], 3)),
    )
    ids = [f"evt_shared_{n}" for n in range(20)]
    mine = await producer.publisher.publish_many(
        [event_of(producer, first, n, id=i) for n, i in enumerate(ids)]
    )
    assert [r.deliveries for r in mine] == [1] * len(ids)
    theirs = await producer.publisher.publish_many(
        [event_of(producer, second, n, id=i) for n, i in enumerate(ids)]
    )
    # Refused as duplicates, as with one partition: nothing stored in their partition.
    assert all(r.duplicate and r.deliveries == 0 for r in theirs)
    keys = producer.partitions.for_workspace(second)
    assert not any([await redis.exists(keys.event(i)) for i in ids])
    for event_id in ids:
        deliveries = await producer.deliveries.for_event(event_id)
        assert [d.endpoint_id for d in deliveries] == [
            (await producer.endpoints.workspace_endpoints([first]))[first].endpoints[0].id
        ]
    # The same workspace publishing its ids again (a retry) gets duplicates too, and a
    # new id of the second workspace is published.
    again = await producer.publisher.publish_many([event_of(producer, first, 0, id=ids[0])])
    assert again[0].duplicate
    new = await producer.publisher.publish_many([event_of(producer, second, 0, id="evt_own")])
    assert new[0].deliveries == 1


async def test_a_claim_stays_with_its_workspace(partitioned: Producer) -> None:
    claims = EventClaims(partitioned.redis, partitioned.partitions, 60)
    a = [event_of(partitioned, "ws_a", n, id=f"evt_c{n}") for n in range(30)]
    b = [event_of(partitioned, "ws_b", n, id=f"evt_c{n}") for n in range(30)]
    assert await claims.claim(a) == [True] * 30
    assert await claims.claim(a) == [True] * 30  # its own: a retry passes
    assert await claims.claim(b) == [False] * 30
    mixed = [b[0], event_of(partitioned, "ws_b", 99, id="evt_b_only"), a[1]]
    assert await claims.claim(mixed) == [False, True, True]
