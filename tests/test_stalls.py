"""Endpoints that stall: their share of a worker, and deferrals with nothing in flight.

Issue 13: twenty hung endpoints, each within its cap, held a whole worker and starved a
healthy one (point 5); leases that leaked deferred an endpoint's deliveries while
nothing was in flight for it, and no alert said so (point 1).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cli.base import worker_settings
from cli.main import build_parser
from producer.context import Producer
from producer.endpoint import Endpoint
from producer.keys import Keys
from producer.settings import SettingsError
from worker.limits import STALLED_AFTER_S, Deferral, EndpointLimiter
from worker.settings import WorkerSettings
from worker.stalls import IDLE_AFTER_S, Stalls

from harness import ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import make_event, start_worker, worker_env


async def an_endpoint(
    producer: Producer, url: str = "https://hooks.example/", **limits: int
) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id="ws_1",
        url=url,
        events=["*"],
        owner_email="o@example.com",
        **limits,  # type: ignore[arg-type]
    )


async def test_endpoints_not_known_to_answer_share_one_budget(
    producer: Producer, redis: aioredis.Redis
) -> None:
    new, other, third, healthy = [await an_endpoint(producer) for _ in range(4)]
    now = [1000.0]
    limiter = EndpointLimiter(
        redis, Keys(), "w", clock=lambda: now[0], stalls=Stalls.of(2, STALLED_AFTER_S)
    )
    # Never seen answering: each request counts, and the third one finds no room
    # (deferred briefly: it is not known to stall either).
    assert await limiter.acquire(new) is None
    assert await limiter.acquire(other) is None
    assert await limiter.acquire(third) == Deferral()
    assert await limiter.acquire(healthy) == Deferral()
    # An endpoint that answered is no longer counted...
    limiter.release(new.id, answered=True)
    assert await limiter.acquire(new) is None
    assert limiter._budget.in_flight == 1  # only `other`
    limiter.release(new.id)
    # ...one whose request timed out counts again, and is deferred as stalled when full.
    limiter.release(other.id, answered=False)
    assert await limiter.acquire(other) is None
    assert await limiter.acquire(third) is None
    assert limiter._budget.in_flight == 2
    assert await limiter.acquire(other) == Deferral(stalled=True)
    # The one that answered still gets its slots: the budget is not its business.
    assert await limiter.acquire(new) is None
    assert not limiter.unresponsive(new.id)
    # Its request gets no answer for a while: it stalls, and from then on counts.
    now[0] += STALLED_AFTER_S
    assert limiter.unresponsive(new.id)
    limiter.check()
    assert limiter._budget.in_flight == 3
    assert limiter._metrics.stalled_in_flight._value.get() == 3
    for endpoint in (new, other, third):
        limiter.release(endpoint.id)
    assert limiter._budget.in_flight == 0
    await limiter.close()


async def test_deferred_at_the_cap_with_nothing_in_flight_anywhere_is_reported(
    producer: Producer, redis: aioredis.Redis
) -> None:
    leaked, busy = (
        await an_endpoint(producer, max_in_flight=1),
        await an_endpoint(producer, max_in_flight=1),
    )
    holder = EndpointLimiter(redis, Keys(), "holder")
    release = asyncio.Event()

    async def take_and_vanish() -> None:  # a slot whose holder ended: nothing in flight
        assert await holder.acquire(leaked) is None

    async def take_and_hold() -> None:  # a request really in flight
        assert await holder.acquire(busy) is None
        await release.wait()
        holder.release(busy.id)

    await asyncio.create_task(take_and_vanish())
    holding = asyncio.create_task(take_and_hold())
    await wait_until(lambda: busy.id in holder._endpoints, 2, message="never held")
    await holder._renew()  # tells Redis what is really in flight: 0 and 1

    now = [1000.0]
    other = EndpointLimiter(redis, Keys(), "other", clock=lambda: now[0])
    gauge = other._metrics.endpoints_deferring_idle
    for _ in range(2):
        assert await other.acquire(leaked) == Deferral()
        assert await other.acquire(busy) == Deferral()
        now[0] += IDLE_AFTER_S
    other.check()
    assert gauge._value.get() == 1  # the leaked one only
    release.set()
    await holding
    holder.check()  # frees the slot its vanished holder kept...
    assert holder._metrics.lease_repairs._value.get() == 1
    await holder.close()  # ...and hands the lease back
    assert await other.acquire(leaked) is None  # a request in flight at last
    other.check()
    assert gauge._value.get() == 0
    other.release(leaked.id)
    await other.close()


@pytest.mark.parametrize("raw", ["0", "-0.5", "1.5", "half"])
def test_a_bad_stalled_share_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(SettingsError, match="STALLED_CONCURRENCY_SHARE"):
        WorkerSettings.from_env({"STALLED_CONCURRENCY_SHARE": raw})


def test_the_stalled_share_comes_from_env_or_flag_and_sizes_the_budget() -> None:
    assert WorkerSettings.from_env({}).stalled_budget == 100  # 0.5 x 200
    env = {"STALLED_CONCURRENCY_SHARE": "1", "WORKER_CONCURRENCY": "30"}
    assert WorkerSettings.from_env(env).stalled_budget == 30
    args = build_parser().parse_args(
        ["worker", "--stalled-concurrency-share", "0.25", "--worker-concurrency", "10"]
    )
    settings = worker_settings(args)
    assert settings.stalled_concurrency_share == 0.25
    assert settings.stalled_budget == 2
    tiny = WorkerSettings.from_env({"STALLED_CONCURRENCY_SHARE": "0.01", "WORKER_CONCURRENCY": "3"})
    assert tiny.stalled_budget == 1  # never 0: a stalled endpoint still gets tried


async def test_many_hung_endpoints_do_not_starve_a_healthy_one(
    producer: Producer, receiver_factory: ReceiverFactory, redis_url: str, tmp_path: Path
) -> None:
    healthy = await receiver_factory()
    hanging = await receiver_factory(default=ScriptedResponse(hang=True), hang_cap_s=30)
    await an_endpoint(producer, healthy.url())
    env = worker_env(
        redis_url,
        NOTIFY_OUTBOX=str(tmp_path),
        DELIVERY_TIMEOUT="20",
        WORKER_CONCURRENCY="20",
        STALLED_CONCURRENCY_SHARE="0.5",
    )
    worker = await start_worker(env)
    try:
        # The healthy endpoint has answered lately; then 10 endpoints hang, 10 x their
        # cap of 10: five times the worker's 20 slots.
        await producer.publisher.publish(make_event(producer, data={"n": -1}))
        await healthy.wait_for(1, 10)
        for n in range(10):
            await an_endpoint(producer, hanging.url(f"/hook/{n}"))
        events = [make_event(producer, data={"n": n}) for n in range(60)]
        await producer.publisher.publish_many(events)
        # None of the hung requests timed out (20 s) to make room: the healthy endpoint
        # had the half of the slots that the hung ones may not take.
        await healthy.wait_for(61, 15)
        assert len(hanging.received) <= 10
        assert worker.metrics.stalled_in_flight._value.get() <= 10
        # Their batches did not wait for them: the hung requests were left behind.
        await wait_until(
            lambda: worker.metrics.detached._value.get() >= 1, 5, message="never left behind"
        )
    finally:
        await hanging.stop()  # its hung requests end now, so the worker drains at once
        await worker.stop()
