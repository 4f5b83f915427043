"""Running the deliveries of one batch (a job or a claim) together.

* Each delivery runs to its end: one whose outcome cannot be recorded does not cancel
  the others midway (a delivery cancelled in its endpoint's line or in flight is work
  thrown away, and Redis may be back for their outcomes). Errors are raised once all
  have ended, so that the job or claim runs again later: what was recorded is skipped
  then, the rest sent again (receivers deduplicate on ``webhook-id``).
* The deliveries refused a slot (deferred) go back as soon as every delivery of the
  batch has a slot or was refused one: they need not wait for its slowest requests.
* A batch whose only unfinished deliveries are requests in flight to endpoints that do
  not answer ends without them (they are left behind): otherwise a few hung requests
  per batch hold every job slot and claim of the worker, and nothing new is taken.
  They go into a claim of the worker first (worker/pickup.py, claims.lua ``keep``),
  dropped once they are recorded, and given back like any claim if the worker stops
  or dies before: at least once, as before.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from producer.backoff import deferral_delay_s
from producer.jobs import DeliveryBatch, DeliveryItem, JobDispatcher, JobSpec
from producer.keys import RETRY_QUEUE
from worker.limits import STALLED_AFTER_S, Deferral, EndpointLimiter
from worker.metrics import Metrics

log = structlog.get_logger("cliq.worker.batchrun")

# How often a batch that still waits for requests looks whether they all stall.
DETACH_CHECK_S = 0.5


class Keeper(Protocol):
    """Holds deliveries that their batch left behind until they are recorded."""

    async def keep(self, items: Sequence[DeliveryItem]) -> str:
        """Hold the items (a claim); returns its id."""

    def kept(self, claim_id: str, recorded: bool) -> None:
        """Its items ended: drop the claim if all were recorded, else give it back."""


@dataclass(eq=False)
class Admission:
    """One delivery of a running batch, as the batch sees it."""

    item: DeliveryItem
    endpoint_id: str
    decided: asyncio.Future[Deferral | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    sent_at: float | None = None  # monotonic: when its request left

    def decide(self, deferral: Deferral | None) -> None:
        """It has a slot (None) or must wait (a deferral)."""
        if not self.decided.done():  # else its batch was cancelled meanwhile
            self.decided.set_result(deferral)

    def fail(self, exc: BaseException) -> None:
        """It could not be decided (Redis failed, or it was cancelled)."""
        if not self.decided.done():
            if isinstance(exc, Exception):
                self.decided.set_exception(exc)
            else:
                self.decided.cancel()


Delivery = tuple[Admission, Coroutine[Any, Any, None]]


class BatchRunner:
    """Runs batches of deliveries; keeps the deliveries that batches left behind."""

    def __init__(
        self,
        metrics: Metrics,
        limiter: EndpointLimiter,
        dispatcher: JobDispatcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._limiter = limiter
        self._dispatcher = dispatcher
        self._clock = clock
        self._detached: set[asyncio.Task[None]] = set()
        # None: batches wait for all their requests (no claims to keep them in).
        self.keeper: Keeper | None = None

    async def run(self, deliveries: Sequence[Delivery], deferrals: int) -> int:
        """Run the deliveries (each coroutine decides its admission); how many were
        attempted, not deferred. ``deferrals``: how often the batch was deferred before.
        """
        tasks = {asyncio.create_task(run): admission for admission, run in deliveries}
        try:
            decisions = await asyncio.gather(
                *(admission.decided for admission, _ in deliveries), return_exceptions=True
            )
            errors = [d for d in decisions if isinstance(d, BaseException)]
            deferred = [
                (admission.item, d)
                for (admission, _), d in zip(deliveries, decisions, strict=True)
                if isinstance(d, Deferral)
            ]
            if deferred and not errors:
                try:
                    await self._defer(deferred, deferrals)
                except Exception as exc:
                    errors.append(exc)
            errors += await self._finish(tasks)
        except BaseException:  # cancelled: so are its deliveries (not the detached ones)
            for task in tasks:
                if task not in self._detached:
                    task.cancel()
            raise
        if errors:
            raise errors[0]
        return len(deliveries) - len(deferred)

    async def _finish(self, tasks: dict[asyncio.Task[None], Admission]) -> list[BaseException]:
        """Wait for the deliveries, or leave those that stall behind; their errors."""
        pending = set(tasks)
        errors: list[BaseException] = []
        while pending:
            done, pending = await asyncio.wait(pending, timeout=DETACH_CHECK_S)
            errors += [e for task in done if (e := _error(task)) is not None]
            stalling = [tasks[task] for task in pending]
            if pending and all(self._stalls(admission) for admission in stalling):
                claim_id = await self._keep(stalling)
                if claim_id is not None:
                    self._leave(pending, claim_id)
                    break
        return errors

    def _stalls(self, admission: Admission) -> bool:
        """Its request has been in flight for a while, to an endpoint that does not answer."""
        return (
            admission.sent_at is not None
            and self._clock() - admission.sent_at >= STALLED_AFTER_S
            and self._limiter.unresponsive(admission.endpoint_id)
        )

    async def _keep(self, stalling: Sequence[Admission]) -> str | None:
        """The claim that holds deliveries left behind; None: keep waiting for them."""
        if self.keeper is None:
            return None
        try:
            return await self.keeper.keep([admission.item for admission in stalling])
        except Exception as exc:  # Redis refused: the batch stays theirs
            log.warning("keep_failed", deliveries=len(stalling), error=str(exc))
            return None

    def _leave(self, pending: set[asyncio.Task[None]], claim_id: str) -> None:
        """Let the batch end: the claim is dropped once all of them ended recorded."""
        left = set(pending)
        failed = False
        self._metrics.detached.inc(len(left))

        def ended(task: asyncio.Task[None]) -> None:
            nonlocal failed
            self._detached.discard(task)
            left.discard(task)
            # Retrieved here: it logged itself. Cancelled or not recorded: the claim is
            # given back, and its items attempted again.
            failed = failed or _error(task) is not None
            if not left and self.keeper is not None:
                self.keeper.kept(claim_id, recorded=not failed)

        for task in left:
            self._detached.add(task)
            task.add_done_callback(ended)

    async def _defer(self, deferred: list[tuple[DeliveryItem, Deferral]], deferrals: int) -> None:
        """Put back items whose endpoint is at its limit: same attempt, later, in a new job.

        Added before the batch completes: a crash in between runs the batch again, and
        the copy of an item that was meanwhile attempted is skipped as a duplicate.
        """
        delay_s = deferral_delay_s(deferrals, (deferral for _, deferral in deferred))
        self._metrics.deferred.inc(len(deferred))
        batch = DeliveryBatch(tuple(item for item, _ in deferred), deferrals + 1)
        spec = JobSpec(
            RETRY_QUEUE, "d" + secrets.token_hex(8), batch.to_dict(), int(delay_s * 1000)
        )
        await self._dispatcher.add([spec])

    async def drain(self, grace_s: float) -> None:
        """Give the deliveries left behind ``grace_s`` to end, then cancel them (their
        claims are given back when the worker retires them)."""
        if not self._detached:
            return
        _done, pending = await asyncio.wait(set(self._detached), timeout=max(0.0, grace_s))
        if pending:
            log.warning("drain_timeout", grace_s=round(grace_s, 3), deliveries=len(pending))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _error(task: asyncio.Task[None]) -> BaseException | None:
    """What a finished delivery task raised, if anything (cancelled: CancelledError)."""
    return asyncio.CancelledError() if task.cancelled() else task.exception()
