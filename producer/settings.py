"""Configuration: every setting is an environment variable and a CLI flag.

Each setting is declared once as an :class:`Option`, its default included; ``from_env``
reads the environment (or an explicit mapping, for tests), the CLI builds its flags
from the same declarations, and the settings classes take their fields' defaults from
them (:attr:`Option.value`), so none of these can drift apart.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from producer.addresses import IPNetwork
from producer.destinations import DestinationPolicy, parse_networks
from producer.redis.clients import RedisKind, check_url, kind_of
from producer.redis.cluster import hash_tag
from producer.secretbox import parse_key

DEFAULT_REDIS_URL = ""  # empty: the demo starts a private Redis; other commands use localhost.
FALLBACK_REDIS_URL = "redis://127.0.0.1:6379/0"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Option:
    """One setting: its environment variable, CLI flag, default and parser."""

    env: str
    default: str
    help: str
    parse: Callable[[str], Any] = str
    # Never echo the value in an error message (keys, tokens).
    secret: bool = False

    @property
    def flag(self) -> str:
        """The CLI flag, derived from the variable name (``REDIS_URL`` -> ``--redis-url``)."""
        return "--" + self.env.lower().replace("_", "-")

    @property
    def dest(self) -> str:
        """The attribute name on the settings object."""
        return self.env.lower()

    @property
    def value(self) -> Any:
        """The default, parsed: what a settings class declares as its field's default."""
        return self.parse(self.default)

    def read(self, env: Mapping[str, str]) -> Any:
        """Parse this option's value from ``env``, falling back to the default."""
        raw = env.get(self.env, self.default)
        try:
            return self.parse(raw)
        except (TypeError, ValueError) as exc:
            shown = "<hidden>" if self.secret else repr(raw)
            raise SettingsError(f"{self.env}={shown}: {exc}") from None


def parse_positive_float(raw: str) -> float:
    """A number of seconds that must be greater than zero."""
    value = float(raw)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def parse_positive_int(raw: str) -> int:
    """A count that must be at least 1."""
    value = int(raw)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def parse_port(raw: str) -> int:
    """A TCP port, 0 meaning "off"."""
    value = int(raw)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number between 0 and 65535")
    return value


def parse_bool(raw: str) -> bool:
    """Common spellings of yes and no."""
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"", "0", "false", "no", "off"}:
        return False
    raise ValueError("must be 1/0, true/false, yes/no or on/off")


