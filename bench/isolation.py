"""``isolation``: do endpoints that never answer slow down deliveries to the others?

Two runs, each with a fresh worker and the same backlog (``Plan.isolation_events``
events, each fanned out to the ten endpoints of one workspace): first all ten point
at the healthy sink, then one of them points at a receiver that accepts connections
and never answers. Each run is timed from the first delivery to the last delivery
that can succeed: all of them in the first run, the nine healthy endpoints' in the
second. The hung endpoint's timeouts and retries are not waited for.

Then the many-hung case (issue 13, point 5): one healthy endpoint on the recording
sink, alone and then with 50 hung endpoints in its workspace, one worker with
``WORKER_CONCURRENCY=100``. Events are published one per call at a steady rate and
each is timed from its publish to its arrival at the healthy endpoint: the healthy
one must keep its rate (at least 0.9x of alone) and a p99 under 1 s.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import aiohttp

from bench.arrivals import collect_arrivals, offer_load
from bench.context import WORKER_START_TIMEOUT_S, Context, cpu_metrics, drain_timeout_s
from bench.procs import BenchError
from bench.results import Run
from bench.sink import Sink, start_hang_sink, temporary
from bench.workers import DeliveryWatch, Window, metrics_env, scrape, start_workers, stop_all
from bench.workload import make_event, make_events, publish_all, register_endpoints
from producer.context import Producer
from producer.events import Catalogue, Event
from producer.keys import DELIVERY_QUEUES, LAYOUT
from worker.localredis import free_port

ENDPOINTS = 10
WORKER_SETTINGS = {
    # The default, set explicitly: a hung request holds its slot (and its job) this long.
    "DELIVERY_TIMEOUT": "10",
    # When the run is over, the requests still hanging are cancelled after this grace
    # instead of waiting out their timeout (a cancelled attempt is not recorded).
    "SHUTDOWN_GRACE": "1",
}
DEFERRED = "cliq_deliveries_deferred_total"
# The many-hung case: events published at MANY_RATE/s for MANY_SECONDS to one healthy
# endpoint and MANY_HUNG hung ones, each event to all of them.
MANY_HUNG = 50
MANY_RATE = 10.0
MANY_SECONDS = 12.0
MANY_SETTINGS = {**WORKER_SETTINGS, "WORKER_CONCURRENCY": "100"}
# After the last publish: events not arrived by then count as arriving then (missing).
MANY_ARRIVAL_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Observed:
    """One run: its window, and the worker's state when the last deliverable delivery landed."""

    window: Window
    deferred: float  # deliveries put back without an attempt (endpoint at its cap)
    hung_leases: int  # in-flight leases held on the tenth endpoint
    active_jobs: int  # bullmq delivery jobs still in progress
    timeouts: int  # deliveries scheduled for a retry (a hung request timed out)

    @property
    def per_cpu_s(self) -> float:
        """Deliveries per CPU-second of the worker."""
        return self.window.rate / self.window.worker_cpu


async def isolation(ctx: Context) -> Run:
    """The healthy run, then the run with one hung endpoint; their rates and ratio."""
    catalogue = Catalogue.with_extras(ctx.settings.event_types_extra)
    events = make_events(catalogue, ctx.plan.isolation_events)
    healthy = await run_once(ctx, events, None)
    async with temporary(start_hang_sink(ctx.workdir)) as hanging:
        hung = await run_once(ctx, events, hanging)
    alone = await healthy_one(ctx, None)
    async with temporary(start_hang_sink(ctx.workdir)) as hanging_many:
        many = await healthy_one(ctx, hanging_many)
    return {
        **alone.metrics("many_alone_"),
        **many.metrics("many_"),
        "many_ratio": many.rate / alone.rate,
        "rate": hung.window.rate,
        "healthy_rate": healthy.window.rate,
        "ratio": hung.window.rate / healthy.window.rate,
        # Counting only the nine endpoints' share of the healthy run: what those nine
        # receivers see (the worker's time freed by the hung endpoint goes to them).
        "share_ratio": hung.window.rate / (healthy.window.rate * (ENDPOINTS - 1) / ENDPOINTS),
        "cpu_ratio": hung.per_cpu_s / healthy.per_cpu_s,
        "deferred": hung.deferred,
        "healthy_deferred": healthy.deferred,
        "hung_leases": hung.hung_leases,
        "hung_active_jobs": hung.active_jobs,
        "hung_timeouts": hung.timeouts,
        **cpu_metrics(hung.window.cpu),
        **cpu_metrics(healthy.window.cpu, "healthy_"),
    }


