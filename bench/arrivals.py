"""Events published one per call on an open-loop schedule, and when each one arrived.

The latency scenario and isolation's many-hung case time each event from its publish
to its arrival at the recording sink (``bench/sinkserver.py --record``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import UTC, datetime

import aiohttp

from bench.procs import BenchError
from bench.sink import Sink
from bench.workload import make_event
from producer.context import Producer

# Bounds the publishes in flight when the publisher cannot keep up with the offered
# load: the schedule then slips, which the achieved rate in the notes shows.
MAX_PUBLISHES_IN_FLIGHT = 64


async def offer_load(
    producer: Producer, rate: float, seconds: float
) -> tuple[dict[str, float], float]:
    """Publish one event per call, open loop, at ``rate``/s for ``seconds``.

    Returns each event's publish time (epoch seconds, taken as its ``created_at`` is
    set) and the rate actually offered.
    """
    count = int(rate * seconds)
    published: dict[str, float] = {}
    slots = asyncio.Semaphore(MAX_PUBLISHES_IN_FLIGHT)
    last_start = started = time.monotonic()

    async def publish_one(number: int) -> None:
        nonlocal last_start
        async with slots:
            last_start = time.monotonic()
            now = time.time()
            event = make_event(producer.catalogue, number, now=datetime.fromtimestamp(now, UTC))
            published[event.id] = now
            await producer.publisher.publish(event)

    tasks = []
    for number in range(count):
        # Open loop: each publish starts on schedule, whether or not earlier ones ended,
        # so a slow delivery path cannot hide behind a slowed-down publisher.
        delay = started + number / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(publish_one(number)))
    await asyncio.gather(*tasks)
    return published, (count - 1) / max(last_start - started, 1e-9)


async def collect_arrivals(
    client: aiohttp.ClientSession,
    recorder: Sink,
    event_ids: Iterable[str],
    timeout_s: float,
    *,
    complete: bool = True,
) -> dict[str, float]:
    """Arrival times of ``event_ids`` at the recording sink, polled until all came.

    After ``timeout_s`` a run fails, unless ``complete`` is false: then what arrived
    is returned (the caller counts the rest as missing).
    """
    wanted = set(event_ids)
    arrivals: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while not wanted <= arrivals.keys():
        if time.monotonic() > deadline:
            if not complete:
                break
            missing = len(wanted - arrivals.keys())
            raise BenchError(f"{missing} of {len(wanted)} events did not arrive in {timeout_s:g}s")
        recorder.check_alive()
        await asyncio.sleep(0.1)
        async with client.get(f"{recorder.url}/arrivals") as response:
            arrivals.update(await response.json())
    return arrivals
