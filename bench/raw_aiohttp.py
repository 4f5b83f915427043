"""The Python ceilings: ``python -m bench.raw_aiohttp --url U --requests N --concurrency C``.

One process on uvloop, one aiohttp session set up like the worker's, C requests in
flight, the same ~600-byte body to the same ten paths, the answer read. No Redis, no
bullmq, no logging, no metrics. What each request carries is ``--headers``:

* ``worker`` (raw-aiohttp): exactly the worker's per-request work that does not
  involve the queue, its headers and both signatures
  (:func:`worker.request.request_headers`);
* ``signature`` (raw-signer): what a minimal signed POST needs, ``Content-Type`` and
  one ``X-Cliq-Signature`` (hex HMAC-SHA256 of the body), computed per request.

Prints ``{"requests", "errors", "seconds", "cpu_s", "machine_s"}`` as JSON
(``machine_s``: CPU seconds the whole machine was busy meanwhile).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import time
from collections.abc import Callable

import aiohttp
import uvloop

from bench.cpu import machine_busy_seconds
from bench.workload import sample_body, sample_endpoint
from producer.endpoint import Endpoint
from producer.jobs import DeliveryItem
from producer.signing import request_headers

# The headers of request number n.
Headers = Callable[[int], dict[str, str]]
HEADER_SETS = ("worker", "signature")


def header_maker(kind: str, endpoint: Endpoint, body: bytes) -> Headers:
    """Per-request headers of the ``kind`` in :data:`HEADER_SETS`, signed over ``body``
    with ``endpoint``'s secret."""
    if kind == "worker":
        return lambda n: request_headers(
            endpoint, "evt_raw", "issue.updated", DeliveryItem(f"dlv_{n}", 1), body, time.time()
        )
    key = endpoint.secret.encode()
    return lambda _n: {
        "Content-Type": "application/json",
        "X-Cliq-Signature": hmac.digest(key, body, "sha256").hex(),
    }


async def blast(url: str, requests: int, concurrency: int, kind: str) -> dict[str, float]:
    """POST ``requests`` signed bodies with ``concurrency`` in flight; time and count them."""
    body = sample_body()
    headers_of = header_maker(kind, sample_endpoint(url), body)
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    remaining = requests
    errors = 0

    async def lane(session: aiohttp.ClientSession) -> None:
        # Each lane takes the next request number until none is left: `concurrency`
        # lanes keep that many requests in flight without a task per request.
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            headers = headers_of(remaining)
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
    parser.add_argument("--headers", choices=HEADER_SETS, default="worker")
    args = parser.parse_args()
    result = uvloop.run(blast(args.url, args.requests, args.concurrency, args.headers))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
