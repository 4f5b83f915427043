"""``retry-timing``: are retries made when they are due while the worker is busy?

One worker drains worker-1proc's backlog (``Plan.backlog_deliveries`` to the healthy
sink), which keeps it fully loaded, while ``Plan.retry_deliveries`` deliveries, spread
over the first half of that backlog, go to an endpoint (of another workspace) on an
aiohttp sink that answers 503 to everything. With ``RETRY_SCHEDULE=0,2,2,2,2`` each
gets five attempts two seconds apart, then dies. A retry's lateness is when it
started minus when the attempt before it said it would be made:
``attempt[k+1].at_ms - attempt[k].next_attempt_ms``, both from the worker's clock.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.context import WORKER_START_TIMEOUT_S, Context, cpu_metrics, drain_timeout_s
from bench.procs import BenchError
from bench.results import Run
from bench.sink import Sink, start_aiohttp, temporary
from bench.workers import DeliveryWatch, Window, start_workers, stop_all
from bench.workload import make_events, publish_all, register_endpoints, spread
from producer.context import Producer
from producer.deliveries import Delivery, DeliveryState
from worker.schedule import RetrySchedule

SCHEDULE = RetrySchedule.parse("0,2,2,2,2")
FAILING_STATUS = 503
FAILING_WORKSPACE = "ws_failing"
# The failing deliveries' first attempts are spread over this share of the backlog, so
# that their first retries fall due while the rest of it is still being delivered.
SPREAD = 0.5
# Once the backlog is delivered, the last retries are due within the schedule's length.
TAIL_TIMEOUT_S = 30.0 + sum(SCHEDULE.delays_s)
POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class Retry:
    """One retry: when it was due and when it started (epoch ms, the worker's clock)."""

    due_ms: int
    started_ms: int

    @property
    def late_ms(self) -> int:
        """How long after its due time the retry started."""
        return self.started_ms - self.due_ms


async def retry_timing(ctx: Context) -> Run:
    """Queue the load and the failing deliveries, run one worker, measure every retry."""
    await ctx.reset()
    async with (
        temporary(start_aiohttp(ctx.workdir, 1, status=FAILING_STATUS)) as failing,
        Producer(ctx.settings) as producer,
    ):
        failing_id, healthy = await queue_work(ctx, producer, failing)
        window, drained_ms = await run_worker(ctx, healthy)
        deliveries = await producer.deliveries.for_endpoint(
            failing_id, limit=ctx.plan.retry_deliveries + 1
        )
    retries = collect_retries(deliveries, ctx.plan.retry_deliveries)
    due_under_load = [r for r in retries if r.due_ms <= drained_ms]
    under_load = [r.late_ms for r in due_under_load]
    after_load = [r.late_ms for r in retries if r.due_ms > drained_ms]
    every = [r.late_ms for r in retries]
    return {
        "p50": percentile(every, 0.50),
        "p99": percentile(every, 0.99),
        "max": max(every),
        "min": min(every),
        "retries": len(every),
        "load_retries": len(under_load),
        # Few of those starting before the backlog was delivered means they queued
        # behind it: a retry that falls due joins the end of the wait list.
        "load_started": sum(r.started_ms < drained_ms for r in due_under_load),
        "load_p50": percentile(under_load, 0.50),
        "load_p99": percentile(under_load, 0.99),
        "idle_p99": percentile(after_load, 0.99),
        "load_rate": window.rate,
        **cpu_metrics(window.cpu),
    }


async def queue_work(ctx: Context, producer: Producer, failing: Sink) -> tuple[str, int]:
    """Publish the backlog with the failing deliveries spread in; their endpoint's id and
    the number of healthy deliveries."""
    plan = ctx.plan
    await register_endpoints(producer, ctx.sink.url, plan.backlog_endpoints)
    (endpoint,) = await register_endpoints(producer, failing.url, 1, FAILING_WORKSPACE)
    load = make_events(producer.catalogue, plan.backlog_deliveries // plan.backlog_endpoints)
    doomed = make_events(producer.catalogue, plan.retry_deliveries, FAILING_WORKSPACE)
    created = await publish_all(producer, spread(load, doomed, SPREAD))
    return endpoint.id, created - len(doomed)


async def run_worker(ctx: Context, healthy: int) -> tuple[Window, int]:
    """One worker with the short schedule: the window of the backlog, and when it ended
    (epoch ms); returns once every failing delivery is dead."""
    settings = {"RETRY_SCHEDULE": str(SCHEDULE)}
    workers = start_workers(1, ctx.redis_url, ctx.plan.concurrency, ctx.workdir, settings)
    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, workers, ctx.sink)
        window = await watch.until(healthy, WORKER_START_TIMEOUT_S, drain_timeout_s(healthy))
        drained_ms = int(time.time() * 1000)
        await until_dead(ctx, ctx.plan.retry_deliveries)
    finally:
        await stop_all(workers)
    return window, drained_ms


async def until_dead(ctx: Context, count: int) -> None:
    """Wait until ``count`` deliveries are dead (every attempt failed), or fail the run."""
    deadline = time.monotonic() + TAIL_TIMEOUT_S
    while (dead := (await ctx.stats()).get("dead", 0)) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{dead} of {count} failing deliveries dead after {TAIL_TIMEOUT_S}s")
        await asyncio.sleep(POLL_INTERVAL_S)


def collect_retries(deliveries: Sequence[Delivery], expected: int) -> list[Retry]:
    """Every retry of the failing deliveries; each must have had every attempt."""
    if len(deliveries) != expected:
        raise BenchError(f"{len(deliveries)} deliveries to the failing endpoint, not {expected}")
    retries: list[Retry] = []
    for delivery in deliveries:
        if delivery.state != DeliveryState.DEAD or len(delivery.attempts) != SCHEDULE.attempts:
            raise BenchError(
                f"{delivery.id} is {delivery.state} after {len(delivery.attempts)} attempts, "
                f"not dead after {SCHEDULE.attempts}"
            )
        for before, after in itertools.pairwise(delivery.attempts):
            if before.next_attempt_ms is None:
                raise BenchError(f"{delivery.id} attempt {before.number} has no next attempt")
            retries.append(Retry(before.next_attempt_ms, after.at_ms))
    return retries


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (NaN when there are no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
