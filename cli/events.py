"""``cliq-webhooks publish``: one event from flags, or many from a JSONL file."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, TextIO

from cli.base import UsageError, add_command, producer_settings
from cli.output import emit, plural, progress
from producer import jsonwire
from producer.context import Producer
from producer.events import Event, EventError, parse_event

PUBLISH_CHUNK = 1000
# Bad lines of a JSONL file named in the error; the count covers them all.
MAX_REPORTED_LINES = 20


def read_events(source: TextIO, name: str, producer: Producer) -> list[Event]:
    """Parse a JSONL stream completely first: one bad line and nothing is published.

    Every bad line is reported (the first :data:`MAX_REPORTED_LINES` of them, and how
    many there are), so that a file is fixed in one pass.
    """
    events: list[Event] = []
    problems: list[str] = []
    bad_lines = 0
    settings = producer.settings
    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            raw = jsonwire.decode(line)
            events.append(
                parse_event(raw, producer.catalogue, max_payload_bytes=settings.max_payload_bytes)
            )
        except jsonwire.WireError as exc:
            problem = exc.message
        except EventError as exc:
            problem = str(exc)
        else:
            continue
        bad_lines += 1
        if len(problems) < MAX_REPORTED_LINES:
            problems.append(f"{name}:{number}: {problem}")
    if bad_lines:
        more = bad_lines - len(problems)
        tail = [f"... and {more} more bad lines"] if more else []
        lines = "line" if bad_lines == 1 else "lines"
        raise UsageError(
            "\n".join(
                [f"{bad_lines} bad {lines} in {name}; nothing was published:", *problems, *tail]
            )
        )
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
                    f"published {plural(summary['events'], 'event')} "
                    f"({plural(summary['duplicates'], 'duplicate')}), "
                    f"{plural(summary['deliveries'], 'delivery', 'deliveries')}"
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
                else plural(result.deliveries, "delivery", "deliveries")
            )
        ),
    )
    return 0


def add_commands(commands: Any) -> None:
    """Add ``publish`` to the top-level ``commands``."""
    pub = add_command(commands, "publish", publish, "publish one event, or many from a JSONL file")
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
