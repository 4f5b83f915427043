"""Prometheus metrics of a worker process. Labels stay low-cardinality: no ids, no URLs."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from producer.deliveries import AttemptOutcome
from producer.redis_guard import GuardMetrics

ATTEMPT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
END_TO_END_BUCKETS_S = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 14400,
)  # fmt: skip


def status_class(status: int | None) -> str:
    """``2xx`` .. ``5xx``, or ``error`` when no HTTP status came back."""
    return f"{status // 100}xx" if status is not None else "error"


STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "error")


def bad_jobs_counter(registry: CollectorRegistry) -> Counter:
    """``cliq_bad_jobs_total`` in ``registry`` (a worker's, or a log-writer process's)."""
    return Counter(
        "cliq_bad_jobs_total",
        "Jobs, or ready-list entries, whose data could not be processed (logged, skipped).",
        registry=registry,
    )


class LogMetrics:
    """The delivery log writers' metrics: in a worker's registry, or in a log-writer
    process's (worker/logproc.py). ``bad_entries`` counts malformed outbox entries."""

    def __init__(self, registry: CollectorRegistry, bad_entries: Counter) -> None:
        self.outbox = Gauge(
            "cliq_log_outbox_entries",
            "Recorded outcomes waiting in Redis to be written to the delivery log's "
            "database (DATABASE_URL): grows while it is unreachable.",
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.written = Counter(
            "cliq_log_outcomes_written_total",
            "Outcomes written to the delivery log's database.",
            registry=registry,
        )
        self.write_failures = Counter(
            "cliq_log_write_failures_total",
            "Failed writes of a batch to the delivery log's database (retried).",
            registry=registry,
        )
        self.bad_entries = bad_entries
        self._outbox_by_partition: dict[str, int] = {}

    def outbox_waiting(self, partition: str, waiting: int) -> None:
        """One partition's log outbox holds ``waiting`` entries: the gauge is the sum."""
        self._outbox_by_partition[partition] = waiting
        self.outbox.set(sum(self._outbox_by_partition.values()))

    @property
    def waiting(self) -> int:
        """The entries last seen waiting in every partition's log outbox."""
        return sum(self._outbox_by_partition.values())


class Metrics:
    """Every metric a worker exports, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "cliq_deliveries_total",
            "Deliveries that reached a final or intermediate outcome, by outcome "
            "(delivered, retry, dead, duplicate: a re-run attempt that was already recorded).",
            ["outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "cliq_delivery_attempts_total",
            "HTTP attempts by status class (2xx..5xx, or error: timeout, refused, TLS, DNS).",
            ["status_class"],
            registry=r,
        )
        self.attempt_duration = Histogram(
            "cliq_delivery_attempt_duration_seconds",
            "Duration of one HTTP attempt.",
            buckets=ATTEMPT_BUCKETS_S,
            registry=r,
        )
        self.end_to_end = Histogram(
            "cliq_delivery_latency_seconds",
            "From the event's created_at to its successful delivery.",
            buckets=END_TO_END_BUCKETS_S,
            registry=r,
        )
        self.paused = Counter(
            "cliq_deliveries_paused_total",
            "Due deliveries of disabled endpoints that joined their paused backlog "
            "instead of an attempt.",
            registry=r,
        )
        self.paused_dropped = Counter(
            "cliq_paused_dropped_total",
            "Paused deliveries that ended dead without an attempt, by reason (backlog_full: "
            "past PAUSED_MAX_PER_ENDPOINT, the oldest; drop: disabled with drop).",
            ["reason"],
            registry=r,
        )
        self.auto_disabled = Counter(
            "cliq_endpoints_auto_disabled_total",
            "Endpoints disabled for failing without a success for DISABLE_FAILING_AFTER.",
            registry=r,
        )
        self.retries = Counter(
            "cliq_retries_scheduled_total", "Attempts scheduled after a failure.", registry=r
        )
        self.deferred = Counter(
            "cliq_deliveries_deferred_total",
            "Deliveries put back without an attempt because their endpoint was at its "
            "in-flight cap or rate limit.",
            registry=r,
        )
        self.detached = Counter(
            "cliq_deliveries_detached_total",
            "Requests to endpoints that do not answer which their batch (job or claim) "
            "left behind to finish on their own, covered by a later job.",
            registry=r,
        )
        self.lease_repairs = Counter(
            "cliq_lease_repairs_total",
            "Endpoint slots found in use with no request holding them, and freed (the "
            "limiter's self-check; anything above 0 is a bug worth reporting).",
            registry=r,
        )
        # multiprocess_mode: how `worker --processes N` adds up its children's gauges.
        self.endpoints_deferring_idle = Gauge(
            "cliq_endpoints_deferring_idle",
            "Endpoints whose deliveries this worker has been deferring at their in-flight "
            "cap for 30 s while no worker had a request in flight for them.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.stalled_in_flight = Gauge(
            "cliq_stalled_requests_in_flight",
            "Requests in flight to endpoints not known to answer, counted against "
            "STALLED_CONCURRENCY_SHARE x WORKER_CONCURRENCY.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.in_flight = Gauge(
            "cliq_deliveries_in_flight",
            "HTTP attempts in progress.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            "cliq_queue_deliveries",
            "Deliveries waiting, by state: queued (due now) or scheduled (waiting for a retry).",
            ["state"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.poll_backlog = Gauge(
            "cliq_poll_backlog",
            "Deliveries waiting in poll endpoints' feeds for their consumers to acknowledge.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.poll_dropped = Gauge(
            "cliq_poll_dropped",
            "Deliveries a full poll feed (POLL_MAX_PER_ENDPOINT) pushed out as dead, in all "
            "(a count kept in Redis).",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.queue_jobs = Gauge(
            "cliq_queue_jobs",
            "bullmq jobs by queue and state (a delivery job carries a batch of deliveries).",
            ["queue", "state"],
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.oldest_waiting = Gauge(
            "cliq_queue_oldest_waiting_seconds",
            "Age of the oldest delivery job or ready-list item waiting (0 when none waits).",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.endpoints_failing = Gauge(
            "cliq_endpoints_failing",
            "Endpoints whose status is failing.",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self.endpoint_transitions = Counter(
            "cliq_endpoint_transitions_total",
            "Endpoint status changes made by deliveries (to failing, back to active).",
            ["to"],
            registry=r,
        )
        self.notifications = Counter(
            "cliq_notifications_total",
            "Failure notifications by result "
            "(sent, outbox: written to a folder, failed: will be retried).",
            ["result"],
            registry=r,
        )
        self.bad_jobs = bad_jobs_counter(r)
        self.log = LogMetrics(r, self.bad_jobs)
        self._attempts_by_class = {c: self.attempts.labels(c) for c in STATUS_CLASSES}
        # Every series exists from the start, at 0: rate() and increase() then see the
        # first events too, not only those after the series' first scrape.
        for outcome in (*AttemptOutcome, "duplicate"):
            self.deliveries.labels(outcome)
        for status in ("failing", "active", "disabled"):
            self.endpoint_transitions.labels(status)
        for result in ("sent", "outbox", "failed"):
            self.notifications.labels(result)
        self.redis = GuardMetrics(r)
        self.worker_up = Gauge(
            "cliq_worker_up",
            "1 while this worker's queue loops are running.",
            registry=r,
            multiprocess_mode="livesum",
        )

    def attempt(self, status: int | None, duration_s: float) -> None:
        """Count one HTTP attempt (children looked up once: this runs per delivery)."""
        child = self._attempts_by_class.get(status_class(status))
        (child or self.attempts.labels(status_class(status))).inc()
        self.attempt_duration.observe(duration_s)
