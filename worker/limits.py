"""Per-endpoint limits across every worker: requests in flight, and requests per second.

Isolation between endpoints: one endpoint that hangs must not take every
worker's slots. Each endpoint has a cap on requests in flight (``max_in_flight``,
default 10), shared by all workers through leases in Redis
(``worker/leases.lua``). A worker reuses the leases it holds for as long as it has
requests for that endpoint, so a busy, healthy endpoint costs no Redis round trip
per request; leases it no longer needs are handed back after a short idle time,
and a worker that dies stops renewing them, so they expire.

A delivery that finds its endpoint at the cap waits locally for a moment if the
endpoint is moving (a slot was freed recently); otherwise it is put back in the
queue for later without spending an attempt: its batch does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog

from producer.endpoints import Endpoint
from producer.keys import Keys
from producer.scripts import load_script

log = structlog.get_logger("cliq.limits")

LEASE_TTL_S = 30.0
# How long a delivery may wait for a slot held by this worker, and how recently a
# slot must have been freed for the wait to be worth it (a hung endpoint frees none).
LOCAL_WAIT_S = 1.0
MOVING_WITHIN_S = 0.5
IDLE_RELEASE_S = 0.25
MAINTENANCE_INTERVAL_S = 0.25
# A rate-limited endpoint may send this many requests back to back.
RATE_BURST_REQUESTS = 1


@dataclass
class EndpointSlots:
    """This worker's view of one endpoint: leases held and in use, and who waits."""

    cap: int
    held: int = 0
    busy: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    last_release: float = 0.0
    idle_since: float = 0.0


def deferral_delay_s(deferrals: int, hint_s: float = 0.0) -> float:
    """How long a deferred delivery stays out: doubling per deferral, jittered, 1-30 s."""
    base = min(30.0, 2.0**deferrals)
    return max(hint_s, base * random.uniform(0.5, 1.0))


class EndpointLimiter:
    """Grants this worker's requests a slot on their endpoint, or says to defer them."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, worker_id: str, lease_ttl_s: float = LEASE_TTL_S
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._worker_id = worker_id
        self._lease_ttl_ms = int(lease_ttl_s * 1000)
        self._script = load_script(redis, "worker", "leases.lua")
        self._endpoints: dict[str, EndpointSlots] = {}

    async def acquire(self, endpoint: Endpoint) -> float | None:
        """None: a slot is taken (call :meth:`release` after the request). Else defer;
        the float is the earliest sensible retry in seconds (0: no particular time)."""
        if endpoint.rate_limit > 0:
            wait_s = await self._rate_permit(endpoint)
            if wait_s is not None:
                return wait_s
        slots = self._endpoints.get(endpoint.id)
        if slots is None:
            slots = self._endpoints[endpoint.id] = EndpointSlots(endpoint.max_in_flight)
        slots.cap = endpoint.max_in_flight
        if slots.busy < slots.held:
            slots.busy += 1
            return None
        if slots.held < slots.cap and await self._lease(endpoint.id, slots.cap):
            slots.held += 1
            slots.busy += 1
            return None
        if slots.held and time.monotonic() - slots.last_release < MOVING_WITHIN_S:
            return await self._wait_locally(slots)
        return 0.0

    def release(self, endpoint_id: str) -> None:
        """The request is over: hand its slot to a waiter, or let it idle."""
        slots = self._endpoints[endpoint_id]
        slots.last_release = time.monotonic()
        while slots.waiters:
            waiter = slots.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves on; busy stays the same
                return
        slots.busy -= 1
        if slots.busy == 0:
            slots.idle_since = slots.last_release

    async def _wait_locally(self, slots: EndpointSlots) -> float | None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slots.waiters.append(waiter)
        await asyncio.wait({waiter}, timeout=LOCAL_WAIT_S)
        if waiter.done():
            return None  # release() handed us its slot
        waiter.cancel()
        with contextlib.suppress(ValueError):
            slots.waiters.remove(waiter)
        return 0.0

    async def _lease(self, endpoint_id: str, cap: int) -> bool:
        granted = await self._script(
            args=[
                self._keys.prefix,
                "acquire",
                int(time.time() * 1000),
                self._worker_id,
                endpoint_id,
                cap,
                1,
                self._lease_ttl_ms,
            ]
        )
        return int(granted) > 0

    async def _rate_permit(self, endpoint: Endpoint) -> float | None:
        """None once a permit is taken; else the seconds until one is free (if too long)."""
        interval_ms = 1000.0 / endpoint.rate_limit
        deadline = time.monotonic() + LOCAL_WAIT_S
        while True:
            wait_ms = await self._script(
                args=[
                    self._keys.prefix,
                    "rate",
                    int(time.time() * 1000),
                    self._worker_id,
                    endpoint.id,
                    interval_ms,
                    interval_ms * (RATE_BURST_REQUESTS - 1),
                ]
            )
            wait_s = float(wait_ms) / 1000
            if wait_s <= 0:
                return None
            if time.monotonic() + wait_s > deadline:
                return wait_s
            await asyncio.sleep(wait_s)

    async def maintain(self) -> None:
        """Until cancelled: renew held leases, hand back idle ones, forget unused endpoints."""
        renew_every = self._lease_ttl_ms / 3000
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            try:
                await self._hand_back_idle()
                if time.monotonic() - last_renewal >= renew_every:
                    await self._renew()
                    last_renewal = time.monotonic()
            except Exception as exc:  # Redis down: leases expire on their own
                log.warning("lease_maintenance_failed", error=str(exc))

    async def _hand_back_idle(self, everything: bool = False) -> None:
        now = time.monotonic()
        releases: list[str | int] = []
        for endpoint_id, slots in list(self._endpoints.items()):
            idle = slots.held - slots.busy
            if (
                idle > 0
                and not slots.waiters
                and (everything or now - slots.idle_since >= IDLE_RELEASE_S)
            ):
                releases += [endpoint_id, idle]
                slots.held = slots.busy
            if slots.held == 0 and slots.busy == 0 and not slots.waiters:
                del self._endpoints[endpoint_id]
        if releases:
            await self._script(
                args=[
                    self._keys.prefix,
                    "release",
                    int(time.time() * 1000),
                    self._worker_id,
                    self._lease_ttl_ms,
                    *releases,
                ]
            )

    async def _renew(self) -> None:
        held = [endpoint_id for endpoint_id, slots in self._endpoints.items() if slots.held]
        if held:
            await self._script(
                args=[
                    self._keys.prefix,
                    "renew",
                    int(time.time() * 1000),
                    self._worker_id,
                    self._lease_ttl_ms,
                    *held,
                ]
            )

    async def close(self) -> None:
        """Hand back every lease still held (called after the last request ended)."""
        await self._hand_back_idle(everything=True)