def parse_list(raw: str) -> tuple[str, ...]:
    """A comma-separated list; blanks are ignored."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_log_format(raw: str) -> str:
    """``auto`` (JSON unless stderr is a terminal), ``json`` or ``console``."""
    value = raw.strip().lower()
    if value not in {"auto", "json", "console"}:
        raise ValueError("must be auto, json or console")
    return value


def parse_log_level(raw: str) -> str:
    """A standard logging level name."""
    level = raw.strip().lower()
    if level not in {"debug", "info", "warning", "error", "critical"}:
        raise ValueError("must be debug, info, warning, error or critical")
    return level


def parse_event_types(raw: str) -> tuple[str, ...]:
    """Extra event type names, each shaped like ``resource.action``."""
    from producer.events import TYPE_PATTERN

    names = parse_list(raw)
    for name in names:
        if not TYPE_PATTERN.match(name):
            raise ValueError(f"{name!r} is not an event type such as 'issue.created'")
    return names


def parse_redis_url(raw: str) -> str:
    """A Redis URL; ``redis+sentinel://`` and ``redis+cluster://`` ones are checked here,
    the others on connecting."""
    return check_url(raw)


def parse_prefix(raw: str) -> str:
    """A Redis key prefix; ``{name}`` hash tags keep every key in one cluster slot."""
    if not raw or any(ch in raw for ch in " :\n"):
        raise ValueError("must be non-empty, without spaces or ':'")
    return raw


REDIS_URL = Option(
    "REDIS_URL",
    DEFAULT_REDIS_URL,
    "Redis to use (redis://, rediss:// for TLS, redis+sentinel:// for the primary "
    "that Sentinels name, redis+cluster:// or rediss+cluster:// for a Redis Cluster's "
    "seed nodes). Empty: 127.0.0.1:6379, or a private Redis started by `demo`.",
    parse_redis_url,
    secret=True,  # it may hold a password
)

KEY_PREFIX = Option(
    "KEY_PREFIX",
    "cliq",
    "Prefix of every Redis key; a redis+cluster:// REDIS_URL needs a hash tag such as "
    "{cliq} in it.",
    parse_prefix,
)

EVENT_TYPES_EXTRA = Option(
    "EVENT_TYPES_EXTRA",
    "",
    "Comma-separated event types accepted in addition to the built-in catalogue.",
    parse_event_types,
)

MAX_PAYLOAD_BYTES = Option(
    "MAX_PAYLOAD_BYTES",
    str(256 * 1024),
    "Largest accepted event, measured as the JSON body that is delivered.",
    parse_positive_int,
)

BATCH_SIZE = Option(
    "BATCH_SIZE",
    "50",
    "Deliveries carried by one queue job: the queue's cost is paid once per batch.",
    parse_positive_int,
)

SECRET_ENCRYPTION_KEY = Option(
    "SECRET_ENCRYPTION_KEY",
    "",
    "URL-safe base64 of 32 random bytes: endpoint secrets are stored sealed with it "
    "(AES-256-GCM). Empty: stored as they are.",
    parse_key,
    secret=True,
)

DELIVERY_RETENTION = Option(
    "DELIVERY_RETENTION",
    str(7 * 24 * 3600),
    "Seconds a finished (delivered or dead) delivery and its attempts are kept.",
    parse_positive_int,
)

# The destination policy: checked when endpoints are registered (API, CLI, dashboard)
# and on every connection (workers), so every process reads it.
ALLOW_PRIVATE_DESTINATIONS = Option(
    "ALLOW_PRIVATE_DESTINATIONS",
    "0",
    "1 allows loopback, private and link-local destinations (demo and tests only).",
    parse_bool,
)

ALLOWED_PRIVATE_NETWORKS = Option(
    "ALLOWED_PRIVATE_NETWORKS",
    "",
    "Comma-separated CIDR blocks delivered to even though they are not public "
    "(e.g. an internal receiver at 10.20.0.0/16).",
    parse_networks,
)

ALLOW_EVICTING_REDIS = Option(
    "ALLOW_EVICTING_REDIS",
    "0",
    "1 lets the API and the workers run on a Redis whose maxmemory-policy is not "
    "noeviction, which loses acknowledged events when memory runs out (an error is "
    "logged every minute). 0: they refuse to.",
    parse_bool,
)


def parse_database_url(raw: str) -> str:
    """Empty, or a ``postgresql://`` (``postgres://``) URL of the delivery log's database."""
    value = raw.strip()
    if value and not value.startswith(("postgresql://", "postgres://")):
        raise ValueError("must be empty or a postgresql:// URL")
    return value


DATABASE_URL = Option(
    "DATABASE_URL",
    "",
    "postgresql:// URL of the delivery log's database (its schema applied by "
    "`cliq-webhooks migrate`). Empty: the delivery log stays in Redis.",
    parse_database_url,
    secret=True,  # it may hold a password
)

IDEMPOTENCY_WINDOW = Option(
    "IDEMPOTENCY_WINDOW",
    str(24 * 3600),
    "Seconds an event id stays known to Redis once its delivered deliveries have left it "
    "for the delivery log's database (DATABASE_URL): a re-publish within them is "
    "deduplicated. Without DATABASE_URL event ids are known for DELIVERY_RETENTION.",
    parse_positive_int,
)

