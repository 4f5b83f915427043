"""``python -m bench.soak`` (``make soak``): many deliveries through one worker, Redis
memory over time.

Issue 15: Redis holds the hot path only, so its memory follows the backlog, not the
traffic so far. ``--deliveries`` (2,000,000 by default) events are published with
fan-out 1 (one endpoint in each of ten workspaces) while one worker delivers them to
the bench's sink; the publisher keeps at most ``--max-pending`` (200,000) waiting, so
the run is a long stream rather than one huge backlog. Redis ``used_memory`` (client
buffers excluded) is sampled every ``--interval`` seconds (10) from start to
``--tail`` seconds (60) after the last delivery and its log entry are written (the
after-drain figures from :data:`SETTLE_S` after that); then a
plot goes to ``bench/results/soak-<store>-<deliveries>.png`` and the start, peak and
after-drain figures to stdout (JSON to ``--json``). Memory is flat after the drain when
the finished deliveries have left Redis: what stays is the registry and one
idempotency marker per event for ``IDEMPOTENCY_WINDOW`` (24 h; a field of 8 bytes in a
small shared hash, ``producer/markers.lua``, about 15-30 B with its share of the hash;
settings pass through from the environment, as in ``python -m bench``).

Everything is the bench's own, on loopback and stopped by PID: a ``redis-server``, with
``--store postgresql`` (the default) a PostgreSQL (:mod:`bench.pgserver`), the sink and
the worker. matplotlib comes with the ``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from bench.pgserver import bench_postgres
from bench.procs import BenchError, Child
from bench.sink import start_throughput_sink
from bench.workers import start_workers, stop_all
from bench.workload import PUBLISH_CHUNK, make_event, publish_all, register_endpoints
from producer.context import Producer
from producer.keys import DELIVERY_QUEUES, Keys
from producer.logs import configure as configure_logging
from producer.loop import run_event_loop
from producer.redis.clients import redis_client
from producer.settings import ProducerSettings
from worker.localredis import LocalRedis

RESULTS = Path(__file__).resolve().parent / "results"
WORKSPACES = 10
STORES = ("postgresql", "redis")
# How often the publisher looks at the backlog when it is full.
FEED_POLL_S = 0.2


@dataclass(frozen=True)
class Sample:
    """One look at Redis."""

    at_s: float
    used_bytes: int
    delivered: int
    queued: int
    log_outbox: int
    # Delivery jobs still in a worker's hands: a job ends after its deliveries are
    # recorded, and its data leaves Redis then.
    active_jobs: int


@dataclass(frozen=True)
class SoakResult:
    """The run's figures (bytes of Redis ``used_memory``, clients' buffers excluded)."""

    store: str
    deliveries: int
    seconds_to_drain: float
    start_bytes: int
    peak_bytes: int
    after_drain_bytes: int
    # The spread of the samples taken after the drain: flat when small.
    after_drain_min_bytes: int
    after_drain_max_bytes: int
    plot: str
    samples: int


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--deliveries", type=int, default=2_000_000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--tail", type=float, default=60.0, help="seconds sampled after the drain")
    parser.add_argument("--max-pending", type=int, default=200_000)
    parser.add_argument("--store", choices=STORES, default="postgresql")
    parser.add_argument("--concurrency", type=int, default=200, help="WORKER_CONCURRENCY")
    parser.add_argument("--sink", choices=("auto", "nginx", "aiohttp"), default="auto")
    parser.add_argument("--json", type=Path, help="also write the figures and samples here")
    parser.add_argument(
        "--plot", type=Path, help="the PNG (default bench/results/soak-<store>-<deliveries>.png)"
    )
    args = parser.parse_args(argv)
    for name in ("deliveries", "max_pending", "concurrency"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.interval <= 0 or args.tail <= SETTLE_S:
        parser.error(f"--interval must be positive and --tail more than {SETTLE_S:g}")
    return args


# The after-drain figures start this long after the drain: what Redis frees right after
# the last writes (up to ~0.7 MB at 2,000 deliveries, in the same keys) is gone within
# half a second; memory then stays where it is.
SETTLE_S = 1.0


async def used_memory(redis: aioredis.Redis) -> int:
    """``used_memory`` without the clients' buffers (see bench.context.Context)."""
    memory = await redis.info("memory")
    return int(memory["used_memory"]) - int(memory["mem_clients_normal"])


async def sample(redis: aioredis.Redis, keys: Keys, started: float) -> Sample:
    """Memory, the delivered total, the queued gauge and the log outbox, now."""
    stats = await redis.hmget(keys.stats, "delivered", "queued")
    return Sample(
        at_s=time.monotonic() - started,
        used_bytes=await used_memory(redis),
        delivered=int(stats[0] or 0),
        queued=int(stats[1] or 0),
        log_outbox=int(await redis.xlen(keys.log_outbox)),
        active_jobs=sum([await redis.llen(keys.queue_key(q, "active")) for q in DELIVERY_QUEUES]),
    )


async def feed(producer: Producer, redis: aioredis.Redis, total: int, max_pending: int) -> None:
    """Publish ``total`` events (fan-out 1) in chunks, keeping at most ``max_pending``
    deliveries queued."""
    keys = producer.keys
    for start in range(0, total, PUBLISH_CHUNK):
        while int(await redis.hget(keys.stats, "queued") or 0) >= max_pending:  # noqa: ASYNC110
            await asyncio.sleep(FEED_POLL_S)  # polls Redis: no event to wait on
        numbers = range(start, min(total, start + PUBLISH_CHUNK))
        events = [make_event(producer.catalogue, n, f"ws_soak_{n % WORKSPACES}") for n in numbers]
        if await publish_all(producer, events) != len(events):
            raise BenchError("an event did not make exactly one delivery")


