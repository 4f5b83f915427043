"""``publish-api``: events/s through the HTTP API's batch path (``POST /v1/events``).

A ``python -m producer`` process serves the API on a free port of 127.0.0.1 with an
API key; the benchmark posts ``Plan.publish_events`` events as JSON arrays of
:data:`~producer.http.events.MAX_BATCH_EVENTS`, :data:`IN_FLIGHT` requests at a time, to one
endpoint (fan-out 1, like ``publish-batch``). The bodies are encoded before the clock
starts; the window runs from the first request sent to the last answer.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Sequence

import aiohttp
import orjson

from bench.context import Context, cpu_metrics
from bench.cpu import CpuMeter, shares
from bench.procs import PYTHON, BenchError, Child
from bench.results import Run
from bench.workload import EVENT_TYPE, WORKSPACE, event_data, register_endpoints
from producer.context import Producer
from producer.http.events import MAX_BATCH_EVENTS
from worker.localredis import free_port

# Two requests in flight: one is parsed and validated while Redis stores the other.
IN_FLIGHT = 2
REQUEST_TIMEOUT_S = 60.0


def batch_bodies(events: int) -> list[bytes]:
    """The request bodies: ``events`` events without ids (the API assigns them)."""
    raw = [
        {"type": EVENT_TYPE, "workspace_id": WORKSPACE, "data": event_data(n)}
        for n in range(events)
    ]
    return [
        orjson.dumps(raw[start : start + MAX_BATCH_EVENTS])
        for start in range(0, events, MAX_BATCH_EVENTS)
    ]


async def post_all(url: str, key: str, bodies: Sequence[bytes]) -> int:
    """Post every body, ``IN_FLIGHT`` at a time; returns the deliveries created."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    pending = iter(bodies)
    created = 0
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as client:

        async def lane() -> None:
            nonlocal created
            for body in pending:
                async with client.post(url, data=body, headers=headers) as response:
                    if response.status != 202:
                        text = await response.text()
                        raise BenchError(
                            f"POST /v1/events answered {response.status}: {text[:300]}"
                        )
                    created += sum(item["deliveries"] for item in await response.json())

        await asyncio.gather(*(lane() for _ in range(IN_FLIGHT)))
    return created


async def publish_api(ctx: Context) -> Run:
    """Start the API, post the batches, check every event made its delivery."""
    plan = ctx.plan
    await ctx.reset()
    async with Producer(ctx.settings) as producer:
        await register_endpoints(producer, ctx.sink.url, 1)
    bodies = batch_bodies(plan.publish_events)
    key, port = secrets.token_urlsafe(24), free_port()
    env = {
        **os.environ,
        "REDIS_URL": ctx.redis_url,
        "API_HOST": "127.0.0.1",
        "PORT": str(port),
        "API_KEYS": key,
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "json",
    }
    api = Child("api", [PYTHON, "-m", "producer"], env=env, log=ctx.workdir / "api.log")
    try:
        await api.wait_for_port(port)
        meter = CpuMeter(ctx.redis, {"api": api.cpu_seconds})
        first = await meter.sample()
        created = await post_all(f"http://127.0.0.1:{port}/v1/events", key, bodies)
        last = await meter.sample()
    finally:
        await api.stop()
    if created != plan.publish_events:
        raise BenchError(f"{plan.publish_events} events made {created} deliveries, not 1 each")
    return {
        "rate": plan.publish_events / (last.at - first.at),
        **cpu_metrics(shares(first, last)),
    }
