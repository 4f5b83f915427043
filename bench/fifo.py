"""The ``fifo`` scenario: what ``ordering: fifo`` costs an endpoint, and whether a busy
FIFO endpoint slows the other endpoints down.

Four runs, each from an empty Redis with one worker process started after the backlog
is published, each timed from the endpoint's first delivery to its last by polling its
delivered set (``<prefix>:ep:<id>:done``):

1. an ordinary (parallel, ``max_in_flight`` 10) endpoint alone;
2. a FIFO endpoint alone: one delivery at a time, the next enqueued as the previous is
   recorded, so its rate is one over the round trip (pickup, POST, record);
3. the ordinary endpoint again, while a FIFO endpoint of another workspace, whose
   receiver answers after :data:`HELD_DELAY_MS`, has a backlog that outlasts the run:
   its turn is held (a request in flight, its line waiting) nearly all the time, at so
   few deliveries a second that their CPU is next to nothing. Its rate against run 1's
   is what FIFO handling itself costs the others (target 1.00x);
4. the same beside a FIFO endpoint on the fast sink, delivering as fast as its line
   goes: its rate against run 1's also counts the worker CPU that the FIFO endpoint's
   own deliveries take, each a batch of one (``fifo_cpu_share``: their share of the
   worker's CPU during the run, at the worker µs per delivery of run 2).

On two shared cores a run's rate follows the CPU the worker gets, which other work on
the machine changes from second to second. Two figures say whether the ordinary
endpoint's deliveries got dearer beside the FIFO one, each with the FIFO endpoint's own
deliveries taken out at their cost in run 2: the worker's CPU per ordinary delivery
(``beside_us``), and the Redis commands per ordinary delivery from the worker's start
to the ordinary endpoint's last delivery (``beside_cmds``, ``INFO commandstats``: no
load moves it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.context import WORKER_START_TIMEOUT_S, Context, cpu_metrics, drain_timeout_s
from bench.cpu import command_calls, data_calls
from bench.procs import BenchError
from bench.results import Run
from bench.sink import start_aiohttp, temporary
from bench.workers import DeliveryWatch, Window, start_workers, stop_all
from bench.workload import make_events, publish_all
from producer.context import Producer
from producer.endpoint import Endpoint

FIFO_WORKSPACE = "ws_bench_fifo"
# The FIFO backlog of runs 3 and 4 lasts this many times the ordinary endpoint's drain.
BUSY_MARGIN = 2.0
MAX_BUSY_EVENTS = 50_000
# Run 3's FIFO receiver answers this late: at most 20 deliveries/s, each waiting on it.
HELD_DELAY_MS = 50.0


@dataclass(frozen=True)
class Drained:
    """One run: the measured endpoint's window, the Redis commands from the worker's
    start to its last delivery, and (beside a FIFO endpoint) the FIFO endpoint's
    deliveries/s in the window and deliveries in all by then."""

    window: Window
    commands: int
    deliveries: int
    fifo_rate: float = 0.0
    fifo_deliveries: int = 0


async def fifo(ctx: Context) -> Run:
    """The FIFO endpoint's rate, the ordinary one's alone and beside a busy FIFO one."""
    plan = ctx.plan
    alone_run = await _drain(ctx, plan.fifo_parallel_events, "parallel")
    line_run = await _drain(ctx, plan.fifo_events, "fifo")
    alone, in_line = alone_run.window, line_run.window
    ordinary_s = plan.fifo_parallel_events / alone.rate
    async with temporary(start_aiohttp(ctx.workdir, 1, delay_ms=HELD_DELAY_MS)) as slow:
        held_events = _busy_events(1000 / HELD_DELAY_MS, ordinary_s)
        held_run = await _beside_busy_fifo(ctx, plan.fifo_parallel_events, held_events, slow.url)
    busy_events = _busy_events(in_line.rate, ordinary_s)
    busy_run = await _beside_busy_fifo(ctx, plan.fifo_parallel_events, busy_events, ctx.sink.url)
    held, fifo_held = held_run.window, held_run.fifo_rate
    beside, fifo_during = busy_run.window, busy_run.fifo_rate
    fifo_us = _worker_us(in_line)
    parallel_us = _worker_us(alone)
    beside_us = _ordinary_us(beside, fifo_during, fifo_us)
    parallel_cmds = alone_run.commands / alone_run.deliveries
    fifo_cmds = line_run.commands / line_run.deliveries
    beside_cmds = (busy_run.commands - busy_run.fifo_deliveries * fifo_cmds) / busy_run.deliveries
    return {
        "fifo_rate": in_line.rate,
        "parallel_rate": alone.rate,
        "held_rate": held.rate,
        "beside_rate": beside.rate,
        "fifo_share": in_line.rate / alone.rate,
        "held_ratio": held.rate / alone.rate,
        "beside_ratio": beside.rate / alone.rate,
        "fifo_held_rate": fifo_held,
        "fifo_busy_rate": fifo_during,
        "fifo_latency_ms": 1000 / in_line.rate,
        "parallel_us": parallel_us,
        "fifo_us": fifo_us,
        "held_us": _ordinary_us(held, fifo_held, fifo_us),
        "beside_us": beside_us,
        "beside_us_ratio": beside_us / parallel_us,
        "parallel_cmds": parallel_cmds,
        "fifo_cmds": fifo_cmds,
        "beside_cmds": beside_cmds,
        "beside_cmds_ratio": beside_cmds / parallel_cmds,
        # Of the worker's CPU in run 4, what the FIFO endpoint's deliveries took, at what
        # each one cost in run 2 (the rest went to the ordinary endpoint's).
        "fifo_cpu_share": fifo_during * fifo_us / 1e6 / beside.worker_cpu,
        **cpu_metrics(alone.cpu, "parallel_"),
        **cpu_metrics(in_line.cpu, "fifo_"),
        **cpu_metrics(held.cpu, "held_"),
        **cpu_metrics(beside.cpu),
    }


def _busy_events(fifo_rate: float, ordinary_s: float) -> int:
    """A FIFO backlog that outlasts the ordinary endpoint's drain by BUSY_MARGIN."""
    return min(MAX_BUSY_EVENTS, math.ceil(BUSY_MARGIN * fifo_rate * ordinary_s) + 100)


