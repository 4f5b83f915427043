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

from producer.endpoint import Endpoint
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from worker.metrics import Metrics
from worker.stalls import Stalls

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
# At its cap here with no slot freed (or in flight without an answer) for this long:
# the endpoint is stalled.
STALLED_AFTER_S = LOCAL_WAIT_S
# A rate-limited endpoint may send this many requests back to back.
RATE_BURST_REQUESTS = 1


@dataclass(frozen=True)
class Waiter:
    """A delivery in an endpoint's local line: the future release() sets, and its task."""

    future: asyncio.Future[None]
    task: asyncio.Task[Any]


@dataclass
class EndpointSlots:
    """This worker's view of one endpoint: leases held and in use, and who waits."""

    cap: int
    share: int
    held: int = 0
    busy: int = 0
    surplus: int = 0  # leases above the fair share, to hand back
    # Tasks holding a slot, and how many: the truth that ``busy`` is checked against.
    holders: dict[asyncio.Task[Any], int] = field(default_factory=dict)
    # Requests in flight counted against the stalled budget (worker/stalls.py).
    counted: int = 0
    # Requests the other workers had in flight for it, as of the last lease round trip.
    others_running: int = 0
    waiters: deque[Waiter] = field(default_factory=deque)
    acquiring: asyncio.Future[None] | None = None
    active_since: float = 0.0  # when busy last went from 0 to 1
    last_release: float = 0.0
    # When a held lease last became free: leases unused for IDLE_RELEASE_S go back.
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
        *,
        stalls: Stalls | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``stalls``: the stalled-request budget and idle deferrals of this worker
        process (worker/stalls.py), shared by the limiters of its lanes; None: a budget
        of its own without a bound."""
        self._clock = clock
        self._redis = redis
        self._keys = keys
        self._worker_id = worker_id
        self._lease_ttl_ms = int(lease_ttl_s * 1000)
        self._script = load_script(redis, keys, "worker", "leases.lua")
        self._endpoints: dict[str, EndpointSlots] = {}
        stalls = stalls or Stalls.of(None, STALLED_AFTER_S)
        self._budget, self._idle = stalls.budget, stalls.idle
        self._metrics = metrics or Metrics()

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
        deferral = await self._slot(endpoint.id, slots)
        if deferral is not None:
            return deferral
        # A slot of the endpoint is ours; an endpoint not known to answer also needs
        # room in the stalled budget.
        now = self._clock()
        if self._budget.suspect(endpoint.id, slots.busy, slots.active_since, now):
            if self._budget.full:
                self._free(slots)
                return Deferral(
                    stalled=self._budget.stalled(endpoint.id, slots.busy, slots.active_since, now)
                )
            slots.counted += 1
            self._budget.in_flight += 1
        return None

    async def _slot(self, endpoint_id: str, slots: EndpointSlots) -> Deferral | None:
        """A slot within the endpoint's cap, from a lease held, a new one or the line."""
        while True:
            if slots.busy < slots.held:
                if slots.busy == 0:
                    slots.active_since = self._clock()
                slots.busy += 1
                self._hold(slots, _current_task())
                return None
            if min(slots.cap, slots.share) <= slots.held:
                break
            if slots.acquiring is None:
                # One round trip at a time per endpoint, for as many leases as allowed.
                slots.acquiring = asyncio.ensure_future(self._lease(endpoint_id, slots))
            granted_before = slots.held
            await asyncio.shield(slots.acquiring)
            if slots.held == granted_before and slots.busy >= slots.held:
                break
        # Moving: a slot was freed, or the requests holding them started, just now. A
        # busy healthy endpoint frees slots every few ms; a hanging one frees none.
        idle_s = self._clock() - max(slots.last_release, slots.active_since)
        if slots.held and idle_s < MOVING_WITHIN_S:
            deferral = await self._wait_locally(slots)
        else:
            # Stalled (hanging): no slot frees before its requests time out.
            deferral = Deferral(stalled=bool(slots.held) and idle_s >= STALLED_AFTER_S)
        if deferral is not None:
            running = slots.others_running > 0 or bool(self._live(slots))
            self._idle.deferred(endpoint_id, running, self._clock())
        return deferral

    def unresponsive(self, endpoint_id: str) -> bool:
        """Not known to answer: stalled, its last request timed out, or none ended lately."""
        slots = self._endpoints.get(endpoint_id)
        busy, since = (slots.busy, slots.active_since) if slots is not None else (0, 0.0)
        return self._budget.suspect(endpoint_id, busy, since, self._clock())

    def release(self, endpoint_id: str, answered: bool | None = True) -> None:
        """The request is over: hand its slot to a waiter, or let it idle (or go back).

        ``answered``: it got an answer (any status, or a quick failure such as a refused
        connection); False: it timed out; None: unknown (cancelled).
        """
        slots = self._endpoints[endpoint_id]
        now = self._clock()
        if answered is not None:
            self._budget.ended(endpoint_id, answered, now)
        if slots.counted:
            slots.counted -= 1
            self._budget.in_flight -= 1
        slots.last_release = slots.idle_since = now
        self._free(slots)

    def _free(self, slots: EndpointSlots) -> None:
        """The current task's slot goes to the next live waiter, back, or idle."""
        self._unhold(slots, _current_task())
        if slots.held > min(slots.cap, slots.share):
            slots.held -= 1
            slots.busy -= 1
            slots.surplus += 1
            return
        if not self._hand_over(slots):
            slots.busy -= 1

    def _hand_over(self, slots: EndpointSlots) -> bool:
        """Give a slot in use (busy stays the same) to the longest live waiter, if any."""
        while slots.waiters:
            waiter = slots.waiters.popleft()
            if not waiter.future.done() and not waiter.task.done():
                waiter.future.set_result(None)
                self._hold(slots, waiter.task)
                return True
        return False

    @staticmethod
    def _hold(slots: EndpointSlots, task: asyncio.Task[Any]) -> None:
        slots.holders[task] = slots.holders.get(task, 0) + 1

    @staticmethod
    def _unhold(slots: EndpointSlots, task: asyncio.Task[Any]) -> None:
        held = slots.holders.get(task, 0)
        if held > 1:
            slots.holders[task] = held - 1
        elif held == 1:
            del slots.holders[task]
        elif slots.holders:  # released by another task than took it: one of them
            EndpointLimiter._unhold(slots, next(iter(slots.holders)))

    @staticmethod
    def _live(slots: EndpointSlots) -> int:
        return sum(n for task, n in slots.holders.items() if not task.done())

    async def _wait_locally(self, slots: EndpointSlots) -> Deferral | None:
        waiter = Waiter(asyncio.get_running_loop().create_future(), _current_task())
        slots.waiters.append(waiter)
        give_up_at = self._clock() + MAX_LOCAL_WAIT_S
        try:
            while True:
                await asyncio.wait({waiter.future}, timeout=MOVING_WITHIN_S)
                if waiter.future.done():
                    return None  # release() handed us its slot
                now = self._clock()
                # A long line that moves is no reason to leave it (a busy machine moves
                # it more slowly); a line that stopped is.
                if now - slots.last_release >= MOVING_WITHIN_S or now >= give_up_at:
                    break
        except BaseException:
            # Cancelled (the batch or the worker stops): leave the line, and pass on a
            # slot handed over just before, or it would never be released.
            if waiter.future.done() and not waiter.future.cancelled():
                self._free(slots)
            raise
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
                with contextlib.suppress(ValueError):
                    slots.waiters.remove(waiter)
        return Deferral()

    async def _lease(self, endpoint_id: str, slots: EndpointSlots) -> None:
        try:
            want = max(1, min(slots.cap, slots.share) - slots.held)
            granted, share, running = await self._call("acquire", endpoint_id, slots.cap, want)
            slots.held += int(granted)
            slots.share = int(share)
            slots.others_running = int(running)
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
        """Until cancelled: check the books, hand back leases not needed, renew the rest."""
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            self.check()
            try:
                await self._hand_back()
                await self._renew()
            except Exception as exc:  # Redis down: leases expire on their own
                log.warning("lease_maintenance_failed", error=str(exc))

    def check(self) -> None:
        """Compare slots in use with the tasks holding them, and repair the difference.

        A slot whose holder ended without releasing it (a bug, or a cancellation
        nothing caught) would shrink its endpoint's cap for good: it is freed here and
        counted in ``cliq_lease_repairs_total``. Also counts stalled endpoints' requests
        against the stalled budget, and refreshes the gauges.
        """
        now = self._clock()
        for endpoint_id, slots in self._endpoints.items():
            for task in [task for task in slots.holders if task.done()]:
                del slots.holders[task]
            for waiter in [w for w in slots.waiters if w.task.done() or w.future.done()]:
                slots.waiters.remove(waiter)
            live = self._live(slots)
            if slots.busy > live:
                self._repair(endpoint_id, slots, live)
            if live:
                self._idle.running(endpoint_id)
            if slots.counted < live and self._budget.suspect(
                endpoint_id, live, slots.active_since, now
            ):
                # Stalled since its requests left: from now on they count.
                self._budget.in_flight += live - slots.counted
                slots.counted = live
        self._budget.forget(now)
        self._metrics.endpoints_deferring_idle.set(self._idle.count(now))
        self._metrics.stalled_in_flight.set(self._budget.in_flight)

    def _repair(self, endpoint_id: str, slots: EndpointSlots, live: int) -> None:
        log.warning(
            "lease_repaired", endpoint_id=endpoint_id, slots_in_use=slots.busy, in_flight=live
        )
        self._metrics.lease_repairs.inc(slots.busy - live)
        slots.busy = live
        if slots.counted > live:
            self._budget.in_flight -= slots.counted - live
            slots.counted = live
        while slots.busy < slots.held and self._hand_over(slots):
            slots.busy += 1

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
        # What is in flight is told from the tasks holding slots, not from ``busy``: a
        # worker whose books are wrong still tells the others the truth.
        quads = [x for e, s in held for x in (e, s.cap, s.held, self._live(s))]
        shares = await self._call("renew", *quads)
        for (_, slots), share in zip(held, shares, strict=True):
            slots.share = int(share)

    async def close(self) -> None:
        """Hand back every lease still held (called after the last request ended)."""
        self.check()
        await self._hand_back(everything=True)


def _current_task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None, "the limiter is used from a task"
    return task
