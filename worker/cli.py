"""The ``cliq-webhooks`` command line.

Output is a readable table by default and JSON with ``--json``. Bad input is
reported on stderr with exit status 2 and nothing enqueued; an unreachable
Redis gives exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import redis.exceptions

from producer import jsonwire, logs
from producer.collector import tune_for_service
from producer.context import Producer
from producer.deliveries import DeliveryNotFound
from producer.endpoints import EndpointError, EndpointNotFound, EndpointStatus
from producer.events import Event, EventError, parse_event, parse_timestamp
from producer.settings import (
    PRODUCER_OPTIONS,
    Option,
    ProducerSettings,
    SettingsError,
    add_flags,
    env_with_flags,
    without_password,
)
from worker import __version__
from worker.settings import WORKER_OPTIONS, WorkerSettings

PUBLISH_CHUNK = 1000
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1

Handler = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


class UsageError(Exception):
    """Bad input from the command line: reported on stderr, exit status 2."""


# ---------------------------------------------------------------- output


def emit(args: argparse.Namespace, value: Any, table: Callable[[], str]) -> None:
    """Print ``value`` as JSON with ``--json``, else the readable ``table()``."""
    if getattr(args, "json", False):
        print(json.dumps(value, indent=2, ensure_ascii=False))
    else:
        print(table())


def render_table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_fields(fields: Iterable[tuple[str, Any]]) -> str:
    """``name: value`` lines."""
    pairs = list(fields)
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def when(ms: int | None) -> str:
    """Milliseconds since the epoch as a readable UTC time."""
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------- settings


def producer_settings(args: argparse.Namespace) -> ProducerSettings:
    """Producer settings from the environment overlaid with the command's flags."""
    return ProducerSettings.from_env(env_with_flags(args, PRODUCER_OPTIONS))


def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    """Worker settings from the environment overlaid with the command's flags."""
    return WorkerSettings.from_env(env_with_flags(args, PRODUCER_OPTIONS + WORKER_OPTIONS))


# ---------------------------------------------------------------- endpoints


async def endpoint_add(args: argparse.Namespace) -> int:
    async with Producer(producer_settings(args)) as p:
        endpoint = await p.endpoints.create(
            workspace_id=args.workspace,
            url=args.url,
            events=args.events.split(","),
            owner_email=args.email,
            description=args.description,
            max_in_flight=args.max_in_flight,
            rate_limit=args.rate_limit,
        )
    shown = endpoint.public_dict(reveal_secret=True)
    emit(
        args,
        shown,
        lambda: (
            render_fields(shown.items())
            + "\n\nThe secret is shown only now: store it where your receiver can read it."
        ),
    )
    return 0


async def endpoint_list(args: argparse.Namespace) -> int:
    status = EndpointStatus(args.status) if args.status else None
    async with Producer(producer_settings(args)) as p:
        endpoints = await p.endpoints.all(workspace_id=args.workspace, status=status)
    rows = [e.public_dict() for e in endpoints]
    emit(
        args,
        rows,
        lambda: render_table(
            [
                (e.id, e.workspace_id, e.status.value, ",".join(e.events), e.url, e.owner_email)
                for e in endpoints
            ],
            ["ID", "WORKSPACE", "STATUS", "EVENTS", "URL", "OWNER"],
        ),
    )
    return 0


async def endpoint_show(args: argparse.Namespace) -> int:
    async with Producer(producer_settings(args)) as p:
        endpoint = await p.endpoints.get(args.id)
    shown = endpoint.public_dict()
    emit(args, shown, lambda: render_fields(shown.items()))
    return 0


async def endpoint_update(args: argparse.Namespace) -> int:
    async with Producer(producer_settings(args)) as p:
        endpoint = await p.endpoints.update(
            args.id,
            url=args.url,
            events=args.events.split(",") if args.events is not None else None,
            owner_email=args.email,
            description=args.description,
            max_in_flight=args.max_in_flight,
            rate_limit=args.rate_limit,
        )
    shown = endpoint.public_dict()
    emit(args, shown, lambda: render_fields(shown.items()))
    return 0


async def endpoint_set_status(args: argparse.Namespace) -> int:
    status = EndpointStatus.ACTIVE if args.endpoint_command == "enable" else EndpointStatus.DISABLED
    async with Producer(producer_settings(args)) as p:
        endpoint = await p.endpoints.set_status(args.id, status)
    shown = endpoint.public_dict()
    emit(args, shown, lambda: f"{endpoint.id} is now {endpoint.status.value}")
    return 0


async def endpoint_delete(args: argparse.Namespace) -> int:
    async with Producer(producer_settings(args)) as p:
        await p.endpoints.delete(args.id)
    emit(args, {"id": args.id, "deleted": True}, lambda: f"{args.id} deleted")
    return 0


