"""Processing a delivery job: load the batch, sign, POST, record each outcome.

A job carries a batch of (delivery, attempt) items, so bullmq's cost is paid once
per batch; a claim on the ready list is such a batch without a job (worker/pickup.py).
Each item lives on its own: it is skipped if its attempt is already recorded (a
re-run after a crash), its failure schedules only itself (grouped with others due
at the same time), and its outcome is written as soon as it is known, through a
group commit shared by every job of the process.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from redis.typing import EncodableT

from producer.cluster import RedisClient
from producer.deliveries import Attempt, AttemptOutcome, DeliveryState
from producer.endpoints import Endpoint, EndpointStatus
from producer.jobs import (
    DeliveryBatch,
    DeliveryItem,
    JobDispatcher,
    JobSpec,
    ready_item,
)
from producer.keys import NOTIFICATION_QUEUE, RETRY_QUEUE, Keys
from producer.scripts import load_script
from producer.secretbox import SecretBox
from worker.limits import Deferral, EndpointLimiter, deferral_delay_s
from worker.metrics import Metrics
from worker.recorder import GroupCommit
from worker.schedule import RetrySchedule
from worker.sender import Response, Sender
from worker.signing import signature_headers
from worker.slots import Slots

log = structlog.get_logger("cliq.delivery")

RECORD_MAX_OUTCOMES = 500
# batch.lua's reply: {deliveries, events, endpoints} (see there).
Loaded = list[Any]
GONE = 410


@dataclass(frozen=True)
class Target:
    """One item with everything needed to attempt it."""

    item: DeliveryItem
    attempt_in_round: int
    event_id: str
    event_type: str
    event_created_ms: int
    body: bytes
    endpoint: Endpoint


@dataclass(frozen=True)
class Outcome:
    """An attempt's result, ready to be recorded."""

    item: DeliveryItem
    kind: AttemptOutcome
    attempt: Attempt
    event_id: str
    endpoint_id: str
    delay_s: float | None = None
    # 410 Gone: the receiver says the endpoint no longer exists; stop sending to it.
    disable: bool = False
    # The destination policy refused the address: dead at once, not retried.
    refused: bool = False


