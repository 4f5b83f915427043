"""The Python ceiling: ``python -m bench.raw_aiohttp --url U --requests N --concurrency C``.

One process on uvloop, one aiohttp session set up like the worker's, and per request
exactly the worker's per-request work that does not involve the queue: the same
headers and signatures (:func:`worker.request.request_headers`), the same POST and
the same reading of the answer. No Redis, no bullmq, no logging, no metrics. Prints
``{"requests", "errors", "seconds", "cpu_s", "machine_s"}`` as JSON (``machine_s``: CPU
seconds the whole machine was busy meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
import uvloop

from bench.cpu import machine_busy_seconds
from bench.workload import sample_body, sample_endpoint
from producer.jobs import DeliveryItem
from worker.request import request_headers


async def blast(url: str, requests: int, concurrency: int) -> dict[str, float]:
    """POST ``requests`` signed bodies with ``concurrency`` in flight; time and count them."""
    body = sample_body()
    endpoint = sample_endpoint(url)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    remaining = requests
    errors = 0

    async def lane(session: aiohttp.ClientSession) -> None:
        # Each lane takes the next request number until none is left: `concurrency`
        # lanes keep that many requests in flight without a task per request.
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            item = DeliveryItem(f"dlv_{remaining}", 1)
            headers = request_headers(endpoint, "evt_raw", "issue.updated", item, body, time.time())
            try:
                async with session.post(
                    f"{url}/hook/{remaining % 10}", data=body, headers=headers
                ) as response:
                    await response.read()
                    errors += response.status != 200
            except (aiohttp.ClientError, OSError, TimeoutError):
                errors += 1

    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=10),
        headers={"User-Agent": "cliq-webhooks/bench"},
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        started, cpu, machine = time.perf_counter(), time.process_time(), machine_busy_seconds()
        await asyncio.gather(*(lane(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu, machine = time.process_time() - cpu, machine_busy_seconds() - machine
    return {
        "requests": requests,
        "errors": errors,
        "seconds": seconds,
        "cpu_s": cpu,
        "machine_s": machine,
    }


def main() -> int:
    """Parse the command line, run, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="sink base URL")
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    result = uvloop.run(blast(args.url, args.requests, args.concurrency))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