async def endpoint_rotate(args: argparse.Namespace) -> int:
    async with Producer(producer_settings(args)) as p:
        endpoint = await p.endpoints.rotate_secret(args.id, args.grace)
    shown = endpoint.public_dict(reveal_secret=True)
    emit(
        args,
        shown,
        lambda: (
            render_fields(shown.items())
            + f"\n\nThe previous secret keeps signing webhook-signature for {args.grace} s."
        ),
    )
    return 0


# ---------------------------------------------------------------- publishing


def read_events(source: TextIO, name: str, producer: Producer) -> list[Event]:
    """Parse a JSONL stream completely first: one bad line and nothing is published."""
    events: list[Event] = []
    settings = producer.settings
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            raw = jsonwire.decode(line)
        except jsonwire.WireError as exc:
            raise UsageError(f"{name}:{number}: {exc.message}") from exc
        try:
            events.append(
                parse_event(raw, producer.catalogue, max_payload_bytes=settings.max_payload_bytes)
            )
        except EventError as exc:
            raise UsageError(f"{name}:{number}: {exc}") from exc
    return events


def read_event_file(path: str, producer: Producer) -> list[Event]:
    """Events of a JSONL file, or of stdin for ``-``."""
    if path == "-":
        return read_events(sys.stdin, "<stdin>", producer)
    try:
        with open(path, encoding="utf-8") as handle:
            return read_events(handle, path, producer)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def progress(done: int, total: int, started: float) -> None:
    """A one-line progress bar on stderr (only on a terminal)."""
    if not sys.stderr.isatty() or total == 0:
        return
    width = 30
    filled = int(width * done / total)
    rate = done / max(time.monotonic() - started, 1e-9)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:,.0f}/s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


async def publish(args: argparse.Namespace) -> int:
    settings = producer_settings(args)
    async with Producer(settings) as p:
        if args.file:
            events = await asyncio.to_thread(read_event_file, args.file, p)
            results = []
            started = time.monotonic()
            for start in range(0, len(events), PUBLISH_CHUNK):
                results += await p.publisher.publish_many(events[start : start + PUBLISH_CHUNK])
                progress(len(results), len(events), started)
            summary = {
                "events": len(results),
                "duplicates": sum(r.duplicate for r in results),
                "deliveries": sum(r.deliveries for r in results),
            }
            emit(
                args,
                summary,
                lambda: (
                    f"published {summary['events']} events "
                    f"({summary['duplicates']} duplicates), {summary['deliveries']} deliveries"
                ),
            )
            return 0
        if not args.type or not args.workspace:
            raise UsageError("publish needs --type and --workspace (or --file)")
        try:
            data = jsonwire.decode(args.data)
        except jsonwire.WireError as exc:
            raise UsageError(f"--data is {exc.message}") from exc
        raw: dict[str, Any] = {"type": args.type, "workspace_id": args.workspace, "data": data}
        if args.id:
            raw["id"] = args.id
        if args.created_at:
            raw["created_at"] = args.created_at
        try:
            event = parse_event(raw, p.catalogue, max_payload_bytes=settings.max_payload_bytes)
        except EventError as exc:
            raise UsageError(str(exc)) from exc
        result = await p.publisher.publish(event)
    shown = result.to_dict()
    emit(
        args,
        shown,
        lambda: (
            f"{result.event_id}: "
            + (
                "already published, nothing enqueued"
                if result.duplicate
                else f"{result.deliveries} deliveries"
            )
        ),
    )
    return 0


# ---------------------------------------------------------------- delivery log


async def attempts(args: argparse.Namespace) -> int:
    if bool(args.endpoint) == bool(args.event):
        raise UsageError("attempts needs exactly one of --endpoint or --event")
    async with Producer(producer_settings(args)) as p:
        if args.endpoint:
            await p.endpoints.get(args.endpoint)  # a clear error for an unknown id
            deliveries = await p.deliveries.for_endpoint(args.endpoint, args.limit)
        else:
            deliveries = await p.deliveries.for_event(args.event)
    rows = [
        {
            "delivery_id": d.id,
            "event_id": d.event_id,
            "endpoint_id": d.endpoint_id,
            "state": d.state.value,
            **a.to_dict(),
        }
        for d in deliveries
        for a in reversed(d.attempts)
    ]
    pending = [d for d in deliveries if not d.attempts]
    emit(
        args,
        rows,
        lambda: (
            render_table(
                [
                    (
                        when(r["at_ms"]),
                        r["delivery_id"],
                        r["event_id"],
                        r["number"],
                        r["status"] if r["status"] is not None else "-",
                        f"{r['latency_ms']:.0f}ms",
                        r["outcome"],
                        (r["error"] or r["response"]).replace("\n", " ")[:60],
                    )
                    for r in rows
                ],
                [
                    "TIME (UTC)",
                    "DELIVERY",
                    "EVENT",
                    "#",
                    "STATUS",
                    "LATENCY",
                    "OUTCOME",
                    "ERROR / RESPONSE",
                ],
            )
            + (f"\n{len(pending)} deliveries not attempted yet" if pending else "")
        ),
    )
    return 0


