"""``backlog``: a large pending backlog, the Redis memory it takes, one worker draining it.

``Plan.backlog_size`` deliveries (200,000 by default, ``--backlog N`` for a manual run
with up to millions) are published with ``publish_many`` before any worker runs,
fanned out to ``Plan.backlog_endpoints`` endpoints like worker-1proc's backlog. The
run fails unless the queued gauge, the ``queued`` field of the stats hash that
workers export as ``cliq_queue_deliveries{state="queued"}``, counts every pending
delivery before the drain and reads 0 after it, in the hash and on ``/metrics``.
"""

from __future__ import annotations

import asyncio
import time

from bench.context import WORKER_START_TIMEOUT_S, Context, cpu_metrics, drain_timeout_s
from bench.procs import BenchError
from bench.results import Run
from bench.workers import DeliveryWatch, Window, metrics_env, scrape, start_workers, stop_all
from bench.workload import publish_generated, register_endpoints
from producer.context import Producer
from worker.localredis import free_port

QUEUED_SERIES = 'cliq_queue_deliveries{state="queued"}'
# Workers refresh their queue gauges every 2 s (worker/service.py, housekeeping).
GAUGE_TIMEOUT_S = 10.0
GAUGE_POLL_S = 0.25


async def backlog(ctx: Context) -> Run:
    """Publish the backlog, weigh it, drain it with one worker, check the gauge both times."""
    plan = ctx.plan
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        await register_endpoints(producer, ctx.sink.url, plan.backlog_endpoints)
        empty = await ctx.used_memory()
        created = await publish_generated(producer, plan.backlog_size // plan.backlog_endpoints)
        pending = await ctx.used_memory()
    await expect_stats(ctx, "before the drain", queued=created, scheduled=0, delivered=0)
    window = await drain(ctx, created)
    await expect_stats(ctx, "after the drain", queued=0, scheduled=0, delivered=created, dead=0)
    retained = await ctx.used_memory()
    return {
        "rate": window.rate,
        "seconds": window.seconds,
        "deliveries": created,
        "per_cpu_s": window.rate / window.worker_cpu,
        "bytes_pending": (pending - empty) / created,
        # What stays once delivered: delivery records with their attempt, kept for
        # DELIVERY_RETENTION (queue jobs are gone by then).
        "bytes_retained": (retained - empty) / created,
        "memory_mb": (pending - empty) / 1e6,
        **cpu_metrics(window.cpu),
    }


async def drain(ctx: Context, created: int) -> Window:
    """One worker delivers the whole backlog; then its queued gauge must read 0."""
    port = free_port()
    workers = start_workers(1, ctx.redis_url, ctx.plan.concurrency, ctx.workdir, metrics_env(port))
    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, workers, ctx.sink)
        window = await watch.until(created, WORKER_START_TIMEOUT_S, drain_timeout_s(created))
        await gauge_reaches(port, QUEUED_SERIES, 0.0)
    finally:
        await stop_all(workers)
    return window


async def gauge_reaches(port: int, series: str, value: float) -> None:
    """Poll the worker's ``/metrics`` until ``series`` reads ``value``, or fail the run."""
    deadline = time.monotonic() + GAUGE_TIMEOUT_S
    while (seen := (await scrape(port)).get(series)) != value:
        if time.monotonic() > deadline:
            raise BenchError(f"{series} reads {seen} {GAUGE_TIMEOUT_S:g}s after the drain")
        await asyncio.sleep(GAUGE_POLL_S)


async def expect_stats(ctx: Context, when: str, **expected: int) -> None:
    """Fail the run unless the stats hash holds ``expected`` (a missing field reads 0)."""
    stats = await ctx.stats()
    wrong = {
        name: stats.get(name, 0) for name, want in expected.items() if stats.get(name, 0) != want
    }
    if wrong:
        raise BenchError(f"stats hash {when}: {wrong}, expected {expected}")
