"""``hot-path``: what Redis holds and spends per delivery, with and without ``DATABASE_URL``.

Issue 15 wants Redis to hold only the hot path: what is pending or in flight, and the
worker as fast with PostgreSQL as without. Each run measures the same backlog three
times, a few seconds apart, on the bench's own Redis: with the delivery log in Redis
(bounded by ``LOG_KEEP_PER_ENDPOINT``), then in the bench's own PostgreSQL
(:mod:`bench.pgserver`, a fresh database each time) written by the worker's own log
writer (``LOG_WRITER=worker``, the ``pgw_`` figures), then written by a ``cliq-webhooks
log-writer`` process beside a worker started with ``LOG_WRITER=separate`` (the ``pg_``
figures). Each time ``Plan.backlog_deliveries`` events go with fan-out 1 (one endpoint
in each of :data:`WORKSPACES` workspaces, events spread over them) and one worker
drains them:

* Redis bytes per pending delivery: ``used_memory`` growth from publishing, per
  delivery; per finished delivery: what is left once the worker is done (with the
  database, once every outcome is written and its record has left Redis: an
  idempotency marker per event stays for ``IDEMPOTENCY_WINDOW``, ``producer/markers.lua``);
* Redis CPU µs per delivery: ``INFO cpu`` of the bench's Redis from before publishing
  to after the worker is done (publish + deliver + record, with the database also the
  log outbox and its writer's deletes), per delivery; and over the same span the Redis
  commands per delivery (``INFO commandstats``: those the scripts make, each script call
  itself out), which the machine's load does not move, with the most called on stderr;
* the worker's deliveries/s with the database, as a ratio to without, and its CPU µs per
  delivery; with the separate writer, the log-writer's CPU µs per delivery too (from
  its start to the outbox drained) and how long after the last delivery the outbox was
  written (the ``pg_`` memory and Redis CPU figures are that run's);

Then the log writer's own rate: :func:`bench.logwriter.measure` writes as many first
attempts to the same server in batches of 500 (fan-out 10), rows/s and the CPU per row
of the writer (client) and of the server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time

from bench.context import WORKER_START_TIMEOUT_S, Context, drain_timeout_s
from bench.cpu import command_calls, data_calls, redis_seconds
from bench.logwriter import measure as measure_log_writer
from bench.pgserver import BenchPostgres, bench_postgres
from bench.procs import PYTHON, BenchError, Child
from bench.results import Run
from bench.workers import DeliveryWatch, start_workers, stop_all, worker_env
from bench.workload import make_event, publish_all, register_endpoints
from producer.context import Producer

WORKSPACES = 10
# How long the written records may take to leave Redis once every delivery is made.
FORGET_TIMEOUT_S = 60.0
POLL_S = 0.05
LOG_WRITER_BATCH = 500


async def hot_path(ctx: Context) -> Run:
    """The backlog without and with the database (its writer in the worker, then in a
    process of its own), then the log writer alone."""
    async with bench_postgres() as postgres:
        without = await one_store(ctx, None)
        in_worker = await one_store(ctx, postgres, separate=False)
        with_db = await one_store(ctx, postgres, separate=True)
        batches = max(1, ctx.plan.backlog_deliveries // LOG_WRITER_BATCH)
        writer = await measure_log_writer(
            await postgres.fresh_database(), batches * LOG_WRITER_BATCH, LOG_WRITER_BATCH
        )
    return {
        **{f"redis_{name}": value for name, value in without.items()},
        **{f"pgw_{name}": value for name, value in in_worker.items()},
        **{f"pg_{name}": value for name, value in with_db.items()},
        "pgw_ratio": in_worker["rate"] / without["rate"],
        "pg_ratio": with_db["rate"] / without["rate"],
        "writer_rows_s": writer.rows_per_s,
        "writer_client_us": writer.client_cpu_s / writer.outcomes * 1e6,
        "writer_server_us": writer.server_cpu_s / writer.outcomes * 1e6,
    }


async def one_store(ctx: Context, postgres: BenchPostgres | None, separate: bool = False) -> Run:
    """Publish the backlog (fan-out 1), drain it with one worker (``separate``: its log
    written by a log-writer process); the figures."""
    plan = ctx.plan
    overrides = {} if postgres is None else {"DATABASE_URL": await postgres.fresh_database()}
    if separate:
        overrides["LOG_WRITER"] = "separate"
    # The publisher is told too, as a deployment's API would be (publish.lua then keeps
    # no per-endpoint index: the database has it).
    settings = dataclasses.replace(ctx.settings, database_url=overrides.get("DATABASE_URL", ""))
    await ctx.reset()
    async with Producer(settings) as producer:
        for w in range(WORKSPACES):
            await register_endpoints(producer, ctx.sink.url, 1, workspace=f"ws_bench_{w}")
        events = [
            make_event(producer.catalogue, n, f"ws_bench_{n % WORKSPACES}")
            for n in range(plan.backlog_deliveries)
        ]
        empty, cpu_before = await ctx.used_memory(), await redis_seconds(ctx.redis)
        await ctx.redis.config_resetstat()
        queued = await publish_all(producer, events)
        pending = await ctx.used_memory()
    if queued != len(events):
        raise BenchError(f"{len(events)} events made {queued} deliveries, not 1 each")
    writers = {"logwriter": await start_log_writer(ctx, overrides)} if separate else {}
    writer_cpu_before = writers["logwriter"].cpu_seconds() if writers else 0.0
    workers = start_workers(1, ctx.redis_url, plan.concurrency, ctx.workdir, overrides)
    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, workers, ctx.sink, others=writers)
        window = await watch.until(queued, WORKER_START_TIMEOUT_S, drain_timeout_s(queued))
        delivered_at = time.monotonic()
        if postgres is not None:
            await written_and_forgotten(ctx)
        drain_s = time.monotonic() - delivered_at
        writer_cpu = writers["logwriter"].cpu_seconds() - writer_cpu_before if writers else 0.0
        cpu_after = await redis_seconds(ctx.redis)
        calls = await command_calls(ctx.redis)
    finally:
        await stop_all([*workers, *writers.values()])
    finished = await ctx.used_memory()
    stats = await ctx.stats()
    if stats.get("dead", 0) or stats.get("scheduled", 0):
        raise BenchError(f"some deliveries failed: {stats}")
    store = "redis" if postgres is None else "postgresql, log-writer" if separate else "postgresql"
    busiest = sorted(calls.items(), key=lambda item: -item[1])[:12]
    print(
        f"hot-path ({store}): commands per delivery: "
        + " ".join(f"{name} {n / queued:.2f}" for name, n in busiest),
        file=sys.stderr,
    )
    separate_figures: Run = {}
    if separate:
        separate_figures = {
            "writer_us": writer_cpu / queued * 1e6,
            "cpu_logwriter": window.cpu["logwriter"],
            "drain_s": drain_s,
        }
    return {
        **separate_figures,
        "rate": window.rate,
        "redis_calls": data_calls(calls) / queued,
        "bytes_pending": (pending - empty) / queued,
        "bytes_finished": (finished - empty) / queued,
        "redis_us": (cpu_after - cpu_before) / queued * 1e6,
        # CPU per delivery barely moves on a busy machine, unlike the rate.
        "worker_us": window.worker_cpu / window.rate * 1e6,
        "cpu_worker0": window.cpu["worker0"],
        "cpu_other": window.cpu["other"],
    }


async def start_log_writer(ctx: Context, overrides: dict[str, str]) -> Child:
    """A ``cliq-webhooks log-writer`` on the bench's Redis and the run's database, once
    its writers run (its startup is not what a delivery costs)."""
    env = worker_env(ctx.redis_url, ctx.plan.concurrency, ctx.workdir, overrides)
    writer = Child(
        "log-writer",
        [PYTHON, "-m", "cli", "log-writer"],
        env=env,
        log=ctx.workdir / "log-writer.log",
    )
    try:
        await writer.wait_for_output("log_writer_started", WORKER_START_TIMEOUT_S)
    except BaseException:
        await writer.stop()
        raise
    return writer


async def written_and_forgotten(ctx: Context) -> None:
    """Wait until the log outbox is empty: every outcome written, the records deleted
    (the writer deletes both in one script call)."""
    deadline = time.monotonic() + FORGET_TIMEOUT_S
    while int(await ctx.redis.xlen(ctx.keys.log_outbox)) > 0:
        if time.monotonic() > deadline:
            raise BenchError(f"the log outbox did not drain within {FORGET_TIMEOUT_S:g}s")
        await asyncio.sleep(POLL_S)