class DeliveryProcessor:
    """The bullmq processor of the delivery queue."""

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
    ) -> None:
        self._schedule = schedule
        self._retention_s = retention_s
        self._sender = sender
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._limiter = limiter
        self._box = box
        self._slots = Slots(concurrency)
        self._in_flight = 0
        self._load = load_script(redis, keys, "worker", "load.lua")
        self._record = load_script(redis, keys, "worker", "record.lua")
        self._recorder: GroupCommit[Outcome, str] = GroupCommit(self._flush, RECORD_MAX_OUTCOMES)

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
        targets = await self._targets(batch.items, loaded)
        # A task group: when an outcome cannot be recorded (Redis is gone), the rest of
        # the batch stops sending too, instead of making attempts nobody can record.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._deliver(target)) for target in targets]
        results = [task.result() for task in tasks]
        deferred = [(t.item, d) for t, d in zip(targets, results, strict=True) if d is not None]
        if deferred:
            await self._defer(deferred, batch.deferrals)
        return len(targets) - len(deferred)

    async def _defer(self, deferred: list[tuple[DeliveryItem, Deferral]], deferrals: int) -> None:
        """Put back items whose endpoint is at its limit: same attempt, later, in a new job.

        Added before this job completes: a crash in between runs this job again, and
        the copy of an item that was meanwhile attempted is skipped as a duplicate.
        """
        delay_s = deferral_delay_s(deferrals, (deferral for _, deferral in deferred))
        self._metrics.deferred.inc(len(deferred))
        batch = DeliveryBatch(tuple(item for item, _ in deferred), deferrals + 1)
        spec = JobSpec(
            RETRY_QUEUE, "d" + secrets.token_hex(8), batch.to_dict(), int(delay_s * 1000)
        )
        await self._dispatcher.add([spec])

    async def _targets(self, items: Sequence[DeliveryItem], loaded: Loaded | None) -> list[Target]:
        """Load the batch (unless given); items that need no HTTP request are settled here."""
        if not items:
            return []
        if loaded is None:
            loaded = await self._load(orjson.dumps([item.delivery_id for item in items]))
        rows, flat_events, endpoint_rows = loaded
        events = {  # each body encoded once, whatever the fan-out within the batch
            flat_events[k]: (
                flat_events[k + 1].encode(),
                flat_events[k + 2],
                int(flat_events[k + 3]),
            )
            for k in range(0, len(flat_events), 4)
        }
        endpoints: dict[str, Endpoint | None] = {}
        for row in endpoint_rows:
            fields = dict(zip(row[1::2], row[2::2], strict=True))
            endpoints[row[0]] = Endpoint.from_hash(fields, self._box) if fields else None

        targets: list[Target] = []
        settled: list[Outcome] = []
        for item, row in zip(items, rows, strict=True):
            if not row:
                log.warning("delivery_gone", delivery_id=item.delivery_id, attempt=item.attempt)
                continue
            state, made, base, event_id, endpoint_id = (
                row[0],
                int(row[1]),
                int(row[2]),
                row[3],
                row[4],
            )
            if state in (DeliveryState.DELIVERED, DeliveryState.DEAD) or made >= item.attempt:
                self._metrics.deliveries.labels("duplicate").inc()
                continue
            endpoint = endpoints.get(endpoint_id)
            event = events.get(event_id)
            reason = None
            if endpoint is None:
                reason = "endpoint deleted"
            elif endpoint.status == EndpointStatus.DISABLED:
                reason = "endpoint disabled"
            elif event is None:
                reason = "event expired"
            if reason is not None or endpoint is None or event is None:
                settled.append(self._settle(item, event_id, endpoint_id, reason or ""))
                continue
            body, event_type, created_ms = event
            targets.append(
                Target(
                    item,
                    item.attempt - base,
                    event_id,
                    event_type,
                    created_ms,
                    body,
                    endpoint,
                )
            )
        await asyncio.gather(*(self._commit(outcome) for outcome in settled))
        return targets

    def _settle(self, item: DeliveryItem, event_id: str, endpoint_id: str, reason: str) -> Outcome:
        """A delivery that cannot be attempted ends dead, kept for replay, with the reason."""
        attempt = Attempt(
            number=item.attempt,
            at_ms=int(time.time() * 1000),
            status=None,
            error=f"not sent: {reason}",
            latency_ms=0.0,
            response="",
            outcome=AttemptOutcome.DEAD,
        )
        return Outcome(item, AttemptOutcome.DEAD, attempt, event_id, endpoint_id)

    async def _deliver(self, target: Target) -> Deferral | None:
        """Attempt one delivery, or return why it must wait (its endpoint is at a limit)."""
        endpoint = target.endpoint
        deferral = await self._limiter.acquire(endpoint)
        if deferral is not None:
            return deferral
        try:
            response = await self._post(target)
        finally:
            self._limiter.release(endpoint.id)
        self._metrics.attempt(response.status, response.duration_s)
        outcome = self._outcome(target, response, time.time() - response.duration_s)
        code = await self._commit(outcome)
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
        return None

    async def _post(self, target: Target) -> Response:
        endpoint = target.endpoint
        async with self._slots:
            # Signed once a slot is free, so the timestamp is fresh when the request leaves.
            now = time.time()
            headers = request_headers(
                endpoint, target.event_id, target.event_type, target.item, target.body, now
            )
            self._in_flight += 1
            try:
                return await self._sender.post(endpoint.url, target.body, headers)
            finally:
                self._in_flight -= 1

    def _outcome(self, target: Target, response: Response, started_s: float) -> Outcome:
        at_ms = int(started_s * 1000)
        delay: float | None = None
        gone = response.status == GONE
        if response.ok:
            kind = AttemptOutcome.DELIVERED
        elif gone or response.refused:
            # A refused destination stays refused: retrying would only delay telling
            # the owner (the endpoint turns failing, as after a last failed attempt).
            kind = AttemptOutcome.DEAD
        else:
            delay = self._schedule.delay_after_failure(
                target.attempt_in_round, response.retry_after_s
            )
            kind = AttemptOutcome.DEAD if delay is None else AttemptOutcome.RETRY
        attempt = Attempt(
            number=target.item.attempt,
            at_ms=at_ms,
            status=response.status,
            error=response.error,
            latency_ms=round(response.duration_s * 1000, 3),
            response=response.excerpt,
            outcome=kind,
            next_attempt_ms=None if delay is None else int((time.time() + delay) * 1000),
        )
        return Outcome(
            target.item,
            kind,
            attempt,
            target.event_id,
            target.endpoint.id,
            delay,
            gone,
            response.refused,
        )

    async def _commit(self, outcome: Outcome) -> str:
        code = await self._recorder.submit(outcome)
        self._count(outcome, code)
        return code

    def _count(self, outcome: Outcome, code: str) -> None:
        if code == "dup":
            self._metrics.deliveries.labels("duplicate").inc()
            return
        if code == "gone":
            return
        self._metrics.deliveries.labels(outcome.kind.value).inc()
        if outcome.kind == AttemptOutcome.RETRY:
            self._metrics.retries.inc()
        elif code == "failing":
            self._metrics.endpoint_transitions.labels("failing").inc()
            log.warning(
                "endpoint_failing",
                endpoint_id=outcome.endpoint_id,
                delivery_id=outcome.item.delivery_id,
                event_id=outcome.event_id,
            )
        elif code == "recovered":
            self._metrics.endpoint_transitions.labels("active").inc()
            log.info("endpoint_recovered", endpoint_id=outcome.endpoint_id)
        elif code == "disabled":
            self._metrics.endpoint_transitions.labels("disabled").inc()
            log.warning(
                "endpoint_disabled",
                reason="410 Gone",
                endpoint_id=outcome.endpoint_id,
                delivery_id=outcome.item.delivery_id,
                event_id=outcome.event_id,
            )

    async def _flush(self, outcomes: Sequence[Outcome]) -> list[str]:
        """Record outcomes in one script call, then hand the jobs they caused to bullmq."""
        now_ms = int(time.time() * 1000)
        rows: list[tuple[str, int, str, str, str, str, int]] = []
        retries: dict[int, list[DeliveryItem]] = defaultdict(list)
        for outcome in outcomes:
            notify = ""
            due = ""
            if outcome.kind == AttemptOutcome.RETRY and outcome.delay_s is not None:
                delay_ms = int(outcome.delay_s * 1000)
                due = str(now_ms + delay_ms)
                retries[delay_ms].append(
                    DeliveryItem(outcome.item.delivery_id, outcome.item.attempt + 1)
                )
            elif outcome.kind == AttemptOutcome.DEAD:
                notify = notification_spec(outcome).to_json()
            rows.append(
                (
                    outcome.item.delivery_id,
                    outcome.item.attempt,
                    outcome.kind.value,
                    outcome.attempt.to_json(),
                    due,
                    notify,
                    1 if outcome.disable else 0,
                )
            )
        args: list[EncodableT] = [now_ms, self._retention_s, orjson.dumps(rows)]
        for delay_ms, items in retries.items():
            spec = JobSpec(
                RETRY_QUEUE,
                "r" + secrets.token_hex(8),
                DeliveryBatch(tuple(items)).to_dict(),
                delay_ms,
            )
            args.append(spec.to_json())
        codes, members = await self._record(*args)
        await self._dispatcher.dispatch(members)
        return list(codes)

    @property
    def in_flight(self) -> int:
        """HTTP attempts in progress (a plain count: the gauge is set from it)."""
        return self._in_flight

    async def close(self) -> None:
        """Wait for outcomes still being written."""
        await self._recorder.close()


