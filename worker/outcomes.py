"""What an attempt led to: delivered, a retry on schedule, or dead (and why).

Pure decisions: the HTTP response and the retry schedule in, an :class:`Outcome` out,
ready to be recorded (:mod:`worker.recorder`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from producer.deliveries import Attempt, AttemptOutcome
from producer.endpoint import Endpoint
from producer.jobs import DeliveryItem
from worker.batches import Target, Unsendable
from worker.schedule import RetrySchedule
from worker.sender import Response

GONE = 410


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
    # The endpoint as loaded for the attempt (None: not attempted, see unsent).
    endpoint: Endpoint | None = None

    @property
    def last_error(self) -> str:
        """What went wrong, as the email and the operational events tell it."""
        return self.attempt.error or f"HTTP {self.attempt.status}: {self.attempt.response[:200]}"


def outcome_of(
    target: Target, response: Response, started_s: float, schedule: RetrySchedule
) -> Outcome:
    """The outcome of an attempt that started at ``started_s`` and got ``response``.

    A 2xx delivers; 410 Gone ends the delivery dead and disables the endpoint; a refused
    destination ends it dead at once; anything else is retried on ``schedule`` (a
    ``Retry-After`` pushes the retry later) until the schedule is used up, and then dead.
    """
    at_ms = int(started_s * 1000)
    delay: float | None = None
    next_at_s: float | None = None
    gone = response.status == GONE
    if response.ok:
        kind = AttemptOutcome.DELIVERED
    elif gone or response.refused:
        # A refused destination stays refused: retrying would only delay telling
        # the owner (the endpoint turns failing, as after a last failed attempt).
        kind = AttemptOutcome.DEAD
    else:
        failed_at_s = time.time()
        delay = schedule.delay_after_failure(target.attempt_in_round, response.retry_after_s)
        next_at_s = schedule.next_attempt_at(
            target.attempt_in_round, failed_at_s, response.retry_after_s
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
        next_attempt_ms=None if next_at_s is None else int(next_at_s * 1000),
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
        target.endpoint,
    )


def unsent(unsendable: Unsendable) -> Outcome:
    """A delivery that cannot be attempted ends dead, kept for replay, with the reason."""
    attempt = Attempt(
        number=unsendable.item.attempt,
        at_ms=int(time.time() * 1000),
        status=None,
        error=f"not sent: {unsendable.reason}",
        latency_ms=0.0,
        response="",
        outcome=AttemptOutcome.DEAD,
    )
    return Outcome(
        unsendable.item,
        AttemptOutcome.DEAD,
        attempt,
        unsendable.event_id,
        unsendable.endpoint_id,
    )
