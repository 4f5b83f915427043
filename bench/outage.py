"""``python -m bench.outage --case restart|full``: do deliveries survive a Redis outage?

The experiments of issue 13, point 1, against one real ``python -m worker`` process and
a private ``redis-server`` (its own port and folder), with endpoints at their in-flight
cap (10) on a receiver that takes 100 ms per answer:

* ``restart``: Redis with AOF restarted (SIGTERM, same port and folder) while two
  endpoints have 20 requests in flight, 500 deliveries published before.
* ``full``: three endpoints; events published in small batches while Redis reaches
  ``maxmemory`` with ``noeviction`` (writes refused) for a few seconds, then the limit
  is lifted.

It then waits (``--wait`` seconds) for every acknowledged delivery to reach the
receiver and prints one JSON object: how many were still missing, when the last one
arrived, and the worker's leases, requests in flight, deferrals and repairs at the end.
Not part of ``make bench``: it measures recovery, not speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis.asyncio as aioredis
from aiohttp import web

from bench.procs import BenchError, Child
from bench.workers import metrics_env, scrape, start_workers, stop_all
from bench.workload import make_event, register_endpoints
from producer.context import Producer
from producer.keys import LAYOUT, Keys
from producer.settings import ProducerSettings
from worker.localredis import find_redis_server, free_port

ANSWER_DELAY_S = 0.1
POLL_S = 0.1
OOM_S = 3.0  # how long Redis refuses writes in the `full` case
PUBLISH_CHUNK = 10
PUBLISH_PAUSE_S = 0.02
WORKER_SETTINGS = {"DELIVERY_TIMEOUT": "10", "SHUTDOWN_GRACE": "2", "JOB_LOCK_TIMEOUT": "10"}
SERIES = (
    "cliq_deliveries_in_flight",
    "cliq_deliveries_deferred_total",
    "cliq_lease_repairs_total",
    "cliq_endpoints_deferring_idle",
)


@dataclass
class Receiver:
    """An aiohttp receiver in this process: 200 after ``ANSWER_DELAY_S``, counts what it saw."""

    seen: set[tuple[str, str]] = field(default_factory=set)  # (path, event id)
    open: int = 0
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.open += 1
        try:
            event_id = json.loads(await request.read())["id"]
            await asyncio.sleep(ANSWER_DELAY_S)
            self.seen.add((request.path, event_id))
            return web.Response(text="ok")
        finally:
            self.open -= 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Receiver]:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self.port = free_port()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            await runner.cleanup()


class PrivateRedis:
    """``redis-server`` on a free loopback port in ``folder``, restartable in place."""

    def __init__(self, folder: Path, *args: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.args = args
        self.child: Child | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        argv = [
            find_redis_server(),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
            *("--save", ""),
            *self.args,
        ]
        self.child = Child("redis", argv, log=self.folder / "redis.log")
        await self.child.wait_for_port(self.port)

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()
            self.child = None


async def leases(redis: aioredis.Redis, keys: Keys, endpoint_ids: list[str]) -> list[int]:
    """Leases held on each endpoint, over every worker (worker/leases.lua's fields)."""
    held = []
    for endpoint_id in endpoint_ids:
        key = f"{keys.prefix}:{LAYOUT['endpoint_leases'].format(endpoint_id)}"
        fields = cast(dict[str, str], await redis.hgetall(key))
        held.append(sum(int(value) for name, value in fields.items() if ":" not in name))
    return held


async def poll(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} within {timeout_s:g}s")
        await asyncio.sleep(0.01)


async def experiment(case: str, wait_s: float, workdir: Path) -> dict[str, Any]:
    """Run one case; the figures of its end state."""
    args = ("--appendonly", "yes") if case == "restart" else ("--appendonly", "no")
    server = PrivateRedis(workdir, *args, "--maxmemory-policy", "noeviction")
    await server.start()
    settings = ProducerSettings.from_env({"REDIS_URL": server.url})
    keys = Keys(settings.key_prefix)
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    receiver = Receiver()
    workers: list[Child] = []
    try:
        async with receiver.running(), Producer(settings) as producer:
            url = f"http://127.0.0.1:{receiver.port}"
            endpoints = await register_endpoints(producer, url, 2 if case == "restart" else 3)
            port = free_port()
            env = {**WORKER_SETTINGS, **metrics_env(port)}
            accepted: set[str] = set()
            if case == "restart":
                events = [make_event(producer.catalogue, n) for n in range(250)]
                await producer.publisher.publish_many(events)
                accepted.update(event.id for event in events)
                workers = start_workers(1, server.url, 200, workdir, env)

                async def at_cap() -> bool:
                    return receiver.open >= 20

                await poll(at_cap, 60, "20 requests never in flight")
                await server.stop()
                await server.start()
                disturbed = time.monotonic()
                refused = 0
            else:
                workers = start_workers(1, server.url, 200, workdir, env)
                disturbed, refused = await publish_through_oom(producer, admin, accepted)
            total = len(accepted) * len(endpoints)

            def missing() -> int:
                return total - len(receiver.seen)

            async def all_in() -> bool:
                return missing() == 0

            last_at = None
            with contextlib.suppress(BenchError):
                await poll(all_in, wait_s, "not delivered")
                last_at = time.monotonic() - disturbed

            async def settled() -> bool:
                idle = (await scrape(port)).get("cliq_deliveries_in_flight") == 0
                return idle and not any(await leases(admin, keys, [e.id for e in endpoints]))

            # Idle leases go back within a second once the last requests have ended; the
            # in-flight gauge is refreshed by housekeeping every 2 s (after a restart its
            # first call may wait out a dead connection: up to 10 s).
            with contextlib.suppress(BenchError):
                await poll(settled, 15 if last_at is not None else 0, "not settled")
            samples = await scrape(port)
            missing_events = len(
                {
                    event_id
                    for event_id in accepted
                    for endpoint in range(len(endpoints))
                    if (f"/hook/{endpoint}", event_id) not in receiver.seen
                }
            )
            return {
                "case": case,
                "events_accepted": len(accepted),
                "publishes_refused": refused,
                "deliveries": total,
                "deliveries_missing": missing(),
                "events_missing": missing_events,
                "all_delivered_after_s": None if last_at is None else round(last_at, 2),
                "waited_s": wait_s,
                "leases_held": await leases(admin, keys, [e.id for e in endpoints]),
                **{name: samples.get(name) for name in SERIES},
            }
    finally:
        await stop_all(workers)
        await admin.aclose()
        await server.stop()


async def publish_through_oom(
    producer: Producer, admin: aioredis.Redis, accepted: set[str]
) -> tuple[float, int]:
    """Publish in small batches for 8 s; Redis refuses writes from 2 s to 2 s + OOM_S.

    Returns when the limit was lifted, and how many publishes were refused.
    """
    refused = 0
    number = 0
    started = time.monotonic()
    lifted = 0.0
    limited = False
    while time.monotonic() - started < 8:
        elapsed = time.monotonic() - started
        if not limited and 2 <= elapsed < 2 + OOM_S:
            used = int((await admin.info("memory"))["used_memory"])
            await admin.config_set("maxmemory", used)
            limited = True
        elif limited and elapsed >= 2 + OOM_S:
            await admin.config_set("maxmemory", 0)
            limited = False
            lifted = time.monotonic()
        events = [make_event(producer.catalogue, number + k) for k in range(PUBLISH_CHUNK)]
        number += PUBLISH_CHUNK
        try:
            await producer.publisher.publish_many(events)
        except Exception:  # refused (OOM): not acknowledged, not counted
            refused += 1
        else:
            accepted.update(event.id for event in events)
        await asyncio.sleep(PUBLISH_PAUSE_S)
    return lifted, refused


def main() -> int:
    """Parse the command line, run the case, print its figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.outage", description=__doc__)
    parser.add_argument("--case", choices=("restart", "full"), required=True)
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cliq-outage-") as folder:
        result = asyncio.run(experiment(args.case, args.wait, Path(folder)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
