"""The scenarios. Each starts from an empty Redis and returns the metrics of one run.

The workers' throughput, publishing and latency scenarios are here; the peers the
workers are compared with (raw-signer, raw-aiohttp, node-bullmq) are in bench/peers.py,
and publish-api, isolation, backlog, retry-timing, fifo, hot-path and shards have a module each
(:data:`SLOW_SCENARIOS` run once by default).
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable

import aiohttp

from bench.arrivals import collect_arrivals, offer_load
from bench.backlog import backlog
from bench.context import WORKER_START_TIMEOUT_S, Context, cpu_metrics, drain_timeout_s
from bench.cpu import CpuMeter, shares
from bench.fifo import fifo
from bench.hotpath import hot_path
from bench.isolation import isolation
from bench.peers import node_bullmq, raw_aiohttp, raw_signer
from bench.procs import BenchError
from bench.publishapi import publish_api
from bench.results import Run
from bench.retrytiming import retry_timing
from bench.shards import shards
from bench.workers import DeliveryWatch, cpu_meter, start_workers, stop_all
from bench.workload import make_event, make_events, publish_all, register_endpoints
from producer.context import Producer

ARRIVAL_TIMEOUT_S = 30.0
# Seconds of the latency scenario's load run before the measured ones (not measured).
LATENCY_WARM_UP_S = 1.0


async def worker_throughput(ctx: Context, processes: int) -> Run:
    """Queue a backlog, then time ``processes`` workers from first to last delivery."""
    plan = ctx.plan
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        await register_endpoints(producer, ctx.sink.url, plan.backlog_endpoints)
        events = make_events(producer.catalogue, plan.backlog_deliveries // plan.backlog_endpoints)
        queued = await publish_all(producer, events)
    workers = start_workers(processes, ctx.redis_url, plan.concurrency, ctx.workdir)
    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, workers, ctx.sink)
        window = await watch.until(queued, WORKER_START_TIMEOUT_S, drain_timeout_s(queued))
    finally:
        await stop_all(workers)
    stats = await ctx.redis.hgetall(ctx.keys.stats)
    if int(stats.get("dead", 0)) or int(stats.get("scheduled", 0)):
        raise BenchError(f"some deliveries failed: {stats}")
    return {
        "rate": window.rate,
        "seconds": window.seconds,
        # Deliveries per CPU-second of the workers: what a core buys, however busy
        # the machine was (the rate alone drops when something else takes the CPU).
        "per_cpu_s": window.rate / window.worker_cpu,
        "concurrency": plan.concurrency,
        "redis_us": window.cpu["redis"] / window.rate * 1e6,
        **cpu_metrics(window.cpu),
    }


async def worker_1proc(ctx: Context) -> Run:
    """One worker process draining the backlog."""
    return await worker_throughput(ctx, 1)


async def worker_2proc(ctx: Context) -> Run:
    """Two worker processes draining the backlog."""
    return await worker_throughput(ctx, 2)


async def publish_batch(ctx: Context) -> Run:
    """Events/s through ``publish_many`` (fan-out 1), and Redis bytes per pending delivery."""
    plan = ctx.plan
    meter = CpuMeter(ctx.redis, {})
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        await register_endpoints(producer, ctx.sink.url, 1)
        events = make_events(producer.catalogue, plan.publish_events)
        memory, first = await ctx.used_memory(), await meter.sample()
        created = await publish_all(producer, events)
        last = await meter.sample()
        narrow_bytes = (await ctx.used_memory() - memory) / created
    if created != plan.publish_events:
        raise BenchError(f"{plan.publish_events} events made {created} deliveries, not 1 each")

    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        await register_endpoints(producer, ctx.sink.url, plan.wide_fanout)
        events = make_events(producer.catalogue, plan.wide_events)
        memory = await ctx.used_memory()
        wide = await publish_all(producer, events)
        wide_bytes = (await ctx.used_memory() - memory) / wide
    return {
        "rate": plan.publish_events / (last.at - first.at),
        "bytes_fanout_1": narrow_bytes,
        "bytes_fanout_wide": wide_bytes,
        **cpu_metrics(shares(first, last)),
    }


async def latency(ctx: Context) -> Run:
    """Publish->delivered times of single events published at a steady rate to one worker."""
    plan = ctx.plan
    await ctx.reset()
    async with Producer(ctx.settings) as producer, aiohttp.ClientSession() as client:
        await register_endpoints(producer, ctx.recorder.url, 1)
        workers = start_workers(1, ctx.redis_url, plan.concurrency, ctx.workdir)
        try:
            # The first delivery also waits for the worker to start: not measured.
            warm_up = make_event(producer.catalogue, -1)
            await producer.publisher.publish(warm_up)
            await collect_arrivals(client, ctx.recorder, [warm_up.id], WORKER_START_TIMEOUT_S)
            # The first burst grows the publisher's Redis pool and the worker's HTTP pool
            # (new connections, ~0.1 s of slow publishes here): the same load runs
            # unmeasured first, so the figures are those of a running service.
            warming, _ = await offer_load(producer, plan.latency_rate, LATENCY_WARM_UP_S)
            await collect_arrivals(client, ctx.recorder, warming, ARRIVAL_TIMEOUT_S)
            meter = cpu_meter(ctx.redis, workers, ctx.recorder)
            first = await meter.sample()
            published, offered = await offer_load(producer, plan.latency_rate, plan.latency_seconds)
            last = await meter.sample()
            arrivals = await collect_arrivals(client, ctx.recorder, published, ARRIVAL_TIMEOUT_S)
        finally:
            await stop_all(workers)
    millis = sorted((arrivals[event_id] - at) * 1000 for event_id, at in published.items())
    cuts = statistics.quantiles(millis, n=100, method="inclusive")
    cpu = shares(first, last)
    return {
        "p50": cuts[49],
        "p99": cuts[98],
        "max": millis[-1],
        "offered_rate": offered,
        "events": len(millis),
        # Compare with the backlog's cost (1000 / worker-1proc's per_cpu_s): here every
        # job carries one delivery, as when events arrive one at a time.
        "worker_cpu_ms": cpu["worker0"] * (last.at - first.at) / len(millis) * 1000,
        **cpu_metrics(cpu),
    }


SCENARIOS: dict[str, Callable[[Context], Awaitable[Run]]] = {
    "raw-signer": raw_signer,
    "raw-aiohttp": raw_aiohttp,
    "node-bullmq": node_bullmq,
    "worker-1proc": worker_1proc,
    "worker-2proc": worker_2proc,
    "publish-batch": publish_batch,
    "publish-api": publish_api,
    "latency": latency,
    "isolation": isolation,
    "backlog": backlog,
    "retry-timing": retry_timing,
    "fifo": fifo,
    "hot-path": hot_path,
    "shards": shards,
}

# Minutes each, and compared with nothing from another round: by default they run in the
# first round only (Plan.slow_runs, --slow-runs).
SLOW_SCENARIOS = frozenset({"isolation", "backlog", "retry-timing", "fifo", "hot-path", "shards"})
