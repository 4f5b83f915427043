"""FIFO endpoints (``ordering: fifo``): deliveries start in publish order, one at a time.

The big test runs real ``python -m worker`` processes against a real aiohttp receiver
that answers 500 at random (seeded per event and attempt, so the answers do not depend
on timing), SIGKILLs one worker mid-run and lets the other take over. The receiver must
see the FIFO endpoint's requests in publish order (each event's attempts in one run,
never two events interleaved), each event delivered, except one that always fails: it
ends dead and lets the next go. A parallel endpoint beside it is not held up.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis
from aiohttp import web

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.endpoint import Endpoint
from producer.endpoint_rules import EndpointError
from producer.events import Event
from producer.fields import DELIVERY_FIELDS
from producer.fifo import FifoLines, Ordering
from producer.keys import Keys

from harness.polling import wait_until
from support import WorkerProcess, make_event, start_worker, worker_env

SEED = 20261202
EVENTS = 24
CHUNK = 4  # published a few at a time: order holds within one publish and across them
FAILURE_RATE = 0.15  # of the FIFO endpoint's answers (seeded per event and attempt)
ALWAYS_FAILS = 9  # this event's every attempt fails: it ends dead, the next one goes
# Three attempts; bullmq fires the retries after about a second each.
SCHEDULE = "0,0.05,0.05"
ANSWER_DELAY_S = 0.01  # the FIFO receiver's own work
# This event's first request is held; its worker is SIGKILLed meanwhile, another takes over.
HELD = EVENTS // 3
KEYS = Keys()


@dataclass(frozen=True)
class Hit:
    """One request the receiver answered."""

    path: str
    event_id: str
    attempt: int
    status: int


@dataclass
class FlakyReceiver:
    """A real aiohttp server: ``/fifo`` answers 500 at random (seeded), ``/parallel`` 200."""

    # Publish index by event id: the rolls depend on it, not on the (random) id.
    order: dict[str, int] = field(default_factory=dict)
    always_fails: str = ""
    fail_all: bool = False
    # The first request of this event to /fifo is held until `release` is set; `held` says it came.
    hold: str = ""
    held: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, event_id: str, attempt: int) -> int:
        """The FIFO endpoint's answer: the same for an (event, attempt) whenever it comes."""
        if self.fail_all or event_id == self.always_fails:
            return 500
        roll = random.Random(f"{SEED}:{self.order.get(event_id)}:{attempt}").random()
        return 500 if roll < FAILURE_RATE else 200

    async def _handle(self, request: web.Request) -> web.Response:
        event_id = json.loads(await request.read())["id"]
        attempt = int(request.headers["X-Cliq-Attempt"])
        status = 200
        if request.path == "/fifo":
            status = self.answer(event_id, attempt)
        # Recorded on arrival, with the answer it gets (its sender may be dead by then).
        self.hits.append(Hit(request.path, event_id, attempt, status))
        if request.path == "/fifo" and event_id == self.hold and not self.held.is_set():
            self.held.set()
            await self.release.wait()
        elif request.path == "/fifo":
            await asyncio.sleep(ANSWER_DELAY_S)  # the receiver's own work
        return web.Response(status=status, text="ok" if status == 200 else "boom")

    def first_successes(self, path: str) -> list[str]:
        """Event ids in the order of their first 2xx answer on ``path``."""
        seen: list[str] = []
        for hit in self.hits:
            if hit.path == path and hit.status == 200 and hit.event_id not in seen:
                seen.append(hit.event_id)
        return seen

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyReceiver]:
    receiver = FlakyReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


@dataclass
class Workers:
    """``python -m worker`` subprocesses, each ended by its own PID."""

    redis_url: str
    folder: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def spawn(self) -> WorkerProcess:
        env = worker_env(
            self.redis_url, RETRY_SCHEDULE=SCHEDULE, NOTIFY_OUTBOX=str(self.folder / "outbox")
        )
        process = WorkerProcess(env, self.folder / f"worker-{len(self.started)}.log")
        self.started.append(process)
        return process


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[Workers]:
    crew = Workers(redis_url, tmp_path)
    try:
        yield crew
    finally:
        for process in crew.started:
            process.kill()  # only if it still runs


async def register(producer: Producer, url: str, ordering: str) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id="ws_1",
        url=url,
        events=["*"],
        owner_email="owner@example.com",
        ordering=ordering,
    )


async def states(redis: aioredis.Redis, endpoint: Endpoint) -> dict[str, str]:
    """Each of the endpoint's deliveries' state, by event id."""
    ids = cast(list[str], await redis.zrange(KEYS.endpoint_deliveries(endpoint.id), 0, -1))
    found: dict[str, str] = {}
    for delivery_id in ids:
        event_id, state = await redis.hmget(
            KEYS.delivery(delivery_id), [DELIVERY_FIELDS.event, DELIVERY_FIELDS.state]
        )
        found[str(event_id)] = str(state)
    return found


