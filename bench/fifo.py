"""The ``fifo`` scenario: what ``ordering: fifo`` costs an endpoint, and that it costs
the other endpoints nothing.

Three runs, each from an empty Redis with one worker process started after the backlog
is published, each timed from the endpoint's first delivery to its last by polling its
delivered set (``<prefix>:ep:<id>:done``):

1. an ordinary (parallel, ``max_in_flight`` 10) endpoint alone;
2. a FIFO endpoint alone: one delivery at a time, the next enqueued as the previous is
   recorded, so its rate is one over the round trip (pickup, POST, record);
3. the ordinary endpoint again, while a FIFO endpoint of another workspace has a backlog
   of its own that outlasts the run (sized from runs 1 and 2): its rate, against run 1's,
   says whether a busy FIFO endpoint slows anything else down.
"""

from __future__ import annotations

import math

from bench.context import WORKER_START_TIMEOUT_S, Context, cpu_metrics, drain_timeout_s
from bench.procs import BenchError
from bench.results import Run
from bench.workers import DeliveryWatch, Window, start_workers, stop_all
from bench.workload import make_events, publish_all
from producer.context import Producer
from producer.endpoint import Endpoint

FIFO_WORKSPACE = "ws_bench_fifo"
# Run 3's FIFO backlog lasts this many times the ordinary endpoint's expected drain.
BUSY_MARGIN = 2.0
MAX_BUSY_EVENTS = 50_000


async def fifo(ctx: Context) -> Run:
    """The FIFO endpoint's rate, the ordinary one's alone and beside a busy FIFO one."""
    plan = ctx.plan
    alone = await _drain(ctx, plan.fifo_parallel_events, "parallel")
    in_line = await _drain(ctx, plan.fifo_events, "fifo")
    busy_events = min(
        MAX_BUSY_EVENTS,
        math.ceil(BUSY_MARGIN * in_line.rate * plan.fifo_parallel_events / alone.rate) + 100,
    )
    beside, fifo_during = await _beside_busy_fifo(ctx, plan.fifo_parallel_events, busy_events)
    return {
        "fifo_rate": in_line.rate,
        "parallel_rate": alone.rate,
        "beside_rate": beside.rate,
        "fifo_share": in_line.rate / alone.rate,
        "beside_ratio": beside.rate / alone.rate,
        "fifo_busy_rate": fifo_during,
        "fifo_latency_ms": 1000 / in_line.rate,
        **cpu_metrics(in_line.cpu, "fifo_"),
        **cpu_metrics(beside.cpu),
    }


async def _endpoint(
    producer: Producer, ctx: Context, ordering: str, workspace: str, path: int
) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id=workspace,
        url=f"{ctx.sink.url}/hook/{path}",
        events=["*"],
        owner_email="bench@example.com",
        description=f"benchmark sink, {ordering}",
        ordering=ordering,
    )


def _worker_overrides(deliveries: int) -> dict[str, str]:
    # Each endpoint's delivered set holds them all: it is what the runs count.
    return {"LOG_KEEP_PER_ENDPOINT": str(deliveries + 1000)}


async def _done(ctx: Context, endpoint: Endpoint) -> int:
    return int(await ctx.redis.zcard(ctx.keys.endpoint_done(endpoint.id)))


async def _drain(ctx: Context, events: int, ordering: str) -> Window:
    """One endpoint of ``ordering`` alone, ``events`` deliveries drained by one worker."""
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        endpoint = await _endpoint(producer, ctx, ordering, "ws_bench", 0)
        queued = await publish_all(producer, make_events(producer.catalogue, events))
    overrides = _worker_overrides(queued)
    workers = start_workers(1, ctx.redis_url, ctx.plan.concurrency, ctx.workdir, overrides)
    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, workers, ctx.sink, lambda: _done(ctx, endpoint))
        return await watch.until(queued, WORKER_START_TIMEOUT_S, drain_timeout_s(queued))
    finally:
        await stop_all(workers)


async def _beside_busy_fifo(ctx: Context, events: int, busy_events: int) -> tuple[Window, float]:
    """The ordinary endpoint's window while a FIFO endpoint drains ``busy_events`` beside
    it, and the FIFO endpoint's deliveries/s over that window."""
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        busy = await _endpoint(producer, ctx, "fifo", FIFO_WORKSPACE, 1)
        ordinary = await _endpoint(producer, ctx, "parallel", "ws_bench", 0)
        # The FIFO backlog first: its line is busy before the ordinary deliveries queue.
        await publish_all(producer, make_events(producer.catalogue, busy_events, FIFO_WORKSPACE))
        queued = await publish_all(producer, make_events(producer.catalogue, events))
    overrides = _worker_overrides(busy_events + queued)
    workers = start_workers(1, ctx.redis_url, ctx.plan.concurrency, ctx.workdir, overrides)
    busy_at_start: list[int] = []

    async def ordinary_done() -> int:
        count = await _done(ctx, ordinary)
        if count and not busy_at_start:
            busy_at_start.append(await _done(ctx, busy))
        return count

    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, workers, ctx.sink, ordinary_done)
        window = await watch.until(queued, WORKER_START_TIMEOUT_S, drain_timeout_s(queued))
        busy_at_end = await _done(ctx, busy)
        waiting = int(await ctx.redis.llen(ctx.keys.endpoint_fifo(busy.id)))
    finally:
        await stop_all(workers)
    if waiting == 0:
        raise BenchError(
            f"the FIFO endpoint's {busy_events} deliveries ended before the ordinary "
            "endpoint's: it was not busy throughout, so the comparison says nothing"
        )
    return window, (busy_at_end - busy_at_start[0]) / window.seconds