LOG_KEEP_PER_ENDPOINT = Option(
    "LOG_KEEP_PER_ENDPOINT",
    "1000",
    "Without DATABASE_URL: delivered deliveries each endpoint keeps in Redis (the older "
    "leave it, and their events once none of their deliveries is left); dead ones stay "
    "until replayed or past DELIVERY_RETENTION.",
    parse_positive_int,
)
POLL_MAX_PER_ENDPOINT = Option(
    "POLL_MAX_PER_ENDPOINT",
    "10000",
    "Unacknowledged deliveries a poll endpoint's feed holds; past it the oldest go dead "
    "(replayable, counted in cliq_poll_dropped).",
    parse_positive_int,
)


def parse_delays(raw: str) -> tuple[float, ...]:
    """Comma-separated seconds, each at least 0, at least one."""
    delays = tuple(float(item) for item in parse_list(raw))
    if not delays or any(not delay >= 0 for delay in delays):
        raise ValueError("must be one or more comma-separated numbers of seconds, each >= 0")
    return delays


# Read by `cliq-webhooks listen` only (cli/listen.py).
LISTEN_RETRY_SCHEDULE = Option(
    "LISTEN_RETRY_SCHEDULE",
    "1,2,5,10,30",
    "Seconds before each retry of a message the local server did not answer with a 2xx; "
    "past the last, retried at the last step (order is kept).",
    parse_delays,
)


PAUSED_MAX_PER_ENDPOINT = Option(
    "PAUSED_MAX_PER_ENDPOINT",
    "100000",
    "Paused deliveries an endpoint keeps while disabled (to resume in publish order when "
    "enabled); past it the oldest end dead with the reason 'paused backlog full'.",
    parse_positive_int,
)


def parse_partitions(raw: str) -> int | None:
    """A partition count, or None when not set (then one partition)."""
    return parse_positive_int(raw) if raw.strip() else None


PARTITIONS = Option(
    "PARTITIONS",
    "",
    "Partitions of the hot Redis state, each with its own hash tag (docs/operations.md). "
    "Empty: 1. Set on a Redis Cluster, at least its number of primaries; a Redis written "
    "with another count is refused.",
    parse_partitions,
)

PARTITIONS_BELOW_PRIMARIES = Option(
    "PARTITIONS_BELOW_PRIMARIES",
    "0",
    "1: start on a Redis Cluster with more primaries than PARTITIONS (some hold none of "
    "the hot state).",
    parse_bool,
)

PRODUCER_OPTIONS: tuple[Option, ...] = (
    REDIS_URL,
    KEY_PREFIX,
    EVENT_TYPES_EXTRA,
    MAX_PAYLOAD_BYTES,
    BATCH_SIZE,
    SECRET_ENCRYPTION_KEY,
    DELIVERY_RETENTION,
    ALLOW_PRIVATE_DESTINATIONS,
    ALLOWED_PRIVATE_NETWORKS,
    ALLOW_EVICTING_REDIS,
    DATABASE_URL,
    IDEMPOTENCY_WINDOW,
    LOG_KEEP_PER_ENDPOINT,
    PAUSED_MAX_PER_ENDPOINT,
    POLL_MAX_PER_ENDPOINT,
    PARTITIONS,
    PARTITIONS_BELOW_PRIMARIES,
)


# The workers' attempt timeout; the API reads it too: a test send waits for an attempt.
DELIVERY_TIMEOUT = Option(
    "DELIVERY_TIMEOUT", "10", "Seconds one attempt may take in all.", parse_positive_float
)

# Read by every long-running process (the API and the workers).
LOG_FORMAT = Option(
    "LOG_FORMAT", "auto", "auto (JSON unless a terminal), json or console.", parse_log_format
)
LOG_LEVEL = Option("LOG_LEVEL", "info", "debug, info, warning or error.", parse_log_level)
SHUTDOWN_GRACE = Option(
    "SHUTDOWN_GRACE",
    "25",
    "Seconds in-flight work (attempts, requests) gets to finish after SIGTERM/SIGINT.",
    parse_positive_float,
)
PROCESS_OPTIONS: tuple[Option, ...] = (LOG_FORMAT, LOG_LEVEL, SHUTDOWN_GRACE)