def runs(hits: list[Hit], path: str, order: dict[str, int]) -> list[int]:
    """The publish index of each request to ``path``, in the order they arrived."""
    return [order[hit.event_id] for hit in hits if hit.path == path]


async def publish(producer: Producer, count: int) -> list[Event]:
    events = [make_event(producer, data={"n": n}) for n in range(count)]
    for start in range(0, count, CHUNK):
        await producer.publisher.publish_many(events[start : start + CHUNK])
    return events


async def test_fifo_order_under_random_500s_and_a_sigkill(
    producer: Producer, redis: aioredis.Redis, flaky: FlakyReceiver, workers: Workers
) -> None:
    fifo = await register(producer, flaky.url("/fifo"), "fifo")
    parallel = await register(producer, flaky.url("/parallel"), "parallel")
    events = await publish(producer, EVENTS)
    ids = [event.id for event in events]
    order = {event_id: n for n, event_id in enumerate(ids)}
    flaky.order = order
    flaky.always_fails = ids[ALWAYS_FAILS]
    flaky.hold = ids[HELD]
    expected = [event_id for event_id in ids if event_id != flaky.always_fails]
    victim = workers.spawn()

    # While the FIFO endpoint's turn is stuck on a request that gets no answer, the
    # parallel endpoint beside it gets every delivery: it never waits behind the line.
    await wait_until(flaky.held.is_set, 20, message="the FIFO endpoint made no progress")
    await wait_until(
        lambda: len(flaky.first_successes("/parallel")) == EVENTS,
        15,
        message="the parallel endpoint was held up by the FIFO one",
    )
    assert flaky.first_successes("/fifo")[:HELD] == expected[:HELD]
    assert await redis.llen(KEYS.endpoint_fifo(fifo.id)) == EVENTS - HELD - 1

    # The worker sending the held request dies with it; the one started now takes over.
    victim.signal(signal.SIGKILL)
    assert await victim.wait(10) == -signal.SIGKILL
    flaky.release.set()
    survivor = workers.spawn()

    async def settled() -> bool:
        ends = await states(redis, fifo)
        return len(ends) == EVENTS and all(
            state in (DeliveryState.DELIVERED, DeliveryState.DEAD) for state in ends.values()
        )

    await wait_until(settled, 40, interval=0.1, message="the FIFO deliveries did not end")
    assert survivor.process.poll() is None, survivor.log_text()

    # Each event's first success came in publish order, none lost; the dead one let
    # the next go.
    assert flaky.first_successes("/fifo") == expected
    ends = await states(redis, fifo)
    assert ends[flaky.always_fails] == DeliveryState.DEAD
    assert [e for e in ids if ends[e] == DeliveryState.DELIVERED] == expected
    # One at a time: every request of an event came before any of the next one's. The
    # held one was sent again by the survivor, still in its turn.
    arrivals = runs(flaky.hits, "/fifo", order)
    assert arrivals == sorted(arrivals), arrivals
    assert arrivals.count(HELD) >= 2
    # Random 500s were retried in turn, and the one that always fails had every attempt.
    retried = {n for n in arrivals if arrivals.count(n) > 1} - {HELD, ALWAYS_FAILS}
    assert retried, arrivals
    assert arrivals.count(ALWAYS_FAILS) == len(SCHEDULE.split(","))
    # The line is empty and no delivery holds the turn.
    assert await redis.llen(KEYS.endpoint_fifo(fifo.id)) == 0
    assert not await redis.exists(KEYS.endpoint_fifo_head(fifo.id))
    assert set((await states(redis, parallel)).values()) == {DeliveryState.DELIVERED}


async def test_ordering_is_validated_and_shown(producer: Producer, redis_url: str) -> None:
    with pytest.raises(EndpointError) as refused:
        await register(producer, "https://example.com/hook", "lifo")
    assert refused.value.field == "ordering"
    assert "must be 'parallel' (the default) or 'fifo', not 'lifo'" in str(refused.value)
    endpoint = await producer.endpoints.create(
        workspace_id="ws_1", url="https://example.com/h", events=["*"], owner_email="o@x.io"
    )
    assert endpoint.public_dict()["ordering"] == "parallel"
    changed = await producer.endpoints.update(endpoint.id, ordering="fifo")
    assert changed.ordering == Ordering.FIFO
    assert (await producer.endpoints.get(endpoint.id)).public_dict()["ordering"] == "fifo"
    with pytest.raises(EndpointError, match="ordering: must be"):
        await producer.endpoints.update(endpoint.id, ordering="FIFO ")


