"""Per-endpoint limits shared by workers: in-flight caps, rate limits, isolation."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from pathlib import Path

import redis.asyncio as aioredis

from producer.backoff import MAX_DEFERRAL_S, MAX_STALLED_DEFERRAL_S, deferral_delay_s
from producer.context import Producer
from producer.endpoint import Endpoint
from producer.events import parse_event
from producer.keys import Keys
from worker.limits import (
    MOVING_WITHIN_S,
    STALLED_AFTER_S,
    Deferral,
    EndpointLimiter,
)

from harness import Receiver, ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import make_event, start_worker, worker_env


async def an_endpoint(
    producer: Producer, url: str = "https://hooks.example/", **limits: float
) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id="ws_1",
        url=url,
        events=["*"],
        owner_email="o@example.com",
        **limits,  # type: ignore[arg-type]
    )


async def test_the_cap_holds_across_workers_who_get_fair_shares(
    producer: Producer, redis: aioredis.Redis
) -> None:
    endpoint = await an_endpoint(producer, max_in_flight=3)
    one = EndpointLimiter(redis, Keys(), "worker-one")
    two = EndpointLimiter(redis, Keys(), "worker-two")
    # Alone, worker one takes leases for the whole cap in one round trip.
    assert await one.acquire(endpoint) is None
    assert await one.acquire(endpoint) is None
    assert one._endpoints[endpoint.id].held == 3
    # Worker two finds the cap taken and nothing freed recently: defer at once.
    assert await two.acquire(endpoint) == Deferral()
    # Worker one learns that two wants a share (ceil(3 / 2) = 2) and, as a request
    # ends, gives its surplus lease back instead of keeping it.
    await one._renew()
    one.release(endpoint.id)
    await one._hand_back()
    assert await two.acquire(endpoint) is None
    assert await two.acquire(endpoint) == Deferral()  # all 3 leases held: one has 2 (1 busy), two 1
    # Within its share, worker one reuses its own freed slots, without a round trip...
    assert await one.acquire(endpoint) is None  # 2 of 2 busy
    one.release(endpoint.id)
    assert await one.acquire(endpoint) is None
    # ...and, the endpoint moving (a slot was just freed), a request waits for the next one.
    waiting = asyncio.create_task(one.acquire(endpoint))
    await wait_until(lambda: bool(one._endpoints[endpoint.id].waiters), 2, message="no waiter")
    one.release(endpoint.id)
    assert await waiting is None


async def test_idle_leases_go_back_and_a_dead_workers_leases_expire(
    producer: Producer, redis: aioredis.Redis
) -> None:
    endpoint = await an_endpoint(producer, max_in_flight=1)
    one = EndpointLimiter(redis, Keys(), "worker-one")
    two = EndpointLimiter(redis, Keys(), "worker-two")
    assert await one.acquire(endpoint) is None
    one.release(endpoint.id)
    assert await two.acquire(endpoint) == Deferral()  # one still holds its (idle) lease
    await one.close()  # hands back idle leases
    assert await two.acquire(endpoint) is None

    crashed = EndpointLimiter(redis, Keys(), "crashed", lease_ttl_s=0.3)
    other = await an_endpoint(producer, max_in_flight=1)
    assert await crashed.acquire(other) is None  # and it never releases nor renews
    survivor = EndpointLimiter(redis, Keys(), "survivor")
    assert await survivor.acquire(other) == Deferral()

    async def free_again() -> bool:
        return await survivor.acquire(other) is None

    await wait_until(free_again, 3, interval=0.1, message="a dead worker's lease never expired")


async def test_rate_limit_spaces_requests(producer: Producer, redis: aioredis.Redis) -> None:
    endpoint = await an_endpoint(producer, max_in_flight=100, rate_limit=20)
    limiter = EndpointLimiter(redis, Keys(), "w")
    started = time.monotonic()
    for _ in range(6):
        assert await limiter.acquire(endpoint) is None
        limiter.release(endpoint.id)
    # Six permits at 20/s: the last one comes 5 intervals (0.25 s) after the first.
    assert time.monotonic() - started >= 0.25 - 0.02
    slow = replace(endpoint, rate_limit=0.1)  # one per 10 s: too long to wait locally
    assert await limiter.acquire(slow) is None
    limiter.release(endpoint.id)
    deferral = await limiter.acquire(slow)
    assert deferral is not None
    assert 8 < deferral.hint_s <= 10
    assert not deferral.stalled


async def test_a_stalled_endpoint_defers_for_the_longest_a_moving_one_briefly(
    producer: Producer, redis: aioredis.Redis
) -> None:
    endpoint = await an_endpoint(producer, max_in_flight=1)
    now = [1000.0]
    limiter = EndpointLimiter(redis, Keys(), "w", clock=lambda: now[0])
    assert await limiter.acquire(endpoint) is None  # its one request never ends
    now[0] += MOVING_WITHIN_S + 0.1
    assert await limiter.acquire(endpoint) == Deferral()  # not moving: the usual back-off
    now[0] = 1000.0 + STALLED_AFTER_S
    assert await limiter.acquire(endpoint) == Deferral(stalled=True)
    limiter.release(endpoint.id)
    assert await limiter.acquire(endpoint) is None


def test_deferrals_back_off() -> None:
    assert 0.25 <= deferral_delay_s(0) <= 0.5
    assert 2 <= deferral_delay_s(3) <= 4
    assert deferral_delay_s(10) <= MAX_DEFERRAL_S
    assert deferral_delay_s(0, [Deferral(hint_s=12)]) == 12


def test_a_stalled_endpoint_keeps_its_backlog_out_longer_each_time_up_to_a_minute() -> None:
    stalled = [Deferral(stalled=True), Deferral()]
    assert 0.8 * MAX_DEFERRAL_S <= deferral_delay_s(0, stalled) <= MAX_DEFERRAL_S
    assert 1.6 * MAX_DEFERRAL_S <= deferral_delay_s(1, stalled) <= 2 * MAX_DEFERRAL_S
    assert 0.8 * MAX_STALLED_DEFERRAL_S <= deferral_delay_s(8, stalled) <= MAX_STALLED_DEFERRAL_S


def max_concurrency(receiver: Receiver, hold_s: float) -> int:
    """Most requests the receiver had open at once, each held ``hold_s``."""
    arrivals = sorted(r.received_at for r in receiver.received)
    return max(sum(1 for b in arrivals if a <= b < a + hold_s) for a in arrivals)


async def test_a_real_worker_keeps_an_endpoint_under_its_cap(
    producer: Producer, receiver_factory: ReceiverFactory, redis_url: str, tmp_path: Path
) -> None:
    receiver = await receiver_factory(default=ScriptedResponse(status=200, delay_s=0.3))
    await an_endpoint(producer, receiver.url(), max_in_flight=2)
    worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path)))
    try:
        events = [
            parse_event(
                {"type": "issue.created", "workspace_id": "ws_1", "data": {"n": n}},
                producer.catalogue,
                max_payload_bytes=1024,
            )
            for n in range(8)
        ]
        await producer.publisher.publish_many(events)
        await receiver.wait_for(8, 30)
    finally:
        await worker.stop()
    assert max_concurrency(receiver, 0.29) <= 2


async def test_one_busy_endpoint_is_not_slowed_down_by_its_cap(
    producer: Producer, receiver_factory: ReceiverFactory, redis_url: str, tmp_path: Path
) -> None:
    """A backlog for one endpoint waits for its slots locally, not in the queue."""
    receiver = await receiver_factory(default=ScriptedResponse(status=200, delay_s=0.01))
    await an_endpoint(producer, receiver.url())  # the default cap: 10 in flight
    worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path)))
    try:
        events = [make_event(producer, data={"n": n}) for n in range(500)]
        await producer.publisher.publish_many(events)
        await receiver.wait_for(500, 30)
    finally:
        await worker.stop()
    # Waiting locally, not through the queue: no delivery was deferred (a deferral per
    # item beyond the cap made such a backlog crawl at about 10 deliveries a second).
    assert worker.metrics.deferred._value.get() == 0
    assert max_concurrency(receiver, 0.009) <= 10


async def test_one_hanging_endpoint_does_not_hold_up_the_others(
    producer: Producer, receiver_factory: ReceiverFactory, redis_url: str, tmp_path: Path
) -> None:
    healthy = [await receiver_factory() for _ in range(9)]
    hanging = await receiver_factory(default=ScriptedResponse(hang=True), hang_cap_s=30)
    for receiver in healthy:
        await an_endpoint(producer, receiver.url())
    await an_endpoint(producer, hanging.url())
    env = worker_env(
        redis_url, NOTIFY_OUTBOX=str(tmp_path), DELIVERY_TIMEOUT="20", WORKER_CONCURRENCY="50"
    )
    worker = await start_worker(env)
    try:
        events = [make_event(producer, data={"n": n}) for n in range(300)]
        await producer.publisher.publish_many(events)
        for receiver in healthy:
            await receiver.wait_for(300, 30)
        # All 2,700 healthy deliveries went through while the hanging endpoint held only
        # its cap (10) of the 50 slots: none of its requests had to time out (20 s) to
        # make room, and it never got more than 10 requests.
        assert 1 <= len(hanging.received) <= 10
        assert all(r.json()["id"] for r in hanging.received)
    finally:
        await hanging.stop()  # its hung requests end now, so the worker drains at once
        await worker.stop()


async def test_a_delivery_cancelled_in_the_local_line_leaks_no_slot(
    producer: Producer, redis: aioredis.Redis
) -> None:
    """Issue 13: a waiter cancelled in the line was handed the next freed slot, for good."""
    endpoint = await an_endpoint(producer, max_in_flight=1)
    limiter = EndpointLimiter(redis, Keys(), "w")
    assert await limiter.acquire(endpoint) is None  # the one slot, in use
    slots = limiter._endpoints[endpoint.id]
    waiting = asyncio.create_task(limiter.acquire(endpoint))  # the endpoint moves: it waits
    await wait_until(lambda: bool(slots.waiters), 2, message="no waiter")
    waiting.cancel()  # as the batch's task group, or shutdown, did
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert not slots.waiters
    limiter.release(endpoint.id)
    assert slots.busy == 0  # the slot went back, not to the dead waiter
    assert await limiter.acquire(endpoint) is None
    limiter.release(endpoint.id)
    await limiter.close()


async def test_a_waiter_cancelled_just_after_being_handed_a_slot_passes_it_on(
    producer: Producer, redis: aioredis.Redis
) -> None:
    endpoint = await an_endpoint(producer, max_in_flight=1)
    limiter = EndpointLimiter(redis, Keys(), "w")
    assert await limiter.acquire(endpoint) is None
    slots = limiter._endpoints[endpoint.id]
    first = asyncio.create_task(limiter.acquire(endpoint))
    await wait_until(lambda: len(slots.waiters) == 1, 2, message="no first waiter")
    second = asyncio.create_task(limiter.acquire(endpoint))
    await wait_until(lambda: len(slots.waiters) == 2, 2, message="no second waiter")
    limiter.release(endpoint.id)  # hands the slot to the first waiter...
    first.cancel()  # ...which is cancelled before it could run
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert await second is None  # the slot moved on to the next in line
    assert slots.busy == 1
    limiter.release(endpoint.id)
    assert slots.busy == 0
    await limiter.close()


async def test_the_self_check_frees_slots_whose_holder_ended_and_counts_them(
    producer: Producer, redis: aioredis.Redis
) -> None:
    endpoint = await an_endpoint(producer, max_in_flight=2)
    limiter = EndpointLimiter(redis, Keys(), "w")

    async def take_and_vanish() -> None:  # a holder that ends without releasing
        assert await limiter.acquire(endpoint) is None

    await asyncio.gather(take_and_vanish(), take_and_vanish())
    slots = limiter._endpoints[endpoint.id]
    assert slots.busy == 2
    assert await limiter.acquire(endpoint) == Deferral()  # the cap looks used up
    limiter.check()
    assert slots.busy == 0
    assert limiter._metrics.lease_repairs._value.get() == 2
    assert await limiter.acquire(endpoint) is None  # the endpoint has its cap back
    limiter.check()  # a live holder is no drift
    assert slots.busy == 1
    assert limiter._metrics.lease_repairs._value.get() == 2
    limiter.release(endpoint.id)
    await limiter.close()


async def test_the_self_check_hands_repaired_slots_to_the_line(
    producer: Producer, redis: aioredis.Redis
) -> None:
    endpoint = await an_endpoint(producer, max_in_flight=1)
    limiter = EndpointLimiter(redis, Keys(), "w")

    async def take_and_vanish() -> None:
        assert await limiter.acquire(endpoint) is None

    await asyncio.create_task(take_and_vanish())
    slots = limiter._endpoints[endpoint.id]
    slots.last_release = time.monotonic()  # moving: the next one waits in the line
    waiting = asyncio.create_task(limiter.acquire(endpoint))
    await wait_until(lambda: bool(slots.waiters), 2, message="no waiter")
    limiter.check()
    assert await waiting is None
    assert slots.busy == 1
    assert limiter._metrics.lease_repairs._value.get() == 1
