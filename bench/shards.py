"""``shards``: the fleet's Redis ceiling on a 3-primary cluster, with 3 partitions and with 1.

The bench starts its own cluster (three ``redis-server --cluster-enabled yes`` on free
loopback ports, an equal third of the slots each, stopped by PID). Twice, from an empty
cluster: events of 30 workspaces (10 in each partition, fan-out 1) are published, then
one worker drains them; each primary's ``INFO cpu`` is read before publishing and after
the last delivery is recorded (publish + deliver + record). A primary's CPU per
delivery is what it spent divided by every delivery; Redis runs scripts on one core, so
the busiest primary saturates first and the fleet's ceiling is one second of CPU over
its cost per delivery: with ``PARTITIONS=3`` that is the busiest of three shards, with
``PARTITIONS=1`` (``PARTITIONS_BELOW_PRIMARIES=1``) the one shard holding ``{cliq}``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import redis.asyncio as aioredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from bench.context import WORKER_START_TIMEOUT_S, Context, drain_timeout_s
from bench.cpu import redis_seconds
from bench.procs import BenchError, Child
from bench.results import Run
from bench.workers import start_workers, stop_all
from bench.workload import make_events
from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.partitioning import partition_of
from producer.settings import ProducerSettings
from producer.totals import hot_totals
from worker.localredis import find_redis_server, free_port

PRIMARIES = 3
WORKSPACES_PER_PARTITION = 10
CLUSTER_READY_S = 20.0
POLL_S = 0.05


class BenchCluster:
    """Three empty primaries forming one cluster, each with an equal range of slots."""

    def __init__(self, workdir: Path) -> None:
        self._dir = workdir / "cluster"
        self.ports = [free_port() for _ in range(PRIMARIES)]
        # A bus port of its own each: Redis's default (port + 10000) is refused above
        # 55535, where a free port may well be.
        self.bus_ports = [free_port() for _ in range(PRIMARIES)]
        self._nodes: list[Child] = []

    @property
    def url(self) -> str:
        """The cluster's ``redis+cluster://`` URL (one seed node)."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    async def start(self) -> None:
        """Start the nodes, give out the slots, join them and wait for ``cluster_state:ok``."""
        self._dir.mkdir(parents=True, exist_ok=True)
        binary = find_redis_server()
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            argv = [
                binary,
                "--port", str(port),
                "--cluster-port", str(bus),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(self._dir / f"nodes-{port}.conf"),
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self._dir),
            ]  # fmt: skip
            node = Child(f"redis-{port}", argv, log=self._dir / f"redis-{port}.log")
            self._nodes.append(node)
            await node.wait_for_port(port)
        share = REDIS_CLUSTER_HASH_SLOTS // PRIMARIES
        for index, port in enumerate(self.ports):
            last = (
                REDIS_CLUSTER_HASH_SLOTS - 1 if index == PRIMARIES - 1 else (index + 1) * share - 1
            )
            await self._command(port, "CLUSTER", "ADDSLOTSRANGE", index * share, last)
        for port in self.ports[1:]:
            await self._command(
                port, "CLUSTER", "MEET", "127.0.0.1", self.ports[0], self.bus_ports[0]
            )
        deadline = time.monotonic() + CLUSTER_READY_S
        while not await self._ready():
            if time.monotonic() > deadline:
                raise BenchError("the bench's cluster did not form")
            await asyncio.sleep(0.1)

    async def _ready(self) -> bool:
        for port in self.ports:
            info = str(await self._command(port, "CLUSTER", "INFO"))
            if "cluster_state:ok" not in info or f"cluster_known_nodes:{PRIMARIES}" not in info:
                return False
        return True

    async def _command(self, port: int, *args: str | int) -> object:
        async with aioredis.Redis(port=port, decode_responses=True) as client:
            return await client.execute_command(*args)  # type: ignore[no-untyped-call]

    async def flush(self) -> None:
        """Empty every primary."""
        for port in self.ports:
            await self._command(port, "FLUSHALL")

    async def cpu(self) -> dict[int, float]:
        """CPU seconds each primary has used so far."""
        found = {}
        for port in self.ports:
            async with aioredis.Redis(port=port, decode_responses=True) as client:
                found[port] = await redis_seconds(client)
        return found

    async def stop(self) -> None:
        """Stop every node by its PID."""
        for node in self._nodes:
            await node.stop()