async def run_once(ctx: Context, events: Sequence[Event], hanging: Sink | None) -> Observed:
    """Queue ``events`` to ten endpoints (the tenth on ``hanging`` if given), time one worker."""
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        await register_endpoints(producer, ctx.sink.url, ENDPOINTS - 1)
        (tenth,) = await register_endpoints(producer, (hanging or ctx.sink).url, 1)
        queued = await publish_all(producer, events)
    # The hung endpoint's deliveries are never recorded as delivered.
    deliverable = queued if hanging is None else queued - len(events)
    port = free_port()
    settings = {**WORKER_SETTINGS, **metrics_env(port)}
    workers = start_workers(1, ctx.redis_url, ctx.plan.concurrency, ctx.workdir, settings)
    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, workers, ctx.sink)
        window = await watch.until(
            deliverable, WORKER_START_TIMEOUT_S, drain_timeout_s(deliverable)
        )
        samples = await scrape(port)
        leases = await held_leases(ctx, tenth.id)
        active = sum(
            [await ctx.redis.llen(ctx.keys.queue_key(q, "active")) for q in DELIVERY_QUEUES]
        )
        if hanging is not None:
            hanging.check_alive()
    finally:
        await stop_all(workers)
    timeouts = await check_outcomes(ctx, hung=hanging is not None)
    return Observed(window, samples.get(DEFERRED, float("nan")), leases, active, timeouts)


async def held_leases(ctx: Context, endpoint_id: str) -> int:
    """In-flight leases on an endpoint, summed over the workers holding some.

    Fields with a ``:`` are expiry times and recent wishes, not counts (worker/leases.lua).
    """
    key = f"{ctx.keys.prefix}:{LAYOUT['endpoint_leases'].format(endpoint_id)}"
    fields = cast(dict[str, str], await ctx.redis.hgetall(key))
    return sum(int(value) for name, value in fields.items() if ":" not in name)


async def check_outcomes(ctx: Context, *, hung: bool) -> int:
    """Fail the run if a delivery died, or failed at all without a hung endpoint.

    Returns the deliveries waiting for a retry: with a hung endpoint, those of its
    requests that timed out (DELIVERY_TIMEOUT) while the others were still delivered.
    """
    stats = await ctx.stats()
    scheduled = stats.get("scheduled", 0)
    if stats.get("dead", 0) or (scheduled and not hung):
        raise BenchError(f"deliveries failed during the isolation run: {stats}")
    return scheduled


@dataclass(frozen=True)
class Arrivals:
    """The healthy endpoint's events in the many-hung case: publish -> arrival times."""

    millis: list[float]  # sorted; a missing event counts as arriving at the deadline
    rate: float  # events arrived / (last arrival - first publish)
    within_10s: int  # arrived within 10 s of the last publish
    missing: int  # not arrived MANY_ARRIVAL_TIMEOUT_S after the last publish
    deferred: float

    def metrics(self, prefix: str) -> Run:
        """The run's figures, named ``<prefix>rate``, ``<prefix>p99``..."""
        cuts = statistics.quantiles(self.millis, n=100, method="inclusive")
        return {
            f"{prefix}rate": self.rate,
            f"{prefix}p50": cuts[49],
            f"{prefix}p99": cuts[98],
            f"{prefix}max": self.millis[-1],
            f"{prefix}within_10s": self.within_10s,
            f"{prefix}events": len(self.millis),
            f"{prefix}missing": self.missing,
            f"{prefix}deferred": self.deferred,
        }


async def healthy_one(ctx: Context, hanging: Sink | None) -> Arrivals:
    """Time a steady flow of events to one healthy endpoint (and MANY_HUNG hung ones)."""
    await ctx.reset()
    port = free_port()
    settings = {**MANY_SETTINGS, **metrics_env(port)}
    async with Producer(ctx.settings) as producer, aiohttp.ClientSession() as client:
        await register_endpoints(producer, ctx.recorder.url, 1)
        workers = start_workers(1, ctx.redis_url, 100, ctx.workdir, settings)
        try:
            # The first delivery waits for the worker to start: not measured, and sent
            # before the hung endpoints exist.
            warm_up = make_event(producer.catalogue, -1)
            await producer.publisher.publish(warm_up)
            await collect_arrivals(client, ctx.recorder, [warm_up.id], WORKER_START_TIMEOUT_S)
            if hanging is not None:
                await register_endpoints(producer, hanging.url, MANY_HUNG)
            published, _offered = await offer_load(producer, MANY_RATE, MANY_SECONDS)
            last_publish = time.time()
            arrivals = await collect_arrivals(
                client, ctx.recorder, published, MANY_ARRIVAL_TIMEOUT_S, complete=False
            )
            deadline = time.time()
            samples = await scrape(port)
            if hanging is not None:
                hanging.check_alive()
        finally:
            await stop_all(workers)
    came = {event_id: arrivals[event_id] for event_id in published if event_id in arrivals}
    millis = sorted(
        (came.get(event_id, deadline) - at) * 1000 for event_id, at in published.items()
    )
    span_s = max(came.values(), default=deadline) - min(published.values())
    return Arrivals(
        millis=millis,
        rate=len(came) / span_s,
        within_10s=sum(1 for at in came.values() if at <= last_publish + 10),
        missing=len(published) - len(came),
        deferred=samples.get(DEFERRED, float("nan")),
    )