async def status(args: argparse.Namespace) -> int:
    settings = producer_settings(args)
    async with Producer(settings) as p:
        stats = await p.redis.hgetall(p.keys.stats)
        jobs = {
            name: await queue.getJobCounts("wait", "active", "delayed", "failed")
            for name, queue in p.dispatcher.queues.items()
        }
        failing = await p.endpoints.all(status=EndpointStatus.FAILING)
        outbox = await p.redis.zcard(p.keys.outbox)
        ready = await p.redis.llen(p.keys.ready)
    counts = {k: int(stats.get(k, 0)) for k in ("queued", "scheduled", "delivered", "dead")}
    report = {
        "deliveries": counts,
        "jobs": jobs,
        "outbox": outbox,
        # New deliveries waiting for a worker to take them (see worker/pickup.py).
        "ready": ready,
        "failing_endpoints": [e.public_dict() for e in failing],
    }

    def table() -> str:
        parts = [
            render_table(list(counts.items()), ["DELIVERIES", "COUNT"]),
            render_table(
                [(q, *c.values()) for q, c in jobs.items()],
                ["QUEUE (jobs)", "WAIT", "ACTIVE", "DELAYED", "FAILED"],
            ),
            f"{ready} new deliveries on the ready list (waiting for a worker)",
        ]
        if failing:
            parts.append(
                render_table(
                    [(e.id, e.workspace_id, e.url, e.owner_email) for e in failing],
                    ["FAILING ENDPOINT", "WORKSPACE", "URL", "OWNER"],
                )
            )
        else:
            parts.append("no failing endpoints")
        return "\n\n".join(parts)

    emit(args, report, table)
    return 0


async def replay(args: argparse.Namespace) -> int:
    if bool(args.endpoint) == bool(args.delivery):
        raise UsageError("replay needs exactly one of --endpoint or --delivery")
    since_ms = int(parse_timestamp(args.since).timestamp() * 1000) if args.since else 0
    async with Producer(producer_settings(args)) as p:
        if args.delivery:
            await p.deliveries.get(args.delivery)
            ids = [args.delivery]
        else:
            await p.endpoints.get(args.endpoint)
            ids = await p.deliveries.dead_ids(args.endpoint, since_ms)
        replayed = await p.deliveries.replay(ids)
    emit(
        args,
        {"replayed": replayed},
        lambda: f"re-enqueued {len(replayed)} dead deliveries",
    )
    return 0


async def send_test(args: argparse.Namespace) -> int:
    from worker.testsend import send_test_event

    result = await send_test_event(worker_settings(args), args.endpoint, args.type)
    emit(
        args,
        result.to_dict(),
        lambda: render_fields(
            [
                ("event", result.event_id),
                ("status", result.status if result.status is not None else "-"),
                ("error", result.error or ""),
                ("latency", f"{result.latency_ms:.1f} ms"),
                ("response", result.response),
            ]
        ),
    )
    return 0 if result.ok else EXIT_FAILURE


# ---------------------------------------------------------------- processes


async def run_worker(args: argparse.Namespace) -> int:
    settings = worker_settings(args)
    if args.processes > 1:
        from worker.supervisor import Supervisor

        env = env_with_flags(args, PRODUCER_OPTIONS + WORKER_OPTIONS)
        return await Supervisor(settings, args.processes, env).run()
    from worker.service import WorkerService

    tune_for_service()
    return await WorkerService(settings).run()