def request_headers(
    endpoint: Endpoint,
    event_id: str,
    event_type: str,
    item: DeliveryItem,
    body: bytes,
    now_s: float,
) -> dict[str, str]:
    """Every header of a delivery request except ``User-Agent`` (set on the session).

    ``webhook-id`` is the event id: stable across retries and replays, so receivers
    can deduplicate on it as the seed advises.
    """
    headers = signature_headers(
        endpoint.signing_secrets(int(now_s * 1000)), event_id, int(now_s), body
    )
    headers["Content-Type"] = "application/json"
    headers["X-Cliq-Event"] = event_type
    headers["X-Cliq-Delivery"] = item.delivery_id
    headers["X-Cliq-Attempt"] = str(item.attempt)
    return headers


def notification_spec(outcome: Outcome) -> JobSpec:
    """The email job for an endpoint this dead delivery turns failing (or disables: 410)."""
    return JobSpec(
        NOTIFICATION_QUEUE,
        f"n-{outcome.endpoint_id}-{outcome.item.delivery_id}",
        {
            "endpoint_id": outcome.endpoint_id,
            "delivery_id": outcome.item.delivery_id,
            "event_id": outcome.event_id,
            "attempts": outcome.item.attempt,
            "last_error": outcome.attempt.error
            or f"HTTP {outcome.attempt.status}: {outcome.attempt.response[:200]}",
            "failed_at_ms": outcome.attempt.at_ms,
            "reason": "gone" if outcome.disable else "refused" if outcome.refused else "failing",
        },
    )