def workspaces() -> list[str]:
    """Ten workspaces of each of 3 partitions (the same 30 for both runs)."""
    found: dict[int, list[str]] = {k: [] for k in range(PRIMARIES)}
    n = 0
    while any(len(names) < WORKSPACES_PER_PARTITION for names in found.values()):
        name = f"ws_{n}"
        names = found[partition_of(name, PRIMARIES)]
        if len(names) < WORKSPACES_PER_PARTITION:
            names.append(name)
        n += 1
    return sorted(name for names in found.values() for name in names)


async def _run(ctx: Context, cluster: BenchCluster, partitions: int) -> dict[int, float]:
    """One run; returns each primary's CPU seconds per delivery."""
    await cluster.flush()
    env = {
        "REDIS_URL": cluster.url,
        "KEY_PREFIX": "{cliq}",
        "PARTITIONS": str(partitions),
        "PARTITIONS_BELOW_PRIMARIES": "1",
        "ALLOW_PRIVATE_DESTINATIONS": "1",
    }
    names = workspaces()
    per_workspace = max(1, ctx.plan.backlog_deliveries // 2 // len(names))
    before = await cluster.cpu()
    async with Producer(ProducerSettings.from_env(env)) as producer:
        await producer.check_partitions()
        for ws in names:
            await producer.endpoints.create(
                workspace_id=ws,
                url=f"{ctx.sink.url}/hook/0",
                events=["*"],
                owner_email="b@example.com",
            )
        events = [
            event
            for ws in names
            for event in make_events(producer.catalogue, per_workspace, workspace=ws)
        ]
        for start in range(0, len(events), 1000):
            await producer.publisher.publish_many(events[start : start + 1000])
        workers = start_workers(1, cluster.url, ctx.plan.concurrency, ctx.workdir, env)
        try:
            deadline = time.monotonic() + WORKER_START_TIMEOUT_S + drain_timeout_s(len(events))
            while True:
                totals = await hot_totals(producer.redis, producer.partitions, producer.dispatchers)
                if totals.stats.get(DeliveryState.DELIVERED.value, 0) >= len(events):
                    break
                if totals.stats.get(DeliveryState.DEAD.value, 0):
                    raise BenchError(f"shards: some deliveries died: {totals.stats}")
                if time.monotonic() > deadline or not all(w.running for w in workers):
                    raise BenchError(f"shards: not drained in time: {totals.stats}")
                await asyncio.sleep(POLL_S)
        finally:
            await stop_all(workers)
    after = await cluster.cpu()
    return {port: (after[port] - before[port]) / len(events) for port in cluster.ports}


async def shards(ctx: Context) -> Run:
    """The fleet's Redis ceiling from the busiest primary, 3 partitions against 1."""
    cluster = BenchCluster(ctx.workdir)
    try:
        await cluster.start()
        spread = await _run(ctx, cluster, PRIMARIES)
        single = await _run(ctx, cluster, 1)
    finally:
        await cluster.stop()
    busiest, one = max(spread.values()), max(single.values())
    total = sum(spread.values())
    run: Run = {
        "rate": 1 / busiest,
        "single_rate": 1 / one,
        "ratio": one / busiest,
        "busiest_us": busiest * 1e6,
        "single_us": one * 1e6,
        "total_us": total * 1e6,
    }
    for index, share in enumerate(sorted(spread.values(), reverse=True)):
        run[f"share_{index}"] = share / total
    return run
