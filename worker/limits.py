"""Per-endpoint limits across every worker: requests in flight, and requests per second.

Isolation between endpoints: one endpoint that hangs must not take every
worker's slots. Each endpoint has a cap on requests in flight (``max_in_flight``,
default 10), shared by all workers through leases in Redis (``worker/leases.lua``).
A worker reuses the leases it holds for as long as it has requests for that
endpoint, so a busy, healthy endpoint costs no Redis round trip per request.
Several workers needing the same endpoint get fair shares of its cap; leases a
worker no longer needs go back after a short idle time, and a worker that dies
stops renewing them, so they expire within seconds.

A delivery that finds its endpoint at the cap waits locally for a moment if the
endpoint is moving (a slot was freed recently); otherwise it is put back in the
queue for later without spending an attempt: its batch does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from producer.endpoints import Endpoint
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script

log = structlog.get_logger("cliq.worker.limits")

# Leases are renewed every maintenance tick; a worker that stops renewing (it died)
# frees its endpoints' capacity this soon.
LEASE_TTL_S = 5.0
# A delivery that finds its endpoint at the cap joins a local line if the endpoint is
# moving (a slot freed, or its requests started, within MOVING_WITHIN_S). It stays while
# the line moves and leaves when no slot was freed for MOVING_WITHIN_S (a hanging
# endpoint frees none), or after MAX_LOCAL_WAIT_S in all. Rate-limited requests wait
# up to LOCAL_WAIT_S for a permit.
LOCAL_WAIT_S = 1.0
MAX_LOCAL_WAIT_S = 10.0
MOVING_WITHIN_S = 0.5
IDLE_RELEASE_S = 0.25
MAINTENANCE_INTERVAL_S = 0.25
# At its cap here with no slot freed for this long: the endpoint is stalled.
STALLED_AFTER_S = LOCAL_WAIT_S
# A rate-limited endpoint may send this many requests back to back.
RATE_BURST_REQUESTS = 1


@dataclass
class EndpointSlots:
    """This worker's view of one endpoint: leases held and in use, and who waits."""

    cap: int
    share: int
    held: int = 0
    busy: int = 0
    surplus: int = 0  # leases above the fair share, to hand back
    # When a held lease last became free: leases unused for IDLE_RELEASE_S go back.
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    acquiring: asyncio.Future[None] | None = None
    active_since: float = 0.0  # when busy last went from 0 to 1
    last_release: float = 0.0
    idle_since: float = 0.0


@dataclass(frozen=True)
class Deferral:
    """A delivery put back because its endpoint is at a limit (no attempt spent)."""

    hint_s: float = 0.0
    """The earliest sensible retry, in seconds (0: no particular time)."""
    stalled: bool = False
    """The endpoint hangs: at its cap here with no slot freed for ``STALLED_AFTER_S``."""


