"""Recording outcomes: one ``record.lua`` call for many, the jobs they cause, the counts.

Each attempt's outcome is written as soon as it is known, through a group commit shared
by every job of the process (:mod:`worker.groupcommit`): one round trip records many
outcomes, and an idle worker adds no wait. The same script call stores the attempt,
moves the delivery on (delivered, scheduled, dead), turns its endpoint failing (or
disabled, after 410 Gone, or back to active), and writes to the outbox the jobs this
causes: a retry, grouped with others due at the same moment, the owner's email
(a :class:`~producer.messages.NotificationJob`) and, with ``OPERATIONS_WEBHOOK_URL``,
the operational events (:mod:`worker.operations`).
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Sequence

import orjson
import structlog
from redis.typing import EncodableT

from producer.deliveries import AttemptOutcome
from producer.jobs import DeliveryBatch, DeliveryItem, JobDispatcher, JobSpec
from producer.keys import NOTIFICATION_QUEUE, RETRY_QUEUE, Keys
from producer.messages import NotificationJob
from producer.operations import OperationalJob, is_operational
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from worker.groupcommit import GroupCommit
from worker.metrics import Metrics
from worker.operations import outcome_jobs, recovered_job
from worker.outcomes import Outcome

log = structlog.get_logger("cliq.worker.recorder")

RECORD_MAX_OUTCOMES = 500


class Recorder:
    """Writes outcomes back (``record.lua``) and counts what they did."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        dispatcher: JobDispatcher,
        metrics: Metrics,
        retention_s: int,
        to_log_outbox: bool,
        keep_per_endpoint: int,
        operations: bool = False,
    ) -> None:
        """``to_log_outbox``: also append each recorded attempt to the log outbox, for
        the delivery log's database (:mod:`worker.logwriter`); else each endpoint keeps
        its latest ``keep_per_endpoint`` delivered deliveries in Redis. ``operations``:
        write the operational events outcomes cause (``OPERATIONS_WEBHOOK_URL`` set)."""
        self._operations = operations
        self._log_flag = "1" if to_log_outbox else "0"
        self._keep = keep_per_endpoint
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._retention_s = retention_s
        self._record = load_script(redis, keys, "worker", "record.lua")
        self._commit: GroupCommit[Outcome, str] = GroupCommit(self._flush, RECORD_MAX_OUTCOMES)

    async def record(self, outcome: Outcome) -> str:
        """Record ``outcome``; returns record.lua's code for it (``dup``: already recorded,
        ``gone``, ``delivered``, ``retry``, ``dead``, ``recovered``, ``failing``,
        ``disabled``: see there)."""
        code = await self._commit.submit(outcome)
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
        rows: list[tuple[str, int, str, str, str, str, int, str, str]] = []
        retries: dict[int, list[DeliveryItem]] = defaultdict(list)
        announced: list[bool] = []
        for outcome in outcomes:
            notify = ""
            due = ""
            dead, turn = outcome_jobs(outcome) if self._operations else (None, None)
            announced.append(turn is not None)
            if outcome.kind == AttemptOutcome.RETRY and outcome.delay_s is not None:
                delay_ms = int(outcome.delay_s * 1000)
                due = str(now_ms + delay_ms)
                retries[delay_ms].append(
                    DeliveryItem(outcome.item.delivery_id, outcome.item.attempt + 1)
                )
            elif outcome.kind == AttemptOutcome.DEAD and not is_operational(outcome.endpoint_id):
                # The operations endpoint has no owner to email (its failures are logged).
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
                    _member(dead),
                    _member(turn),
                )
            )
        args: list[EncodableT] = [
            now_ms,
            self._retention_s,
            orjson.dumps(rows),
            self._log_flag,
            self._keep,
        ]
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
        if self._operations:
            # Recovered although loaded as active (it turned failing meanwhile): no job
            # went with the outcome, so it is queued now.
            late = [
                recovered_job(outcome).spec()
                for outcome, code, sent in zip(outcomes, codes, announced, strict=True)
                if code == "recovered" and not sent and not is_operational(outcome.endpoint_id)
            ]
            if late:
                await self._dispatcher.add(late)
        return list(codes)

    async def close(self) -> None:
        """Wait for outcomes still being written."""
        await self._commit.close()


def _member(job: OperationalJob | None) -> str:
    """The outbox member of ``job`` for record.lua ('' for none)."""
    return "" if job is None else job.spec().to_json()


def notification_job(outcome: Outcome) -> NotificationJob:
    """The email an endpoint this dead delivery turns failing (or disables: 410) calls for."""
    return NotificationJob(
        endpoint_id=outcome.endpoint_id,
        delivery_id=outcome.item.delivery_id,
        event_id=outcome.event_id,
        attempts=outcome.item.attempt,
        last_error=outcome.last_error,
        failed_at_ms=outcome.attempt.at_ms,
        reason="gone" if outcome.disable else "refused" if outcome.refused else "failing",
    )


def notification_spec(outcome: Outcome) -> JobSpec:
    """The notification job as record.lua writes it to the outbox, if the endpoint turns."""
    return JobSpec(
        NOTIFICATION_QUEUE,
        f"n-{outcome.endpoint_id}-{outcome.item.delivery_id}",
        notification_job(outcome).to_dict(),
    )
