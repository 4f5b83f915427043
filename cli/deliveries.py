"""``cliq-webhooks attempts``, ``status``, ``replay`` and ``send-test``: the delivery log,
what is queued, sending dead deliveries again, and the seed's "Send Test Event"."""

from __future__ import annotations

import argparse
from typing import Any

from cli.base import (
    DELIVERY_OPTIONS,
    EXIT_FAILURE,
    CommandFailed,
    UsageError,
    add_command,
    producer_settings,
    worker_settings,
)
from cli.output import emit, plural, render_fields, render_table, when
from producer.context import Producer
from producer.deliveries import AttemptFilter, AttemptOutcome
from producer.endpoint import EndpointStatus
from producer.events import EventError, parse_timestamp
from producer.testsends import (
    DEFAULT_TEST_EVENT_TYPE,
    TEST_SEND_MARGIN_S,
    request_test_send,
    untestable_reason,
)
from producer.totals import hot_totals


def instant(raw: str | None, flag: str) -> int | None:
    """An ISO 8601 time of a flag, in ms since the epoch; a usage error naming the flag."""
    if raw is None:
        return None
    try:
        return int(parse_timestamp(raw).timestamp() * 1000)
    except EventError as exc:
        raise UsageError(f"{flag}: {exc.message}") from None


def attempt_filter(args: argparse.Namespace) -> AttemptFilter:
    """The API's filters of the delivery log (outcome, since, until) from the flags."""
    selected = AttemptFilter(
        outcome=AttemptOutcome(args.outcome) if args.outcome else None,
        since_ms=instant(args.since, "--since"),
        until_ms=instant(args.until, "--until"),
    )
    since_ms, until_ms = selected.since_ms, selected.until_ms
    if since_ms is not None and until_ms is not None and since_ms > until_ms:
        raise UsageError("--until must not be earlier than --since")
    return selected


async def attempts(args: argparse.Namespace) -> int:
    if bool(args.endpoint) == bool(args.event):
        raise UsageError("attempts needs exactly one of --endpoint or --event")
    selected = attempt_filter(args)
    async with Producer(producer_settings(args)) as p:
        await p.open_log_store()  # with DATABASE_URL the log is read from there
        if args.endpoint:
            await p.endpoints.get(args.endpoint)  # a clear error for an unknown id
            deliveries = await p.deliveries.for_endpoint(args.endpoint, args.limit)
        else:
            deliveries = await p.deliveries.for_event(args.event)
        types = await p.deliveries.event_types([d.event_id for d in deliveries])
    rows = [
        {
            "delivery_id": d.id,
            "event_id": d.event_id,
            "event_type": types.get(d.event_id),
            "endpoint_id": d.endpoint_id,
            "state": d.state.value,
            **a.to_dict(),
        }
        for d in deliveries
        for a in reversed(d.attempts)
        if selected.matches(a)
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
                        r["event_type"],
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
                    "TYPE",
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
        totals = await hot_totals(p.redis, p.partitions, p.dispatchers)
        stats, jobs = totals.stats, totals.jobs
        failing = await p.endpoints.all(status=EndpointStatus.FAILING)
        outbox, ready = totals.outbox, totals.ready
        await p.open_log_store()
        log: dict[str, object] = {"store": "redis"}
        if p.log_store is not None:
            in_log = await p.log_store.state_counts()
            log = {
                "store": "postgresql",
                # Outcomes recorded and not yet written to the database.
                "outbox": totals.log_outbox,
                "deliveries": {state.value: n for state, n in sorted(in_log.items())},
            }
        # With a database, dead deliveries leave Redis once written: Redis's and the
        # store's, each once.
        dead = await p.deliveries.dead_overall()
    counts = {k: int(stats.get(k, 0)) for k in ("queued", "scheduled", "paused", "delivered")}
    counts["dead"] = dead
    report = {
        "deliveries": counts,
        "log": log,
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
            f"delivery log in {log['store']}"
            + (f": {log['outbox']} outcomes waiting to be written" if "outbox" in log else ""),
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
    if args.delivery and args.since:
        raise UsageError("--since goes with --endpoint (a delivery is replayed whenever it died)")
    since_ms = instant(args.since, "--since") or 0
    async with Producer(producer_settings(args)) as p:
        await p.open_log_store()
        if args.delivery:
            await p.deliveries.get(args.delivery)
            ids = [args.delivery]
        else:
            await p.endpoints.get(args.endpoint)
            ids = await p.deliveries.dead_ids(args.endpoint, since_ms)
        replayed = await p.deliveries.replay(ids)
    emit(
        args,
        {"replayed": replayed, "count": len(replayed)},  # as POST .../replay answers
        lambda: f"re-enqueued {plural(len(replayed), 'dead delivery', 'dead deliveries')}",
    )
    return 0


async def send_test(args: argparse.Namespace) -> int:
    """Have a worker send a test event, as the API does: the test leaves from where
    deliveries leave (a worker's destination policy and connections), not from here."""
    settings = worker_settings(args)
    wait_s = settings.delivery_timeout + TEST_SEND_MARGIN_S
    async with Producer(settings.producer) as p:
        p.catalogue.require(args.type)
        endpoint = await p.endpoints.get(args.endpoint)
        reason = untestable_reason(endpoint)
        if reason is not None:
            raise UsageError(reason)
        result = await request_test_send(
            p.redis, p.keys_of(endpoint), args.endpoint, args.type, wait_s
        )
    if result is None:
        raise CommandFailed(
            f"no worker answered within {wait_s:g} s: is a worker running on this Redis? "
            "(cliq-webhooks worker)"
        )
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


def add_commands(commands: Any) -> None:
    """Add the delivery-log commands to the top-level ``commands``."""
    test = add_command(
        commands,
        "send-test",
        send_test,
        "have a worker POST a signed test event to an endpoint now; show the answer",
        DELIVERY_OPTIONS,
    )
    test.add_argument("--endpoint", required=True, help="endpoint id")
    test.add_argument(
        "--type", default=DEFAULT_TEST_EVENT_TYPE, help="event type of the test event"
    )

    att = add_command(commands, "attempts", attempts, "the delivery log of an endpoint or an event")
    att.add_argument("--endpoint", help="endpoint id")
    att.add_argument("--event", help="event id")
    att.add_argument("--limit", type=int, default=100, help="most recent deliveries to show")
    att.add_argument(
        "--outcome", choices=[o.value for o in AttemptOutcome], help="only attempts that led to it"
    )
    att.add_argument("--since", help="only attempts made at or after this ISO 8601 time")
    att.add_argument("--until", help="only attempts made at or before this ISO 8601 time")

    add_command(commands, "status", status, "delivery counts, queue jobs and failing endpoints")

    rep = add_command(commands, "replay", replay, "re-enqueue dead deliveries")
    rep.add_argument("--endpoint", help="every dead delivery of this endpoint")
    rep.add_argument("--delivery", help="just this delivery")
    rep.add_argument(
        "--since",
        help="with --endpoint: only deliveries that died at or after this ISO 8601 time "
        "(default: every dead one)",
    )
