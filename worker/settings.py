"""Worker settings: the producer's plus those of delivery, notification and observability."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from producer.durations import parse_duration
from producer.endpoint_rules import SECRET_PREFIX, validate_url
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
    SettingsError,
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

# Where the log outbox is written to the database from: each worker's own writer, or
# only the `cliq-webhooks log-writer` processes (worker/logproc.py), which spares the
# workers' cores that work.
LOG_WRITER_IN_WORKER = "worker"
LOG_WRITER_SEPARATE = "separate"


def parse_log_writer(raw: str) -> str:
    """``worker`` or ``separate``."""
    value = raw.strip().lower()
    if value not in {LOG_WRITER_IN_WORKER, LOG_WRITER_SEPARATE}:
        raise ValueError(f"must be {LOG_WRITER_IN_WORKER} or {LOG_WRITER_SEPARATE}")
    return value


LOG_WRITER = Option(
    "LOG_WRITER",
    LOG_WRITER_IN_WORKER,
    "With DATABASE_URL: worker (each worker writes the log outbox to the database too) "
    "or separate (only `cliq-webhooks log-writer` processes do; the workers still stop "
    "at LOG_OUTBOX_MAX).",
    parse_log_writer,
)

DISABLE_FAILING_AFTER = Option(
    "DISABLE_FAILING_AFTER",
    "0",
    "Disable (pause) an endpoint that has been failing without a success this long "
    "(e.g. 5d, 12h, 90s), with one email; 0: never (the seed's behaviour).",
    parse_duration,
)


def parse_optional_url(raw: str) -> str:
    """Empty, or an absolute http(s) URL without credentials."""
    value = raw.strip()
    return validate_url(value) if value else ""


def parse_signing_secret(raw: str) -> str:
    """Empty, or ``whsec_`` + base64 of 24 to 64 bytes (a Standard Webhooks secret)."""
    value = raw.strip()
    if not value:
        return ""
    if not value.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError(f"must be {SECRET_PREFIX} followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"must be {SECRET_PREFIX} + base64 of 24 to 64 bytes, not {len(key)}")
    return value


# Operational events (producer.operations) go to this one endpoint, registered by every
# worker at start.
OPERATIONS_WEBHOOK_URL = Option(
    "OPERATIONS_WEBHOOK_URL",
    "",
    "URL that receives the operational events (endpoint.failing, endpoint.recovered, "
    "endpoint.disabled, endpoint.paused_backlog_full, delivery.dead), signed with "
    "OPERATIONS_WEBHOOK_SECRET. Empty: none are sent.",
    parse_optional_url,
)
OPERATIONS_WEBHOOK_SECRET = Option(
    "OPERATIONS_WEBHOOK_SECRET",
    "",
    "Signing secret of OPERATIONS_WEBHOOK_URL's deliveries: whsec_ + base64 of 24 to 64 "
    "random bytes. Required with OPERATIONS_WEBHOOK_URL.",
    parse_signing_secret,
    secret=True,
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
    LOG_WRITER,
    DISABLE_FAILING_AFTER,
    OPERATIONS_WEBHOOK_URL,
    OPERATIONS_WEBHOOK_SECRET,
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
    log_writer: str = LOG_WRITER.value
    disable_failing_after: float = DISABLE_FAILING_AFTER.value
    shutdown_grace: float = SHUTDOWN_GRACE.value
    operations_webhook_url: str = OPERATIONS_WEBHOOK_URL.value
    operations_webhook_secret: str = field(default=OPERATIONS_WEBHOOK_SECRET.value, repr=False)

    def __post_init__(self) -> None:
        if self.operations_webhook_url and not self.operations_webhook_secret:
            raise SettingsError(
                "OPERATIONS_WEBHOOK_SECRET is required with OPERATIONS_WEBHOOK_URL: whsec_ + "
                "base64 of 32 random bytes, e.g. python3 -c 'import base64, secrets; "
                'print("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())\''
            )

    @property
    def writes_log(self) -> bool:
        """Whether this worker runs log writers itself (with ``DATABASE_URL``)."""
        return self.log_writer == LOG_WRITER_IN_WORKER

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