@dataclass(frozen=True)
class ProducerSettings:
    """Settings that the producer side (publishing, registry) needs."""

    redis_url: str = REDIS_URL.value
    key_prefix: str = KEY_PREFIX.value
    event_types_extra: tuple[str, ...] = EVENT_TYPES_EXTRA.value
    max_payload_bytes: int = MAX_PAYLOAD_BYTES.value
    batch_size: int = BATCH_SIZE.value
    delivery_retention: int = DELIVERY_RETENTION.value
    secret_encryption_key: bytes | None = field(default=SECRET_ENCRYPTION_KEY.value, repr=False)
    allow_private_destinations: bool = ALLOW_PRIVATE_DESTINATIONS.value
    allowed_private_networks: tuple[IPNetwork, ...] = ALLOWED_PRIVATE_NETWORKS.value
    allow_evicting_redis: bool = ALLOW_EVICTING_REDIS.value
    database_url: str = field(default=DATABASE_URL.value, repr=False)
    idempotency_window: int = IDEMPOTENCY_WINDOW.value
    log_keep_per_endpoint: int = LOG_KEEP_PER_ENDPOINT.value
    paused_max_per_endpoint: int = PAUSED_MAX_PER_ENDPOINT.value
    poll_max_per_endpoint: int = POLL_MAX_PER_ENDPOINT.value
    partitions: int | None = PARTITIONS.value
    partitions_below_primaries: bool = PARTITIONS_BELOW_PRIMARIES.value

    def __post_init__(self) -> None:
        if kind_of(self.redis_url) is RedisKind.CLUSTER and hash_tag(self.key_prefix) is None:
            # Without one, keys a script or transaction touches together land in different
            # slots: Redis would refuse them (CROSSSLOT) at the first publish.
            raise SettingsError(
                f"KEY_PREFIX={self.key_prefix!r}: with a Redis Cluster (REDIS_URL "
                "redis+cluster://) it needs a hash tag, e.g. {cliq}, so that every key "
                "lands in one slot"
            )

    @property
    def partition_count(self) -> int:
        """PARTITIONS, 1 when not set."""
        return self.partitions or 1

    @property
    def destination_policy(self) -> DestinationPolicy | None:
        """Where deliveries may go; None when every destination is allowed."""
        if self.allow_private_destinations:
            return None
        return DestinationPolicy(self.allowed_private_networks)

    @property
    def effective_redis_url(self) -> str:
        """The URL to connect to: ``REDIS_URL``, or the local default when it is empty."""
        return self.redis_url or FALLBACK_REDIS_URL

    @property
    def redis_notice(self) -> str | None:
        """What to tell whoever started a process with ``REDIS_URL`` empty: which Redis it uses."""
        if self.redis_url:
            return None
        return f"REDIS_URL is empty: using {FALLBACK_REDIS_URL}; set REDIS_URL to use another Redis"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProducerSettings:
        """Read the settings from ``env`` (default: ``os.environ``)."""
        return cls(**read_options(PRODUCER_OPTIONS, os.environ if env is None else env))


def read_options(options: Sequence[Option], env: Mapping[str, str]) -> dict[str, Any]:
    """Parse every option of ``options`` from ``env`` into a ``dest -> value`` mapping."""
    return {option.dest: option.read(env) for option in options}


def add_flags(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add one flag per option; a flag given on the command line overrides the variable."""
    group = parser.add_argument_group("settings (each also read from its environment variable)")
    for option in options:
        group.add_argument(
            option.flag,
            dest=f"setting_{option.dest}",
            metavar=option.env,
            default=None,
            help=f"{option.help} [env {option.env}, default {option.default!r}]",
        )


def env_with_flags(namespace: argparse.Namespace, options: Sequence[Option]) -> dict[str, str]:
    """The environment overlaid with the flags given on the command line."""
    merged = dict(os.environ)
    for option in options:
        value = getattr(namespace, f"setting_{option.dest}", None)
        if value is not None:
            merged[option.env] = value
    return merged


def without_password(url: str) -> str:
    """A Redis or PostgreSQL URL fit for a log line or an error message: its password masked."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user + ':' if user else ''}***@{host}"
