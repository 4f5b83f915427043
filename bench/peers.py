"""The peers one worker process is compared with: raw clients, and Node.js BullMQ.

* ``raw-signer`` and ``raw-aiohttp`` run ``bench/raw_aiohttp.py`` (no queue): a minimal
  signed POST, and one with the worker's full header set.
* ``node-bullmq`` runs ``bench/node``: ``fill.js`` queues the deliveries into its own
  BullMQ queue before ``worker.js`` (a BullMQ Worker posting with ``node:http``) starts,
  timed like ``worker-1proc``: from the first finished delivery seen in Redis to the last.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import redis.asyncio as aioredis

from bench.context import WORKER_START_TIMEOUT_S, Context, cpu_metrics, drain_timeout_s
from bench.cpu import MACHINE, OTHER
from bench.procs import PYTHON, REPO_ROOT, BenchError, Child, run_json
from bench.results import Run
from bench.workers import DeliveryWatch, stop_all
from bench.workload import sample_body, sample_endpoint

NODE_DIR = REPO_ROOT / "bench" / "node"
# Its own prefix: the peer's keys never mix with the service's (the Redis is flushed
# before every run anyway).
NODE_PREFIX = "nodebench"
NODE_QUEUE = "deliveries"
# Node.js starts, loads BullMQ and connects in well under a second; the fill script
# queues tens of thousands of jobs in a few seconds.
NODE_FILL_TIMEOUT_S = 120.0


async def raw_client(ctx: Context, name: str, headers: str) -> Run:
    """One ``bench.raw_aiohttp`` client with ``--headers headers``, timed by itself."""
    plan = ctx.plan
    sink_before, bench_before = ctx.sink.cpu_seconds(), time.process_time()
    result = await run_json(
        name,
        [
            *(PYTHON, "-m", "bench.raw_aiohttp", "--url", ctx.sink.url, "--headers", headers),
            *("--requests", str(plan.raw_requests), "--concurrency", str(plan.concurrency)),
        ],
        timeout_s=drain_timeout_s(plan.raw_requests),
    )
    if result["errors"]:
        raise BenchError(f"{name}: {result['errors']} of {plan.raw_requests} requests failed")
    seconds = result["seconds"]
    # The client times its own window. The sink and the bench idle while it starts,
    # so their CPU time over the whole child's life is their time in the window.
    cpu = {
        "client": result["cpu_s"] / seconds,
        "sink": (ctx.sink.cpu_seconds() - sink_before) / seconds,
        "bench": (time.process_time() - bench_before) / seconds,
        MACHINE: result["machine_s"] / seconds,
    }
    cpu[OTHER] = max(0.0, cpu[MACHINE] - cpu["client"] - cpu["sink"] - cpu["bench"])
    rate = plan.raw_requests / seconds
    return {
        "rate": rate,
        "per_cpu_s": rate / cpu["client"],
        "concurrency": plan.concurrency,
        **cpu_metrics(cpu),
    }


async def raw_signer(ctx: Context) -> Run:
    """The minimal signed POST: ``Content-Type`` and one ``X-Cliq-Signature``, no queue."""
    return await raw_client(ctx, "raw-signer", "signature")


async def raw_aiohttp(ctx: Context) -> Run:
    """The worker's own headers and signatures from one uvloop process, no queue."""
    return await raw_client(ctx, "raw-aiohttp", "worker")


def node_binary() -> str:
    """The ``node`` program, once ``bench/node``'s packages are installed."""
    node = shutil.which("node")
    if node is None:
        raise BenchError("node-bullmq needs Node.js (make bench installs it from Debian)")
    if not (NODE_DIR / "node_modules" / "bullmq").is_dir():
        raise BenchError("node-bullmq needs its packages: npm ci --prefix bench/node")
    return node


class NodeQueue:
    """The Redis keys of the peer's BullMQ queue, and what they say about its jobs."""

    def __init__(self, redis: aioredis.Redis, queued: int) -> None:
        self._redis = redis
        self._queued = queued
        self._key = f"{NODE_PREFIX}:{NODE_QUEUE}"

    async def finished(self) -> int:
        """Jobs no longer waiting, running or due for a retry.

        Completed jobs are removed (``removeOnComplete``, as the service's are), so
        this is what the queue held minus what it still holds, read in one MULTI.
        """
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.llen(f"{self._key}:wait")
            pipe.llen(f"{self._key}:active")
            pipe.zcard(f"{self._key}:delayed")
            pending = await pipe.execute()
        return self._queued - sum(int(n) for n in pending)

    async def failed(self) -> int:
        """Jobs that failed for good."""
        return int(await self._redis.zcard(f"{self._key}:failed"))


def node_redis_args(redis_url: str) -> list[str]:
    """The options that point fill.js and worker.js at the peer's queue."""
    return ["--redis", redis_url, "--prefix", NODE_PREFIX, "--queue", NODE_QUEUE]


async def fill_node_queue(
    redis_url: str, sink_url: str, body: bytes, jobs: int, workdir: Path
) -> float:
    """Queue ``jobs`` deliveries of ``body`` to the sink's ten paths with ``fill.js``.

    Returns the jobs queued per second.
    """
    body_file = workdir / "node-body.json"
    body_file.write_bytes(body)
    fill = await run_json(
        "node fill.js",
        [
            *(node_binary(), str(NODE_DIR / "fill.js"), *node_redis_args(redis_url)),
            *("--url", sink_url, "--body", str(body_file), "--jobs", str(jobs)),
        ],
        timeout_s=NODE_FILL_TIMEOUT_S,
    )
    if fill["waiting"] != jobs:
        raise BenchError(f"fill.js queued {fill['waiting']} of {jobs} jobs")
    return float(jobs / fill["seconds"])


def start_node_worker(redis_url: str, concurrency: int, secret: str, log: Path) -> Child:
    """``worker.js``: one BullMQ Worker signing with ``secret``; its output goes to ``log``."""
    return Child(
        "node worker",
        [
            *(node_binary(), str(NODE_DIR / "worker.js"), *node_redis_args(redis_url)),
            *("--concurrency", str(concurrency)),
        ],
        env={**os.environ, "BENCH_SECRET": secret},
        log=log,
    )


async def node_bullmq(ctx: Context) -> Run:
    """Queue the backlog with ``fill.js``, then time one ``worker.js`` from first to last."""
    plan = ctx.plan
    jobs = plan.backlog_deliveries
    await ctx.reset()
    fill_rate = await fill_node_queue(ctx.redis_url, ctx.sink.url, sample_body(), jobs, ctx.workdir)
    queue = NodeQueue(ctx.redis, jobs)
    secret = sample_endpoint(ctx.sink.url).secret
    worker = start_node_worker(ctx.redis_url, plan.concurrency, secret, ctx.workdir / "node.log")
    try:
        watch = DeliveryWatch(ctx.redis, ctx.keys, [worker], ctx.sink, delivered=queue.finished)
        window = await watch.until(jobs, WORKER_START_TIMEOUT_S, drain_timeout_s(jobs))
    finally:
        await stop_all([worker])
    if failed := await queue.failed():
        raise BenchError(f"node-bullmq: {failed} of {jobs} jobs failed (see {worker.log})")
    return {
        "rate": window.rate,
        "seconds": window.seconds,
        "per_cpu_s": window.rate / window.worker_cpu,
        "concurrency": plan.concurrency,
        "redis_us": window.cpu["redis"] / window.rate * 1e6,
        "fill_rate": fill_rate,
        **cpu_metrics(window.cpu),
    }
