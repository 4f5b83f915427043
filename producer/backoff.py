"""Every backoff rule of the project: how long something waits before it is tried again.

Pure functions and constants, so that each rule is read (and changed) in one place:

* bullmq's retries of a failed job: a delivery batch job soon, a failure email slower
  (:func:`job_backoff`, used by :class:`producer.jobs.QueueOptions`);
* bullmq's reconnection to a Sentinel's primary or a cluster (:data:`RECONNECT_TRIES`);
* a delivery put back because its endpoint is at a limit (:func:`deferral_delay_s`);
* the API polling for a test send's result (:func:`next_poll_s`);
* the supervisor restarting a worker process that keeps dying (:func:`restart_pause_s`);
* a worker's log writer retrying the delivery log's database (:func:`log_write_pause_s`).

The delivery schedule itself (``RETRY_SCHEDULE``) is a product setting, not a backoff:
see :mod:`worker.schedule`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any, Protocol

# ---------------------------------------------------------------- bullmq jobs

# A delivery batch job fails only when Redis or the worker itself broke mid-batch:
# retried soon (1 s, doubling); its finished items are skipped on the next run.
DELIVERY_JOB_BACKOFF_MS = 1000
# A failure email is retried after NOTIFY_RETRY_BASE seconds, doubling each time.
NOTIFICATION_BACKOFF_MS = 30_000


def job_backoff(delay_ms: int) -> dict[str, Any]:
    """bullmq's ``backoff`` option: ``delay_ms`` after the first failure, doubling."""
    return {"type": "exponential", "delay": delay_ms}


# bullmq's own clients of a Sentinel's primary or a cluster: reconnect up to this many
# times, waiting up to RECONNECT_CAP_S between tries (redis-py's exponential backoff,
# base RECONNECT_BASE_S); they carry it over a failover.
RECONNECT_TRIES = 20
RECONNECT_CAP_S = 20
RECONNECT_BASE_S = 1

# ---------------------------------------------------------------- deferred deliveries

MAX_DEFERRAL_S = 5.0
MAX_STALLED_DEFERRAL_S = 60.0


class DeferralReason(Protocol):
    """Why a delivery was put back (``worker.limits.Deferral``)."""

    @property
    def hint_s(self) -> float:
        """The earliest sensible retry, in seconds (0: no particular time)."""

    @property
    def stalled(self) -> bool:
        """The endpoint hangs: at its cap with no slot freed for a while."""


def deferral_delay_s(deferrals: int, deferred: Iterable[DeferralReason] = ()) -> float:
    """How long deferred deliveries stay out: doubling per deferral, jittered.

    Up to 5 s when their endpoint is only busy. When it stalled, 4-5 s at first (its
    requests hold their slots until they time out), then up to 60 s: each return of
    its backlog costs a load and a job, so the backlog of an endpoint that hangs for
    minutes must not come back every few seconds.
    """
    growth = 2.0**deferrals
    deferred = list(deferred)
    delay = min(MAX_DEFERRAL_S, 0.5 * growth) * random.uniform(0.5, 1.0)
    delay = max([delay, *(deferral.hint_s for deferral in deferred)])
    if any(deferral.stalled for deferral in deferred):
        stalled_s = min(MAX_STALLED_DEFERRAL_S, MAX_DEFERRAL_S * growth)
        delay = max(delay, stalled_s * random.uniform(0.8, 1.0))
    return delay


# ---------------------------------------------------------------- test-send polling

# Fast at first (an idle worker answers in milliseconds), then at most four times a second.
TEST_POLL_FIRST_S = 0.02
TEST_POLL_MAX_S = 0.25


def next_poll_s(interval_s: float) -> float:
    """The wait after a poll that waited ``interval_s`` found nothing."""
    return min(interval_s * 2, TEST_POLL_MAX_S)


# ---------------------------------------------------------------- worker restarts

RESTART_PAUSE_MAX_S = 30.0
# A child that ran this long before dying is restarted at once; one that dies
# sooner waits longer each time (a crash loop must not spin).
STABLE_AFTER_S = 10.0


def restart_pause_s(previous_s: float, lived_s: float) -> float:
    """The pause before restarting a process that died after ``lived_s`` seconds."""
    if lived_s >= STABLE_AFTER_S:
        return 0.0
    return min(RESTART_PAUSE_MAX_S, max(1.0, previous_s * 2))


# ---------------------------------------------------------------- the log writer

LOG_WRITE_PAUSE_FIRST_S = 0.2
LOG_WRITE_PAUSE_MAX_S = 5.0


def log_write_pause_s(previous_s: float) -> float:
    """The pause before writing the delivery log again after a failed write that
    followed a pause of ``previous_s`` (0: the first failure of a streak)."""
    return min(LOG_WRITE_PAUSE_MAX_S, max(LOG_WRITE_PAUSE_FIRST_S, previous_s * 2))
