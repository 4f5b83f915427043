"""``cliq-webhooks``: the parser of every command, and running one (``python -m worker`` is
``cliq-webhooks worker``, ``python -m producer`` is ``cliq-webhooks api``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import redis.exceptions

from cli import (
    api_keys,
    deliveries,
    endpoints,
    event_types,
    events,
    listen,
    portal_links,
    tokens,
    users,
)
from cli.base import (
    DELIVERY_OPTIONS,
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    LOG_WRITER_OPTIONS,
    CommandFailed,
    Handler,
    UsageError,
    add_command,
    producer_settings,
    redis_notice,
    worker_settings,
)
from cli.output import emit
from producer import logs
from producer.__main__ import serve
from producer.collector import tune_for_service
from producer.deliveries import DeliveryNotFound
from producer.endpoint_rules import EndpointError, EndpointNotFound
from producer.events import EventError
from producer.http.state import SERVE_OPTIONS
from producer.loop import run_event_loop
from producer.redis.errors import RedisUnavailable
from producer.settings import SettingsError, add_flags, env_with_flags, without_password
from producer.store.startup import DatabaseUnreachable
from worker import __version__


async def run_worker(args: argparse.Namespace) -> int:
    settings = worker_settings(args)
    if args.processes > 1:
        from worker.supervisor import Supervisor

        env = env_with_flags(args, DELIVERY_OPTIONS)
        return await Supervisor(settings, args.processes, env).run()
    from worker.service import WorkerService

    tune_for_service()
    return await WorkerService(settings).run()


async def run_log_writer(args: argparse.Namespace) -> int:
    from worker.logproc import LogWriterService

    tune_for_service()
    return await LogWriterService(worker_settings(args)).run()


async def demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return await run_demo(worker_settings(args), events=args.events, keep=args.keep)


async def migrate(args: argparse.Namespace) -> int:
    from producer.store.startup import migrate_database

    result = await migrate_database(producer_settings(args).database_url)
    applied = ", ".join(str(v) for v in result.applied)
    emit(
        args,
        {"version": result.version, "applied": list(result.applied)},
        lambda: (
            f"schema at version {result.version} "
            + (f"(applied {applied})" if applied else "(already up to date)")
        ),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    parser = argparse.ArgumentParser(
        prog="cliq-webhooks",
        description="Outbound webhook delivery: register endpoints, publish events, run workers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    endpoints.add_commands(commands)
    events.add_commands(commands)
    deliveries.add_commands(commands)
    users.add_commands(commands)
    tokens.add_commands(commands)
    event_types.add_commands(commands)
    api_keys.add_commands(commands)
    portal_links.add_commands(commands)
    listen.add_commands(commands)

    work = add_command(commands, "worker", run_worker, "run a worker process", DELIVERY_OPTIONS)
    work.add_argument(
        "--concurrency",
        dest="setting_worker_concurrency",
        metavar="N",
        help="alias of --worker-concurrency",
    )
    work.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N worker processes under one supervisor (restarts them, one /metrics)",
    )

    add_command(
        commands,
        "log-writer",
        run_log_writer,
        "run a log-writer process: the delivery log's writing to DATABASE_URL, for workers "
        "started with LOG_WRITER=separate",
        LOG_WRITER_OPTIONS,
    )

    api = commands.add_parser(
        "api",
        help="run the HTTP API and the dashboard (/ui/): what `python -m producer` runs",
        description="Run the HTTP API and the dashboard (/ui/) until SIGTERM/SIGINT.",
    )
    api.set_defaults(handler=None)  # served synchronously by producer.__main__.serve
    add_flags(api, SERVE_OPTIONS)

    dem = add_command(
        commands,
        "demo",
        demo,
        "see everything work: private Redis, worker, receivers, a failing endpoint",
        DELIVERY_OPTIONS,
    )
    dem.add_argument("--events", type=int, default=20, help="events to publish")
    dem.add_argument(
        "--keep",
        action="store_true",
        help="then keep the API, its dashboard and a worker running (prints the URL and a "
        "sign-in key) until Ctrl-C",
    )
    add_command(
        commands,
        "migrate",
        migrate,
        "apply the delivery log's schema migrations to DATABASE_URL (prints its version)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cliq-webhooks`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "api":
        return serve(env_with_flags(args, SERVE_OPTIONS))
    try:
        settings = worker_settings(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    logs.configure(settings.log_format, settings.log_level)
    notice = redis_notice(args, settings.producer)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    handler: Handler = args.handler
    try:
        if args.command in {"worker", "log-writer"}:
            return run_event_loop(handler(args))
        return asyncio.run(handler(args))
    except (UsageError, EventError, EndpointError, SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (EndpointNotFound, DeliveryNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (CommandFailed, RedisUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except redis.exceptions.ConnectionError as exc:
        url = without_password(settings.producer.effective_redis_url)
        print(f"error: cannot reach Redis at {url}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except DatabaseUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
