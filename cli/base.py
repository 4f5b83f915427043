"""What every command shares: its settings, the usage error, the exit statuses, and the
way a command is added to the parser (``--json`` and a flag per setting)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from producer.settings import (
    PROCESS_OPTIONS,
    PRODUCER_OPTIONS,
    Option,
    ProducerSettings,
    add_flags,
    env_with_flags,
)
from worker.settings import (
    JOB_LOCK_TIMEOUT,
    METRICS_HOST,
    METRICS_PORT,
    WORKER_OPTIONS,
    WorkerSettings,
)

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
# What a command needs when it sends or runs anything (a worker's settings too).
DELIVERY_OPTIONS: tuple[Option, ...] = PRODUCER_OPTIONS + WORKER_OPTIONS
# What a log-writer process reads (worker/logproc.py): JOB_LOCK_TIMEOUT is how long a
# batch pending under a writer waits before another takes it over.
LOG_WRITER_OPTIONS: tuple[Option, ...] = (
    PRODUCER_OPTIONS + PROCESS_OPTIONS + (METRICS_HOST, METRICS_PORT, JOB_LOCK_TIMEOUT)
)

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]

# Commands that say which Redis they use themselves (a log line), start their own (the
# demo) or use none (migrate).
_OWN_REDIS_NOTICE = frozenset({"worker", "log-writer", "demo", "migrate"})


class UsageError(Exception):
    """Bad input from the command line: reported on stderr, exit status 2."""


class CommandFailed(Exception):
    """Good input the command could not act on (no worker answered): stderr, exit status 1."""


def producer_settings(args: argparse.Namespace) -> ProducerSettings:
    """Producer settings from the environment overlaid with the command's flags."""
    return ProducerSettings.from_env(env_with_flags(args, PRODUCER_OPTIONS))


def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    """Worker settings from the environment overlaid with the command's flags."""
    return WorkerSettings.from_env(env_with_flags(args, PRODUCER_OPTIONS + WORKER_OPTIONS))


def redis_notice(args: argparse.Namespace, settings: ProducerSettings) -> str | None:
    """For a command that uses Redis with ``REDIS_URL`` empty: the line saying which Redis
    it uses (stderr, so that ``--json`` output stays JSON)."""
    if args.command in _OWN_REDIS_NOTICE or not hasattr(args, "setting_redis_url"):
        return None
    return settings.redis_notice


def add_command(
    parent: Any,
    name: str,
    handler: Handler,
    help: str,
    options: Sequence[Option] = PRODUCER_OPTIONS,
) -> argparse.ArgumentParser:
    """Add command ``name`` to ``parent`` (subparsers): ``--json`` and one flag per setting."""
    sub: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
    sub.set_defaults(handler=handler)
    sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_flags(sub, options)
    return sub
