"""Worker processes under test, and the CPU that they, Redis and the sink use while delivering."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from bench.cpu import CpuMeter, shares
from bench.procs import PYTHON, BenchError, Child
from bench.sink import Sink
from producer.keys import Keys

# Fine enough that the first and the last delivery are seen within a few ms of
# happening, coarse enough that polling costs Redis nothing worth measuring.
POLL_INTERVAL_S = 0.005
SCRAPE_TIMEOUT_S = 5.0


def worker_env(
    redis_url: str, concurrency: int, workdir: Path, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a worker under test: the caller's, pointed at the bench's Redis.

    Settings such as ``BATCH_SIZE`` pass through from the caller's environment, so a
    change can be measured without editing the benchmark. ``overrides`` are a
    scenario's own settings (``RETRY_SCHEDULE``, ``DELIVERY_TIMEOUT``, ``METRICS_PORT``...)
    and win over both.
    """
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        ALLOW_PRIVATE_DESTINATIONS="1",
        METRICS_PORT="0",
        LOG_LEVEL="info",
        LOG_FORMAT="json",
        WORKER_CONCURRENCY=str(concurrency),
        SHUTDOWN_GRACE="5",
        NOTIFY_OUTBOX=str(workdir / "outbox"),
    )
    env.update(overrides or {})
    return env


def start_workers(
    count: int,
    redis_url: str,
    concurrency: int,
    workdir: Path,
    overrides: Mapping[str, str] | None = None,
) -> list[Child]:
    """``count`` ``python -m worker`` processes; their JSON logs go to files in ``workdir``.

    ``overrides`` set worker settings for this run (see :func:`worker_env`).
    """
    env = worker_env(redis_url, concurrency, workdir, overrides)
    return [
        Child(f"worker {n}", [PYTHON, "-m", "worker"], env=env, log=workdir / f"worker-{n}.log")
        for n in range(count)
    ]


async def stop_all(children: Sequence[Child]) -> None:
    """Stop the children together (each drains on SIGTERM), by PID."""
    await asyncio.gather(*(child.stop() for child in children))


def metrics_env(port: int) -> dict[str, str]:
    """Overrides that serve a worker's ``/metrics`` on ``127.0.0.1:port`` (only one worker)."""
    return {"METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1"}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text: ``{'name{label="x"}': value}`` for every sample line.

    Our labels never hold spaces, so the value is whatever follows the last space.
    """
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


async def scrape(port: int) -> dict[str, float]:
    """Every sample of the worker's ``/metrics`` on ``127.0.0.1:port``."""
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as client,
            client.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            response.raise_for_status()
            return parse_metrics(await response.text())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"cannot read the worker's /metrics on port {port}: {exc!r}") from exc


def cpu_meter(
    redis: aioredis.Redis,
    workers: Sequence[Child],
    sink: Sink,
    others: Mapping[str, Child] | None = None,
) -> CpuMeter:
    """A meter of the workers (``worker0``...), the sink, the ``others`` by name (such as
    a log-writer process), Redis, the bench and the machine."""
    processes: dict[str, Callable[[], float]] = {
        f"worker{n}": worker.cpu_seconds for n, worker in enumerate(workers)
    }
    processes["sink"] = sink.cpu_seconds
    processes.update({name: child.cpu_seconds for name, child in (others or {}).items()})
    return CpuMeter(redis, processes)


@dataclass(frozen=True)
class Window:
    """From the first delivery seen to the last: how many, how long, whose CPU."""

    seconds: float
    deliveries: int
    cpu: dict[str, float]

    @property
    def rate(self) -> float:
        """Deliveries per second."""
        return self.deliveries / self.seconds

    @property
    def worker_cpu(self) -> float:
        """Cores' worth of CPU used by all the workers together."""
        return sum(share for name, share in self.cpu.items() if name.startswith("worker"))


class DeliveryWatch:
    """Polls the ``delivered`` total of the stats hash while workers drain a backlog.

    ``delivered`` replaces that total with another count read from Redis (the
    node-bullmq peer has no stats hash: bench/peers.py). ``others`` are more processes
    to meter (and to check alive) by name, such as a log-writer.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        workers: Sequence[Child],
        sink: Sink,
        delivered: Callable[[], Awaitable[int]] | None = None,
        others: Mapping[str, Child] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._children = [*workers, *(others or {}).values()]
        self._sink = sink
        self._meter = cpu_meter(redis, workers, sink, others)
        self._delivered = delivered or self._stats_delivered

    async def _stats_delivered(self) -> int:
        return int(await self._redis.hget(self._keys.stats, "delivered") or 0)

    def _check_alive(self) -> None:
        for worker in self._children:
            if not worker.running:
                raise worker.failure("exited while deliveries were pending")
        self._sink.check_alive()

    async def until(self, target: int, start_timeout_s: float, timeout_s: float) -> Window:
        """From the first delivery seen to ``target`` delivered, within the timeouts."""
        deadline = time.monotonic() + start_timeout_s
        while (first_count := await self._delivered()) == 0:
            if time.monotonic() > deadline:
                raise BenchError(f"no delivery within {start_timeout_s:g}s of starting workers")
            self._check_alive()
            await asyncio.sleep(POLL_INTERVAL_S)
        if first_count * 2 > target:
            raise BenchError(
                f"{first_count} of {target} delivered by the first poll: too few to time"
            )
        first = await self._meter.sample()
        deadline = time.monotonic() + timeout_s
        while (last_count := await self._delivered()) < target:
            if time.monotonic() > deadline:
                raise BenchError(f"only {last_count} of {target} delivered after {timeout_s:g}s")
            self._check_alive()
            await asyncio.sleep(POLL_INTERVAL_S)
        last = await self._meter.sample()
        return Window(last.at - first.at, last_count - first_count, shares(first, last))