class EndpointLimiter:
    """Grants this worker's requests a slot on their endpoint, or says to defer them."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        worker_id: str,
        lease_ttl_s: float = LEASE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._redis = redis
        self._keys = keys
        self._worker_id = worker_id
        self._lease_ttl_ms = int(lease_ttl_s * 1000)
        self._script = load_script(redis, keys, "worker", "leases.lua")
        self._endpoints: dict[str, EndpointSlots] = {}

    async def acquire(self, endpoint: Endpoint) -> Deferral | None:
        """None: a slot is taken (call :meth:`release` after the request). Else defer."""
        if endpoint.rate_limit > 0:
            wait_s = await self._rate_permit(endpoint)
            if wait_s is not None:
                return Deferral(hint_s=wait_s)
        slots = self._endpoints.get(endpoint.id)
        if slots is None:
            slots = EndpointSlots(endpoint.max_in_flight, endpoint.max_in_flight)
            self._endpoints[endpoint.id] = slots
        slots.cap = endpoint.max_in_flight
        while True:
            if slots.busy < slots.held:
                if slots.busy == 0:
                    slots.active_since = self._clock()
                slots.busy += 1
                return None
            if min(slots.cap, slots.share) <= slots.held:
                break
            if slots.acquiring is None:
                # One round trip at a time per endpoint, for as many leases as allowed.
                slots.acquiring = asyncio.ensure_future(self._lease(endpoint.id, slots))
            granted_before = slots.held
            await asyncio.shield(slots.acquiring)
            if slots.held == granted_before and slots.busy >= slots.held:
                break
        # Moving: a slot was freed, or the requests holding them started, just now. A
        # busy healthy endpoint frees slots every few ms; a hanging one frees none.
        progress = max(slots.last_release, slots.active_since)
        idle_s = self._clock() - progress
        if slots.held and idle_s < MOVING_WITHIN_S:
            return await self._wait_locally(slots)
        # Stalled (hanging): no slot frees before its requests time out.
        return Deferral(stalled=bool(slots.held) and idle_s >= STALLED_AFTER_S)

    def release(self, endpoint_id: str) -> None:
        """The request is over: hand its slot to a waiter, or let it idle (or go back)."""
        slots = self._endpoints[endpoint_id]
        slots.last_release = slots.idle_since = self._clock()
        if slots.held > min(slots.cap, slots.share):
            slots.held -= 1
            slots.busy -= 1
            slots.surplus += 1
            return
        while slots.waiters:
            waiter = slots.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves on; busy stays the same
                return
        slots.busy -= 1

    async def _wait_locally(self, slots: EndpointSlots) -> Deferral | None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slots.waiters.append(waiter)
        give_up_at = self._clock() + MAX_LOCAL_WAIT_S
        while True:
            await asyncio.wait({waiter}, timeout=MOVING_WITHIN_S)
            if waiter.done():
                return None  # release() handed us its slot
            now = self._clock()
            # A long line that moves is no reason to leave it (a busy machine moves it
            # more slowly); a line that stopped is.
            if now - slots.last_release >= MOVING_WITHIN_S or now >= give_up_at:
                break
        waiter.cancel()
        with contextlib.suppress(ValueError):
            slots.waiters.remove(waiter)
        return Deferral()

    async def _lease(self, endpoint_id: str, slots: EndpointSlots) -> None:
        try:
            want = max(1, min(slots.cap, slots.share) - slots.held)
            granted, share = await self._call("acquire", endpoint_id, slots.cap, want)
            slots.held += int(granted)
            slots.share = int(share)
        finally:
            slots.acquiring = None

    async def _rate_permit(self, endpoint: Endpoint) -> float | None:
        """None once a permit is taken; else the seconds until one is free (if too long)."""
        interval_ms = 1000.0 / endpoint.rate_limit
        deadline = self._clock() + LOCAL_WAIT_S
        while True:
            wait_ms = await self._call(
                "rate", endpoint.id, interval_ms, interval_ms * (RATE_BURST_REQUESTS - 1)
            )
            wait_s = float(wait_ms) / 1000
            if wait_s <= 0:
                return None
            if self._clock() + wait_s > deadline:
                return wait_s
            await asyncio.sleep(wait_s)

    async def _call(self, op: str, *args: str | int | float) -> Any:
        return await self._script(
            op, int(time.time() * 1000), self._worker_id, self._lease_ttl_ms, *args
        )

    async def maintain(self) -> None:
        """Until cancelled: hand back leases not needed, renew the rest, learn fair shares."""
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            try:
                await self._hand_back()
                await self._renew()
            except Exception as exc:  # Redis down: leases expire on their own
                log.warning("lease_maintenance_failed", error=str(exc))

    async def _hand_back(self, everything: bool = False) -> None:
        now = self._clock()
        releases: list[str | int] = []
        for endpoint_id, slots in list(self._endpoints.items()):
            give_back, slots.surplus = slots.surplus, 0
            idle = slots.held - slots.busy
            if (
                idle > 0
                and not slots.waiters
                and (everything or now - slots.idle_since >= IDLE_RELEASE_S)
            ):
                give_back += idle
                slots.held = slots.busy
            if give_back:
                releases += [endpoint_id, give_back]
            if not (slots.held or slots.busy or slots.waiters or slots.acquiring):
                del self._endpoints[endpoint_id]
        if releases:
            await self._call("release", *releases)

    async def _renew(self) -> None:
        held = [(endpoint_id, s) for endpoint_id, s in self._endpoints.items() if s.held]
        if not held:
            return
        shares = await self._call("renew", *[x for e, s in held for x in (e, s.cap, s.held)])
        for (_, slots), share in zip(held, shares, strict=True):
            slots.share = int(share)

    async def close(self) -> None:
        """Hand back every lease still held (called after the last request ended)."""
        await self._hand_back(everything=True)
