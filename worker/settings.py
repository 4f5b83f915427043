"""Worker settings: the producer's plus those of delivery, notification and observability."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from producer.durations import parse_duration
from producer.http.state import PUBLIC_URL
from producer.settings import (
    DELIVERY_TIMEOUT,
    LOG_FORMAT,
    LOG_LEVEL,
    PROCESS_OPTIONS,
    PRODUCER_OPTIONS,
    SHUTDOWN_GRACE,
    Option,
    ProducerSettings,
    parse_port,
    parse_positive_float,
    parse_positive_int,
    read_options,
)
from worker.schedule import RetrySchedule


def parse_share(raw: str) -> float:
    """A fraction greater than 0 and at most 1."""
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be greater than 0 and at most 1")
    return value


RETRY_SCHEDULE = Option(
    "RETRY_SCHEDULE",
    str(RetrySchedule()),
    "Seconds before each attempt, the first after publishing (always 0), each next one "
    "after the previous failure. The last failure marks the endpoint failing.",
    RetrySchedule.parse,
)
WORKER_CONCURRENCY = Option(
    "WORKER_CONCURRENCY",
    "200",
    "HTTP requests one worker process keeps in flight at most.",
    parse_positive_int,
)
STALLED_CONCURRENCY_SHARE = Option(
    "STALLED_CONCURRENCY_SHARE",
    "0.5",
    "Share of WORKER_CONCURRENCY that requests to stalled endpoints (no answer lately, "
    "or the last request timed out) may hold together; more are deferred.",
    parse_share,
)
SMTP_URL = Option(
    "SMTP_URL",
    "",
    "smtp://[user:password@]host[:port] (smtps:// for TLS) for failure emails. Empty: "
    "emails are written to NOTIFY_OUTBOX.",
)
NOTIFY_FROM = Option("NOTIFY_FROM", "cliq-webhooks@localhost", "Sender address of failure emails.")
NOTIFY_OUTBOX = Option(
    "NOTIFY_OUTBOX", "outbox", "Folder for failure emails when SMTP_URL is empty."
)
NOTIFY_RETRY_BASE = Option(
    "NOTIFY_RETRY_BASE",
    "30",
    "Seconds before a failed email is retried, doubling on each further failure.",
    parse_positive_float,
)
# Loopback by default, like the API's; deploy/ sets 0.0.0.0 for Prometheus to scrape.
METRICS_HOST = Option("METRICS_HOST", "127.0.0.1", "Address of /metrics, /healthz and /readyz.")
METRICS_PORT = Option(
    "METRICS_PORT",
    "9464",
    "Port of /metrics, /healthz and /readyz; 0 turns it off.",
    parse_port,
)
JOB_LOCK_TIMEOUT = Option(
    "JOB_LOCK_TIMEOUT",
    "30",
    "Seconds after which the jobs of a worker that died (SIGKILL, lost host) are "
    "taken over by another worker.",
    parse_positive_float,
)

LOG_OUTBOX_MAX = Option(
    "LOG_OUTBOX_MAX",
    "1000000",
    "With DATABASE_URL: recorded outcomes that may wait in Redis for the database "
    "(while it is down or behind); at this many the workers take no new work until it "
    "drains (attempts under way finish, nothing is lost).",
    parse_positive_int,
)

DISABLE_FAILING_AFTER = Option(
    "DISABLE_FAILING_AFTER",
    "0",
    "Disable (pause) an endpoint that has been failing without a success this long "
    "(e.g. 5d, 12h, 90s), with one email; 0: never (the seed's behaviour).",
    parse_duration,
)

WORKER_OPTIONS: tuple[Option, ...] = (
    *PROCESS_OPTIONS,
    RETRY_SCHEDULE,
    DELIVERY_TIMEOUT,
    WORKER_CONCURRENCY,
    STALLED_CONCURRENCY_SHARE,
    SMTP_URL,
    NOTIFY_FROM,
    NOTIFY_OUTBOX,
    NOTIFY_RETRY_BASE,
    PUBLIC_URL,
    METRICS_HOST,
    METRICS_PORT,
    JOB_LOCK_TIMEOUT,
    LOG_OUTBOX_MAX,
    DISABLE_FAILING_AFTER,
)


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker process is configured with (defaults: the options')."""

    producer: ProducerSettings = field(default_factory=ProducerSettings)
    retry_schedule: RetrySchedule = RETRY_SCHEDULE.value
    delivery_timeout: float = DELIVERY_TIMEOUT.value
    worker_concurrency: int = WORKER_CONCURRENCY.value
    stalled_concurrency_share: float = STALLED_CONCURRENCY_SHARE.value
    smtp_url: str = SMTP_URL.value
    notify_from: str = NOTIFY_FROM.value
    notify_outbox: str = NOTIFY_OUTBOX.value
    notify_retry_base: float = NOTIFY_RETRY_BASE.value
    public_url: str = PUBLIC_URL.value
    metrics_host: str = METRICS_HOST.value
    metrics_port: int = METRICS_PORT.value
    log_format: str = LOG_FORMAT.value
    log_level: str = LOG_LEVEL.value
    job_lock_timeout: float = JOB_LOCK_TIMEOUT.value
    log_outbox_max: int = LOG_OUTBOX_MAX.value
    disable_failing_after: float = DISABLE_FAILING_AFTER.value
    shutdown_grace: float = SHUTDOWN_GRACE.value

    @property
    def stalled_budget(self) -> int:
        """Requests that stalled endpoints may hold together in one worker (at least 1)."""
        return max(1, int(self.stalled_concurrency_share * self.worker_concurrency))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read every setting from ``env`` (default: ``os.environ``)."""
        source = os.environ if env is None else env
        values = read_options(WORKER_OPTIONS, source)
        # Absolute at start: a relative folder would follow each process's working
        # directory (a supervisor's child, a service manager), and the log names it.
        values["notify_outbox"] = os.path.abspath(values["notify_outbox"])
        return cls(producer=ProducerSettings(**read_options(PRODUCER_OPTIONS, source)), **values)
