"""A worker's parts for one partition of the hot state (a lane).

Every worker serves every partition (:mod:`producer.partitioning`): for each it has a
lane of its own, with that partition's keys, scripts and queues: the endpoint limiter,
the delivery processor, the ready-list pickup, the test-send listener, the resumer and
auto-disabler, and (``DATABASE_URL``, unless ``LOG_WRITER=separate``) the log writer.
The lanes share the process's HTTP sender and its HTTP slots (``WORKER_CONCURRENCY`` is
the process's, not a lane's), its
metrics and its pause events; the notification and operations queues are partition 0's
alone, consumed once per process (worker/service.py). With one partition the worker has
one lane, over the keys it always had.
"""

from __future__ import annotations

from dataclasses import dataclass

from producer.context import Producer
from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.pausing import PauseEvents
from producer.redis.clients import RedisClient
from worker.autodisable import AutoDisabler
from worker.delivery import DeliveryProcessor
from worker.limits import LEASE_TTL_S, EndpointLimiter
from worker.logwriter import LogWriter
from worker.metrics import Metrics
from worker.pauses import Pauser
from worker.pickup import Pickup
from worker.resume import FeedLimits, Resumer
from worker.sender import Sender
from worker.settings import WorkerSettings
from worker.slots import Slots
from worker.stalls import Stalls
from worker.testsend import SendTestListener


@dataclass
class Lane:
    """A worker's parts over one partition."""

    index: int
    keys: Keys
    dispatcher: JobDispatcher
    limiter: EndpointLimiter
    processor: DeliveryProcessor
    pickup: Pickup
    test_sends: SendTestListener
    resumer: Resumer
    disabler: AutoDisabler | None
    log_writer: LogWriter | None


@dataclass(frozen=True)
class Shared:
    """What the lanes of one worker process share."""

    settings: WorkerSettings
    producer: Producer
    worker_id: str
    sender: Sender
    slots: Slots
    metrics: Metrics
    pause_events: PauseEvents
    operations: bool
    job_concurrency: int
    stalls: Stalls


def build_lane(shared: Shared, index: int) -> Lane:
    """Partition ``index``'s lane (nothing started yet: the caller runs its loops)."""
    s, producer, metrics = shared.settings, shared.producer, shared.metrics
    redis: RedisClient = producer.redis
    keys = producer.partitions.of(index)
    dispatcher = producer.dispatchers[index]
    limiter = EndpointLimiter(
        redis,
        keys,
        worker_id=shared.worker_id,
        lease_ttl_s=min(LEASE_TTL_S, s.job_lock_timeout),
        stalls=shared.stalls,
        metrics=metrics,
    )
    processor = DeliveryProcessor(
        redis=redis,
        keys=keys,
        schedule=s.retry_schedule,
        retention_s=s.producer.delivery_retention,
        concurrency=s.worker_concurrency,
        sender=shared.sender,
        dispatcher=dispatcher,
        metrics=metrics,
        limiter=limiter,
        box=producer.secret_box,
        to_log_outbox=producer.log_store is not None,
        keep_per_endpoint=s.producer.log_keep_per_endpoint,
        pauser=Pauser(
            redis, keys, s.producer.paused_max_per_endpoint, metrics, shared.pause_events
        ),
        operations=shared.operations,
        slots=shared.slots,
    )
    log_writer = None
    if producer.log_store is not None and s.writes_log:
        log_writer = LogWriter(
            redis,
            keys,
            producer.log_store,
            consumer=shared.worker_id,
            metrics=metrics.log,
            claim_idle_ms=int(s.job_lock_timeout * 1000),
            marker_ttl_s=s.producer.idempotency_window,
        )
    pickup = Pickup(
        redis,
        keys,
        processor,
        worker_id=shared.worker_id,
        batch_size=s.producer.batch_size,
        max_claims=shared.job_concurrency,
        ttl_s=s.job_lock_timeout,
    )
    processor.keep_stalled_in(pickup)
    test_sends = SendTestListener(
        redis,
        keys,
        producer.endpoints,
        producer.catalogue,
        shared.sender,
        s.producer.max_payload_bytes,
        s.producer.delivery_retention,
    )
    feed = FeedLimits(
        s.producer.poll_max_per_endpoint,
        s.producer.delivery_retention,
        bool(s.producer.database_url),
    )
    disabler = None
    if s.disable_failing_after > 0:
        disabler = AutoDisabler(
            redis,
            keys,
            dispatcher,
            s.disable_failing_after,
            shared.pause_events,
            metrics,
            operations=shared.operations,
        )
    return Lane(
        index=index,
        keys=keys,
        dispatcher=dispatcher,
        limiter=limiter,
        processor=processor,
        pickup=pickup,
        test_sends=test_sends,
        resumer=Resumer(redis, keys, feed=feed),
        disabler=disabler,
        log_writer=log_writer,
    )