async def demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return await run_demo(worker_settings(args), events=args.events)


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The full command-line parser."""
    parser = argparse.ArgumentParser(
        prog="cliq-webhooks",
        description="Outbound webhook delivery: register endpoints, publish events, run workers.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        handler: Handler,
        help: str,
        options: Sequence[Option] = PRODUCER_OPTIONS,
        parent: Any = commands,
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler)
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
        add_flags(sub, options)
        return sub

    endpoint = commands.add_parser("endpoint", help="manage endpoints (subscriptions)")
    endpoint_commands = endpoint.add_subparsers(
        dest="endpoint_command", required=True, metavar="ACTION"
    )
    add = command("add", endpoint_add, "register an endpoint", parent=endpoint_commands)
    add.add_argument("--workspace", required=True, help="workspace id whose events it receives")
    add.add_argument("--url", required=True, help="http(s) URL to POST to")
    add.add_argument(
        "--events", required=True, help="types or wildcards: 'issue.*,comment.created', '*'"
    )
    add.add_argument("--email", required=True, help="owner, told when the endpoint turns failing")
    add.add_argument("--description", default="", help="free text")
    limits = (
        ("--max-in-flight", int, "requests in flight to it across all workers (default 10)"),
        ("--rate-limit", float, "requests per second at most (default 0: no limit)"),
    )
    for flag, kind, text in limits:
        add.add_argument(flag, type=kind, default=10 if kind is int else 0.0, help=text)
    update = command("update", endpoint_update, "change an endpoint", parent=endpoint_commands)
    update.add_argument("id", help="endpoint id")
    for flag, text in (
        ("--url", "new URL"),
        ("--events", "new filter"),
        ("--email", "new owner"),
        ("--description", "new description"),
    ):
        update.add_argument(flag, help=text)
    for flag, kind, text in limits:
        update.add_argument(flag, type=kind, help=text)
    listing = command("list", endpoint_list, "list endpoints", parent=endpoint_commands)
    listing.add_argument("--workspace", help="only this workspace")
    listing.add_argument(
        "--status", choices=[s.value for s in EndpointStatus], help="only this status"
    )
    for name, handler, text in (
        ("show", endpoint_show, "show one endpoint (secret masked)"),
        ("enable", endpoint_set_status, "set status active (clears failing)"),
        ("disable", endpoint_set_status, "stop deliveries to it; they end as dead, replayable"),
        ("delete", endpoint_delete, "delete it"),
    ):
        command(name, handler, text, parent=endpoint_commands).add_argument(
            "id", help="endpoint id"
        )
    rotate = command(
        "rotate-secret",
        endpoint_rotate,
        "new secret; the old one signs during a grace period",
        parent=endpoint_commands,
    )
    rotate.add_argument("id", help="endpoint id")
    rotate.add_argument(
        "--grace", type=int, default=24 * 3600, help="seconds the old secret keeps signing"
    )

    pub = command("publish", publish, "publish one event, or many from a JSONL file")
    pub.add_argument("--workspace", help="workspace_id of the event")
    pub.add_argument("--type", help="event type, e.g. issue.created")
    pub.add_argument("--data", default="{}", help="the event's data as a JSON object")
    pub.add_argument(
        "--id", help="event id (default: generated); publishing an id twice is a no-op"
    )
    pub.add_argument("--created-at", help="ISO 8601 time (default: now)")
    pub.add_argument(
        "--file", help="JSONL file of events ('-' for stdin), validated before any is sent"
    )

    test = command(
        "send-test",
        send_test,
        "POST a signed test event to an endpoint now and show the answer",
        PRODUCER_OPTIONS + WORKER_OPTIONS,
    )
    test.add_argument("--endpoint", required=True, help="endpoint id")
    test.add_argument("--type", default="issue.created", help="event type of the test event")

    att = command("attempts", attempts, "the delivery log of an endpoint or an event")
    att.add_argument("--endpoint", help="endpoint id")
    att.add_argument("--event", help="event id")
    att.add_argument("--limit", type=int, default=100, help="most recent deliveries to show")

    command("status", status, "delivery counts, queue jobs and failing endpoints")

    rep = command("replay", replay, "re-enqueue dead deliveries")
    rep.add_argument("--endpoint", help="every dead delivery of this endpoint")
    rep.add_argument("--delivery", help="just this delivery")
    rep.add_argument("--since", help="only deliveries that died at or after this ISO 8601 time")

    work = command("worker", run_worker, "run a worker process", PRODUCER_OPTIONS + WORKER_OPTIONS)
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

    dem = command(
        "demo",
        demo,
        "see everything work: private Redis, worker, receivers, a failing endpoint",
        PRODUCER_OPTIONS + WORKER_OPTIONS,
    )
    dem.add_argument("--events", type=int, default=20, help="events to publish")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cliq-webhooks`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = worker_settings(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    logs.configure(settings.log_format, settings.log_level)
    handler: Handler = args.handler
    try:
        if args.command == "worker":
            return run_event_loop(handler(args))
        return asyncio.run(handler(args))
    except (UsageError, EventError, EndpointError, SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (EndpointNotFound, DeliveryNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except redis.exceptions.ConnectionError as exc:
        url = without_password(settings.producer.effective_redis_url)
        print(f"error: cannot reach Redis at {url}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130


def run_event_loop(coro: Coroutine[Any, Any, int]) -> int:
    """Run a long-lived process on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    raise SystemExit(main())
