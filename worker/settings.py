"""Worker settings: the producer's plus those of delivery, notification and observability."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from producer.settings import (
    DELIVERY_TIMEOUT,
    PROCESS_OPTIONS,
    PRODUCER_OPTIONS,
    Option,
    ProducerSettings,
    parse_port,
    parse_positive_float,
    parse_positive_int,
    read_options,
)
from worker.schedule import RetrySchedule

WORKER_OPTIONS: tuple[Option, ...] = (
    *PROCESS_OPTIONS,
    Option(
        "RETRY_SCHEDULE",
        "0,60,300,1800,7200",
        "Seconds before each attempt, the first after publishing (always 0), each next one "
        "after the previous failure. The last failure marks the endpoint failing.",
        RetrySchedule.parse,
    ),
    DELIVERY_TIMEOUT,
    Option(
        "WORKER_CONCURRENCY",
        "200",
        "HTTP requests one worker process keeps in flight at most.",
        parse_positive_int,
    ),
    Option(
        "SMTP_URL",
        "",
        "smtp://[user:password@]host[:port] (smtps:// for TLS) for failure emails. Empty: "
        "emails are written to NOTIFY_OUTBOX.",
    ),
    Option("NOTIFY_FROM", "cliq-webhooks@localhost", "Sender address of failure emails."),
    Option("NOTIFY_OUTBOX", "outbox", "Folder for failure emails when SMTP_URL is empty."),
    Option(
        "NOTIFY_RETRY_BASE",
        "30",
        "Seconds before a failed email is retried, doubling on each further failure.",
        parse_positive_float,
    ),
    Option("METRICS_HOST", "0.0.0.0", "Address of /metrics, /healthz and /readyz."),
    Option(
        "METRICS_PORT",
        "9464",
        "Port of /metrics, /healthz and /readyz; 0 turns it off.",
        parse_port,
    ),
    Option(
        "JOB_LOCK_TIMEOUT",
        "30",
        "Seconds after which the jobs of a worker that died (SIGKILL, lost host) are "
        "taken over by another worker.",
        parse_positive_float,
    ),
)


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker process is configured with."""

    producer: ProducerSettings = field(default_factory=ProducerSettings)
    retry_schedule: RetrySchedule = field(default_factory=RetrySchedule)
    delivery_timeout: float = 10.0
    worker_concurrency: int = 200
    smtp_url: str = ""
    notify_from: str = "cliq-webhooks@localhost"
    notify_outbox: str = "outbox"
    notify_retry_base: float = 30.0
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9464
    log_format: str = "auto"
    log_level: str = "info"
    job_lock_timeout: float = 30.0
    shutdown_grace: float = 25.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read every setting from ``env`` (default: ``os.environ``)."""
        source = os.environ if env is None else env
        return cls(
            producer=ProducerSettings(**read_options(PRODUCER_OPTIONS, source)),
            **read_options(WORKER_OPTIONS, source),
        )