async def test_back_to_parallel_lets_the_whole_line_go(
    producer: Producer, redis: aioredis.Redis, flaky: FlakyReceiver, redis_url: str
) -> None:
    fifo = await register(producer, flaky.url("/parallel"), "fifo")
    await publish(producer, 6)
    # No worker yet: one delivery is enqueued, the other five wait in line.
    assert await redis.llen(KEYS.ready) == 1
    assert await redis.llen(KEYS.endpoint_fifo(fifo.id)) == 5
    await producer.endpoints.update(fifo.id, ordering="parallel")
    assert await redis.llen(KEYS.endpoint_fifo(fifo.id)) == 0
    assert await redis.llen(KEYS.ready) == 6
    worker = await start_worker(worker_env(redis_url))
    try:
        await wait_until(lambda: len(flaky.hits) == 6, 10, message="not all delivered")
    finally:
        await worker.stop()
    assert set((await states(redis, fifo)).values()) == {DeliveryState.DELIVERED}


async def test_deleting_a_fifo_endpoint_ends_its_line_dead(
    producer: Producer, redis: aioredis.Redis, flaky: FlakyReceiver, redis_url: str
) -> None:
    fifo = await register(producer, flaky.url("/parallel"), "fifo")
    events = await publish(producer, 4)
    await producer.endpoints.delete(fifo.id)
    worker = await start_worker(worker_env(redis_url))
    try:

        async def all_dead() -> bool:
            return set((await states(redis, fifo)).values()) == {DeliveryState.DEAD}

        await wait_until(all_dead, 10, message="the line's deliveries did not end dead")
    finally:
        await worker.stop()
    assert flaky.hits == []
    assert len(await states(redis, fifo)) == len(events)
    assert not await redis.exists(KEYS.endpoint_fifo(fifo.id), KEYS.endpoint_fifo_head(fifo.id))


async def test_replayed_dead_deliveries_go_in_line_in_order(
    producer: Producer, redis: aioredis.Redis, flaky: FlakyReceiver, redis_url: str
) -> None:
    fifo = await register(producer, flaky.url("/fifo"), "fifo")
    events = await publish(producer, 5)
    order = {event.id: n for n, event in enumerate(events)}
    flaky.fail_all = True
    # A schedule of one attempt: each delivery ends dead at its first failure, in turn.
    worker = await start_worker(worker_env(redis_url, RETRY_SCHEDULE="0"))
    try:

        async def ended(state: str) -> bool:
            ends = await states(redis, fifo)
            return len(ends) == len(events) and set(ends.values()) == {state}

        await wait_until(lambda: ended(DeliveryState.DEAD), 10, message="not all dead")
        assert runs(flaky.hits, "/fifo", order) == list(range(len(events)))
        flaky.fail_all = False
        flaky.hits.clear()
        dead = await producer.deliveries.dead_ids(fifo.id)
        assert len(await producer.deliveries.replay(dead)) == len(events)
        await wait_until(lambda: ended(DeliveryState.DELIVERED), 10, message="not replayed")
    finally:
        await worker.stop()
    assert flaky.first_successes("/fifo") == [event.id for event in events]
    assert runs(flaky.hits, "/fifo", order) == list(range(len(events)))


async def test_enqueue_next_waits_for_the_turn_unless_asked_again(
    producer: Producer, redis: aioredis.Redis, flaky: FlakyReceiver, redis_url: str
) -> None:
    fifo = await register(producer, flaky.url("/fifo"), "fifo")
    events = await publish(producer, 3)
    order = {event.id: n for n, event in enumerate(events)}
    flaky.order = order
    lines = FifoLines(producer.redis, KEYS)
    head = await redis.get(KEYS.endpoint_fifo_head(fifo.id))
    assert await lines.enqueue_next(fifo.id) is None  # the head holds the turn
    assert await redis.llen(KEYS.ready) == 1
    # A resume enqueues the head once more; its duplicate attempt is skipped.
    assert await lines.enqueue_next(fifo.id, again=True) == head
    assert await redis.llen(KEYS.ready) == 2
    worker = await start_worker(worker_env(redis_url, RETRY_SCHEDULE=SCHEDULE))
    try:

        async def delivered() -> bool:
            ends = await states(redis, fifo)
            return set(ends.values()) == {DeliveryState.DELIVERED}

        await wait_until(delivered, 10, message="not all delivered")
    finally:
        await worker.stop()
    assert flaky.first_successes("/fifo") == [event.id for event in events]
    arrivals = runs(flaky.hits, "/fifo", order)
    assert arrivals == sorted(arrivals)
    assert await lines.enqueue_next(fifo.id) is None  # nothing left in line
    assert not await redis.exists(KEYS.endpoint_fifo_head(fifo.id))
