"""Processing a delivery job: load the batch, sign, POST, record each outcome.

A job carries a batch of (delivery, attempt) items, so bullmq's cost is paid once
per batch; a claim on the ready list is such a batch without a job (worker/pickup.py).
Each item lives on its own: it is skipped if its attempt is already recorded (a
re-run after a crash), its failure schedules only itself (grouped with others due
at the same time), and its outcome is written as soon as it is known, through a
group commit shared by every job of the process.

The steps, each in a module of its own: :mod:`worker.batches` (what the batch needs,
loaded and decoded), :mod:`worker.limits` (the endpoint's in-flight cap and rate),
:mod:`worker.request` and :mod:`worker.sender` (the signed POST),
:mod:`worker.outcomes` (what it led to) and :mod:`worker.recorder` (written back);
how the deliveries of one batch run together is :mod:`worker.batchrun`'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from producer.deliveries import AttemptOutcome
from producer.jobs import DeliveryBatch, DeliveryItem, JobDispatcher, ready_item
from producer.keys import Keys
from producer.pausing import BACKLOG_FULL, DROPPED_BY_DISABLE
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from producer.secretbox import SecretBox
from producer.signing import request_headers
from worker.batches import Loaded, Target, decode
from worker.batchrun import Admission, BatchRunner, Keeper
from worker.limits import EndpointLimiter
from worker.metrics import Metrics
from worker.outcomes import Outcome, outcome_of, unsent
from worker.pauses import Pauser
from worker.recorder import Recorder
from worker.schedule import RetrySchedule
from worker.sender import Response, Sender
from worker.slots import Slots

log = structlog.get_logger("cliq.worker.delivery")

# Pauses between tries of an outcome write that failed: about 6 s in all, longer than
# a Redis restart takes. Then the batch is given back to be run again.
RECORD_RETRY_DELAYS_S = (0.1, 0.3, 0.6, 1.0, 2.0, 2.0)
# Paused deliveries ended dead without an attempt: reason -> metric label.
DROPPED_REASONS = {BACKLOG_FULL: "backlog_full", DROPPED_BY_DISABLE: "drop"}


class DeliveryProcessor:
    """The bullmq processor of the delivery queues, and the attempter of ready-list claims."""

    def __init__(
        self,
        *,
        redis: RedisClient,
        keys: Keys,
        schedule: RetrySchedule,
        retention_s: int,
        concurrency: int,
        sender: Sender,
        dispatcher: JobDispatcher,
        metrics: Metrics,
        limiter: EndpointLimiter,
        box: SecretBox,
        to_log_outbox: bool,
        keep_per_endpoint: int,
        pauser: Pauser,
        operations: bool = False,
        slots: Slots | None = None,
    ) -> None:
        """``to_log_outbox``: outcomes also go to the log outbox (``DATABASE_URL`` is set);
        else ``keep_per_endpoint`` delivered deliveries stay in Redis per endpoint.
        ``pauser``: where items of disabled endpoints go instead of an attempt.
        ``operations``: outcomes cause operational events (``OPERATIONS_WEBHOOK_URL``).
        ``slots``: the process's HTTP slots, shared by the processors of every partition
        (default: ``concurrency`` of its own)."""
        self._pauser = pauser
        self._schedule = schedule
        self._sender = sender
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._limiter = limiter
        self._box = box
        self._slots = slots or Slots(concurrency)
        self._in_flight = 0
        self._load = load_script(redis, keys, "worker", "load.lua")
        self._recorder = Recorder(
            redis,
            keys,
            dispatcher,
            metrics,
            retention_s,
            to_log_outbox,
            keep_per_endpoint,
            operations,
        )
        self._batches = BatchRunner(metrics, limiter, dispatcher)

    async def process(self, job: Any, _token: str) -> int:
        """Attempt every item of the job; returns how many were attempted.

        Bad job data is logged and counted, and the job completes: a worker never
        crashes on it. Redis errors propagate, so bullmq retries the job later.
        """
        try:
            batch = DeliveryBatch.from_dict(job.data)
        except ValueError as exc:
            self._metrics.bad_jobs.inc()
            log.error("bad_job", queue=job.queue.name, job_id=job.id, error=str(exc))
            return 0
        return await self._attempt(batch, None)

    async def attempt_claimed(self, claim_id: str, entries: Sequence[str], loaded: Loaded) -> int:
        """Attempt the ready-list entries of a claim (worker/pickup.py), loaded with them.

        Returns how many were attempted. A malformed entry (only our scripts write the
        list) is reported and counted on its own; the rest of the claim goes on.
        """
        rows, events, endpoints = loaded
        items, kept = [], []
        for entry, row in zip(entries, rows, strict=True):
            try:
                items.append(ready_item(entry))
            except ValueError as exc:
                self._metrics.bad_jobs.inc()
                log.error("bad_ready_entry", claim_id=claim_id, entry=entry[:200], error=str(exc))
                continue
            kept.append(row)
        return await self._attempt(DeliveryBatch(tuple(items)), [kept, events, endpoints])

    async def _attempt(self, batch: DeliveryBatch, loaded: Loaded | None) -> int:
        """Attempt the batch's items; returns how many were attempted (not deferred).

        ``loaded``: what batch.lua read for the items, if it already was.
        """
        deliveries = []
        for target in await self._targets(batch.items, loaded):
            admission = Admission(target.item, target.endpoint.id)
            deliveries.append((admission, self._deliver(target, admission)))
        return await self._batches.run(deliveries, batch.deferrals)

    async def _targets(self, items: Sequence[DeliveryItem], loaded: Loaded | None) -> list[Target]:
        """Load the batch (unless given); items that need no HTTP request are settled here."""
        if not items:
            return []
        if loaded is None:
            loaded = await self._load(orjson.dumps([item.delivery_id for item in items]))
        batch = decode(items, loaded, self._box)
        for item in batch.gone:
            log.warning("delivery_gone", delivery_id=item.delivery_id, attempt=item.attempt)
        if batch.duplicates:
            self._metrics.deliveries.labels("duplicate").inc(batch.duplicates)
        if batch.paused:
            await self._pauser.pause(batch.paused)
        for u in batch.unsendable:
            if u.reason in DROPPED_REASONS:
                self._metrics.paused_dropped.labels(DROPPED_REASONS[u.reason]).inc()
        await asyncio.gather(*(self._record(unsent(u)) for u in batch.unsendable))
        return batch.targets

    async def _deliver(self, target: Target, admission: Admission) -> None:
        """Attempt one delivery, or tell its batch why it must wait (a limit)."""
        endpoint = target.endpoint
        try:
            deferral = await self._limiter.acquire(endpoint)
        except BaseException as exc:
            admission.fail(exc)
            raise
        admission.decide(deferral)
        if deferral is not None:
            return
        answered: bool | None = None  # unknown if cancelled
        try:
            response, signed_s = await self._post(target, admission)
            answered = not response.timed_out
        finally:
            self._limiter.release(endpoint.id, answered)
        self._metrics.attempt(response.status, response.duration_s)
        # The attempt's time is when it was signed: from it the dashboard computes the
        # very headers it carried (webhook-timestamp, the secrets then in use).
        outcome = outcome_of(target, response, signed_s, self._schedule)
        code = await self._record(outcome)
        log.info(
            "delivery_attempt",
            event_id=target.event_id,
            endpoint_id=endpoint.id,
            delivery_id=target.item.delivery_id,
            attempt=target.item.attempt,
            status=response.status,
            error=response.error,
            duration_ms=round(response.duration_s * 1000, 2),
            outcome=code,
            next_in_s=outcome.delay_s,
        )
        if outcome.kind == AttemptOutcome.DELIVERED and code != "dup":
            self._metrics.end_to_end.observe(max(0.0, time.time() - target.event_created_ms / 1000))

    async def _post(self, target: Target, admission: Admission) -> tuple[Response, float]:
        """The response, and the time (s) the request was signed at."""
        endpoint = target.endpoint
        async with self._slots:
            admission.sent_at = time.monotonic()
            # Signed once a slot is free, so the timestamp is fresh when the request leaves.
            now = time.time()
            headers = request_headers(
                endpoint, target.event_id, target.event_type, target.item, target.body, now
            )
            self._in_flight += 1
            try:
                response = await self._sender.post(
                    endpoint.url, target.body, headers, endpoint.timeout_s
                )
                return response, now
            finally:
                self._in_flight -= 1

    async def _record(self, outcome: Outcome) -> str:
        """Record an outcome, retrying for a few seconds (a Redis restart, a full Redis).

        Raises the last error when every try failed. Retrying is safe: record.lua
        answers ``dup`` for an attempt that was recorded after all.
        """
        delays = iter(RECORD_RETRY_DELAYS_S)
        while True:
            try:
                return await self._recorder.record(outcome)
            except Exception as exc:
                delay_s = next(delays, None)
                if delay_s is None:
                    log.warning(
                        "outcome_not_recorded",
                        event_id=outcome.event_id,
                        endpoint_id=outcome.endpoint_id,
                        delivery_id=outcome.item.delivery_id,
                        attempt=outcome.item.attempt,
                        error=str(exc),
                    )
                    raise
                await asyncio.sleep(delay_s)

    @property
    def in_flight(self) -> int:
        """HTTP attempts in progress (a plain count: the gauge is set from it)."""
        return self._in_flight

    def keep_stalled_in(self, keeper: Keeper) -> None:
        """Where batches keep the requests to stalled endpoints they leave behind."""
        self._batches.keeper = keeper

    async def close(self, grace_s: float) -> None:
        """Give deliveries that batches left behind ``grace_s`` to end (then cancel them),
        and wait for outcomes still being written."""
        await self._batches.drain(grace_s)
        await self._recorder.close()