def _worker_us(window: Window) -> float:
    """The worker's CPU µs per delivery timed in ``window``."""
    return window.worker_cpu * 1e6 / window.rate


def _ordinary_us(window: Window, fifo_rate: float, fifo_us: float) -> float:
    """The worker's CPU µs per ordinary delivery in ``window``, once the FIFO endpoint's
    deliveries (``fifo_rate`` a second beside it) are taken out at ``fifo_us`` each."""
    return (window.worker_cpu * 1e6 - fifo_rate * fifo_us) / window.rate


async def _endpoint(
    producer: Producer, url: str, ordering: str, workspace: str, path: int
) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id=workspace,
        url=f"{url}/hook/{path}",
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


async def _drain(ctx: Context, events: int, ordering: str) -> Drained:
    """One endpoint of ``ordering`` alone, ``events`` deliveries drained by one worker."""
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        endpoint = await _endpoint(producer, ctx.sink.url, ordering, "ws_bench", 0)
        queued = await publish_all(producer, make_events(producer.catalogue, events))
    overrides = _worker_overrides(queued)
    await ctx.redis.config_resetstat()
    workers = start_workers(1, ctx.redis_url, ctx.plan.concurrency, ctx.workdir, overrides)
    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, workers, ctx.sink, lambda: _done(ctx, endpoint))
        window = await watch.until(queued, WORKER_START_TIMEOUT_S, drain_timeout_s(queued))
        commands = data_calls(await command_calls(ctx.redis))
    finally:
        await stop_all(workers)
    return Drained(window, commands, queued)


async def _beside_busy_fifo(ctx: Context, events: int, busy_events: int, fifo_url: str) -> Drained:
    """The ordinary endpoint's run while a FIFO endpoint on ``fifo_url`` drains
    ``busy_events`` beside it."""
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        busy = await _endpoint(producer, fifo_url, "fifo", FIFO_WORKSPACE, 1)
        ordinary = await _endpoint(producer, ctx.sink.url, "parallel", "ws_bench", 0)
        # The FIFO backlog first: its line is busy before the ordinary deliveries queue.
        await publish_all(producer, make_events(producer.catalogue, busy_events, FIFO_WORKSPACE))
        queued = await publish_all(producer, make_events(producer.catalogue, events))
    overrides = _worker_overrides(busy_events + queued)
    await ctx.redis.config_resetstat()
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
        commands = data_calls(await command_calls(ctx.redis))
        busy_at_end = await _done(ctx, busy)
        waiting = int(await ctx.redis.llen(ctx.keys.endpoint_fifo(busy.id)))
    finally:
        await stop_all(workers)
    if waiting == 0:
        raise BenchError(
            f"the FIFO endpoint's {busy_events} deliveries ended before the ordinary "
            "endpoint's: it was not busy throughout, so the comparison says nothing"
        )
    fifo_rate = (busy_at_end - busy_at_start[0]) / window.seconds
    return Drained(window, commands, queued, fifo_rate, busy_at_end)