async def watch(
    redis: aioredis.Redis,
    keys: Keys,
    worker: Child,
    args: argparse.Namespace,
    feeding: asyncio.Task[None],
) -> tuple[list[Sample], float]:
    """Sample every interval until ``--tail`` seconds after the drain; the samples and
    when the drain ended (seconds from the start)."""
    started = time.monotonic()
    samples = [await sample(redis, keys, started)]
    drained_at: float | None = None
    while drained_at is None or samples[-1].at_s < drained_at + args.tail:
        await asyncio.sleep(args.interval)
        if not worker.running:
            raise worker.failure("exited during the soak")
        if feeding.done() and (problem := feeding.exception()) is not None:
            raise problem
        now = await sample(redis, keys, started)
        samples.append(now)
        if (
            drained_at is None
            and now.delivered >= args.deliveries
            and now.log_outbox == 0
            and now.active_jobs == 0
        ):
            drained_at = now.at_s
    assert drained_at is not None  # the loop ends only once drained
    return samples, drained_at


def plot(samples: Sequence[Sample], drained_at: float, store: str, path: Path) -> None:
    """Redis memory (MB) and deliveries made over time, the drain marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seconds = [s.at_s for s in samples]
    figure, memory = plt.subplots(figsize=(10, 5))
    memory.plot(seconds, [s.used_bytes / 1e6 for s in samples], color="tab:red")
    memory.set_xlabel("seconds")
    memory.set_ylabel("Redis used_memory (MB)", color="tab:red")
    memory.set_ylim(bottom=0)
    memory.axvline(drained_at, color="grey", linestyle="--", label="drained")
    made = memory.twinx()
    made.plot(seconds, [s.delivered for s in samples], color="tab:blue")
    made.plot(seconds, [s.queued for s in samples], color="tab:blue", linestyle=":")
    made.set_ylabel("delivered (solid), queued (dotted)", color="tab:blue")
    made.set_ylim(bottom=0)
    memory.set_title(f"cliq-webhooks soak: {samples[-1].delivered:,} deliveries, log in {store}")
    memory.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


async def soak(args: argparse.Namespace) -> SoakResult:
    """Start everything, run the soak, stop everything; the figures."""
    workdir = Path(tempfile.mkdtemp(prefix="cliq-soak-"))
    try:
        async with AsyncExitStack() as stack:
            local = LocalRedis()
            await local.start()
            stack.push_async_callback(local.stop)
            overrides = {"LOG_LEVEL": "warning"}
            if args.store == "postgresql":
                postgres = await stack.enter_async_context(bench_postgres())
                overrides["DATABASE_URL"] = await postgres.fresh_database()
            sink = await start_throughput_sink(args.sink, workdir)
            stack.push_async_callback(sink.stop)
            redis = redis_client(local.url)
            stack.push_async_callback(redis.aclose)
            assert isinstance(redis, aioredis.Redis)  # one local server
            settings = ProducerSettings.from_env(
                {**os.environ, "REDIS_URL": local.url, "ALLOW_PRIVATE_DESTINATIONS": "1"}
            )
            settings = dataclasses.replace(settings, database_url=overrides.get("DATABASE_URL", ""))
            producer = await stack.enter_async_context(Producer(settings))
            for w in range(WORKSPACES):
                await register_endpoints(producer, sink.url, 1, workspace=f"ws_soak_{w}")
            (worker,) = start_workers(1, local.url, args.concurrency, workdir, overrides)
            stack.push_async_callback(stop_all, [worker])
            feeding = asyncio.create_task(feed(producer, redis, args.deliveries, args.max_pending))
            try:
                samples, drained_at = await watch(redis, producer.keys, worker, args, feeding)
            finally:
                feeding.cancel()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = args.plot or RESULTS / f"soak-{args.store}-{args.deliveries}.png"
    plot(samples, drained_at, args.store, path)
    after = [s.used_bytes for s in samples if s.at_s >= drained_at + SETTLE_S]
    result = SoakResult(
        store=args.store,
        deliveries=samples[-1].delivered,
        seconds_to_drain=drained_at,
        start_bytes=samples[0].used_bytes,
        peak_bytes=max(s.used_bytes for s in samples),
        after_drain_bytes=after[-1],
        after_drain_min_bytes=min(after),
        after_drain_max_bytes=max(after),
        plot=str(path),
        samples=len(samples),
    )
    if args.json is not None:
        record = {**dataclasses.asdict(result), "samples": [dataclasses.asdict(s) for s in samples]}
        args.json.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
    return result


def report(result: SoakResult) -> str:
    """The figures, as lines for a person."""

    def mb(n: int) -> str:
        return f"{n / 1e6:,.1f} MB"

    per = (result.after_drain_bytes - result.start_bytes) / max(1, result.deliveries)
    return "\n".join(
        [
            f"soak: {result.deliveries:,} deliveries, log in {result.store}, "
            f"drained after {result.seconds_to_drain:,.0f} s ({result.samples} samples)",
            f"redis used_memory: start {mb(result.start_bytes)}, peak {mb(result.peak_bytes)}, "
            f"after the drain {mb(result.after_drain_bytes)} ({per:,.0f} B per delivery left)",
            f"after the drain: between {mb(result.after_drain_min_bytes)} and "
            f"{mb(result.after_drain_max_bytes)}",
            f"plot: {result.plot}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m bench.soak``."""
    args = parse_args(argv)
    configure_logging("console", "warning")  # stdout: the figures only

    async def run() -> int:
        print(report(await soak(args)))
        return 0

    try:
        return run_event_loop(run())
    except BenchError as exc:
        print(f"soak: FAILED {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
