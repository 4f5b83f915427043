"""``cliq-webhooks endpoint add|list|show|update|enable|disable|delete|rotate-secret``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.base import UsageError, add_command, producer_settings
from cli.output import emit, render_fields, render_table
from producer.context import Producer
from producer.endpoint import EndpointStatus
from producer.endpoint_fields import invalid_fields
from producer.endpoint_kind import EndpointKind
from producer.endpoint_options import parse_header_line
from producer.endpoint_rules import DEFAULT_MAX_IN_FLIGHT, ROTATION_GRACE_S, EndpointError
from producer.fifo import Ordering
from producer.settings import DELIVERY_TIMEOUT, PRODUCER_OPTIONS, env_with_flags

# Registration checks an endpoint's timeout against the workers' DELIVERY_TIMEOUT.
CHANGE_OPTIONS = (*PRODUCER_OPTIONS, DELIVERY_TIMEOUT)


def changing_producer(args: argparse.Namespace) -> Producer:
    """A producer whose registry knows DELIVERY_TIMEOUT (from the environment or flag)."""
    limit = DELIVERY_TIMEOUT.read(env_with_flags(args, CHANGE_OPTIONS))
    return Producer(producer_settings(args), max_endpoint_timeout_s=limit)


def header_pairs(lines: list[str] | None) -> list[tuple[str, str]] | None:
    """The ``--header 'Name: value'`` flags as pairs (None when none was given)."""
    if lines is None:
        return None
    try:
        return [parse_header_line(line) for line in lines]
    except ValueError as exc:
        raise flagged([EndpointError("headers", str(exc))]) from None


def filter_source(text: str | None) -> object:
    """``--filter JSON`` as a JSON value (None when not given; '' means ``{}``, none)."""
    if text is None:
        return None
    try:
        return json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        raise flagged([EndpointError("filter", f"is not valid JSON: {exc}")]) from None


def readable(shown: dict[str, Any]) -> list[tuple[str, Any]]:
    """An endpoint's fields for people: the payload filter as JSON, or ``none``."""
    text = json.dumps(shown["filter"], ensure_ascii=False) if shown.get("filter") else "none"
    return [(name, text if name == "filter" else value) for name, value in shown.items()]


# The flag of each endpoint field, as a usage error names it.
FLAGS = {
    "workspace": "--workspace",
    "workspace_id": "--workspace",
    "email": "--owner-email",
    "owner_email": "--owner-email",
    "max_in_flight": "--max-in-flight",
    "rate_limit": "--rate-limit",
    "headers": "--header",
    "timeout_s": "--timeout",
}


def flagged(errors: list[EndpointError]) -> UsageError:
    """A usage error naming each bad field by its flag."""
    return UsageError(
        "; ".join(f"{FLAGS.get(e.field, '--' + e.field)}: {e.message}" for e in errors)
    )


def check_values(fields: dict[str, Any], p: Producer) -> dict[str, Any]:
    """``fields``, or a usage error naming every bad one at once (not the first only),
    each by its flag."""
    given = {k: v for k, v in fields.items() if v is not None}
    errors = invalid_fields(given, p.catalogue, p.endpoints.max_timeout_s)
    if errors:
        raise flagged(errors)
    return fields


async def endpoint_add(args: argparse.Namespace) -> int:
    async with changing_producer(args) as p:
        fields: dict[str, Any] = {
            "workspace_id": args.workspace,
            "kind": args.kind,
            "url": args.url,
            "events": args.events.split(","),
            "owner_email": args.email,
            "description": args.description,
            "max_in_flight": args.max_in_flight,
            "rate_limit": args.rate_limit,
            "ordering": args.ordering,
            "filter": filter_source(args.filter),
            "headers": header_pairs(args.header) or (),
            "timeout_s": args.timeout,
        }
        checked = check_values(fields, p)
        try:
            endpoint = await p.endpoints.create(
                **{name: value for name, value in checked.items() if value is not None}
            )
        except EndpointError as exc:  # the destination policy, checked last
            raise flagged([exc]) from None
    shown = endpoint.public_dict(reveal_secret=True)
    emit(
        args,
        shown,
        lambda: (
            render_fields(readable(shown))
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
                (e.id, e.workspace_id, e.kind.value, e.status.value, e.events, e.url, e.owner_email)
                for e in endpoints
            ],
            ["ID", "WORKSPACE", "KIND", "STATUS", "EVENTS", "URL", "OWNER"],
        ),
    )
    return 0


async def endpoint_show(args: argparse.Namespace) -> int:
    async with Producer(producer_settings(args)) as p:
        endpoint = await p.endpoints.get(args.id)
        paused = await p.pausing.paused(args.id)
        drop = await p.pausing.drops(args.id)
    shown = {**endpoint.public_dict(), "paused": paused, "drop": drop}
    emit(args, shown, lambda: render_fields(readable(shown)))
    return 0


async def endpoint_update(args: argparse.Namespace) -> int:
    headers = [] if args.clear_headers else header_pairs(args.header)
    async with changing_producer(args) as p:
        fields: dict[str, Any] = {
            "url": args.url,
            "events": args.events.split(",") if args.events is not None else None,
            "owner_email": args.email,
            "description": args.description,
            "max_in_flight": args.max_in_flight,
            "rate_limit": args.rate_limit,
            "ordering": args.ordering,
            "filter": filter_source(args.filter),
            "headers": headers,
            "timeout_s": args.timeout,
        }
        try:
            endpoint = await p.endpoints.update(args.id, **check_values(fields, p))
        except EndpointError as exc:  # the destination policy, checked last
            raise flagged([exc]) from None
    shown = endpoint.public_dict()
    emit(args, shown, lambda: render_fields(readable(shown)))
    return 0


async def endpoint_set_status(args: argparse.Namespace) -> int:
    status = EndpointStatus.ACTIVE if args.endpoint_command == "enable" else EndpointStatus.DISABLED
    drop = bool(getattr(args, "drop", False))
    async with Producer(producer_settings(args)) as p:
        endpoint = await p.pausing.set_status(args.id, status, drop)
        paused = await p.pausing.paused(args.id)
    shown = {**endpoint.public_dict(), "paused": paused, "drop": drop}

    def text() -> str:
        if status == EndpointStatus.ACTIVE:
            return f"{endpoint.id} is now active; {paused} paused deliveries resume in order"
        if drop:
            return f"{endpoint.id} is now disabled; its deliveries end dead (drop)"
        return f"{endpoint.id} is now disabled; {paused} deliveries paused, nothing is lost"

    emit(args, shown, text)
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
            render_fields(readable(shown))
            + f"\n\nUntil {endpoint.signature_switches_at} X-Cliq-Signature is still made with"
            " the previous secret\n(X-Cliq-Signature-New with the new one; webhook-signature"
            " carries both):\nswitch your receiver to the new secret by then."
        ),
    )
    return 0


# What each state does to an endpoint's deliveries (docs/endpoint-states.md).
STATES_HELP = """manage endpoints (subscriptions); what each state does to their deliveries:

  active    delivered; a failed attempt is retried on RETRY_SCHEDULE
  failing   a delivery failed every attempt and ended dead (replayable); its owner
            was emailed once. Deliveries go on as for active; the next success makes
            it active again (DISABLE_FAILING_AFTER, off by default, disables one still
            failing that long)
  disabled  paused (by disable, a 410 Gone answer or DISABLE_FAILING_AFTER): its
            queued, retrying and new deliveries are kept as paused and spend no
            attempt; at most PAUSED_MAX_PER_ENDPOINT (past it the oldest end dead,
            'paused backlog full'). enable resumes them in publish order, each with
            the attempts it had left
  disabled with --drop
            its paused deliveries end dead at once ('endpoint disabled (drop)'), its
            queued, retrying and new ones when their attempt comes due ('endpoint
            disabled'); dead deliveries are replayable once it is enabled
  deleted   its queued, retrying and paused deliveries end dead ('endpoint deleted')
"""


def add_commands(commands: Any) -> None:
    """Add ``endpoint`` and its actions to the top-level ``commands``."""
    endpoint = commands.add_parser(
        "endpoint",
        help="manage endpoints (subscriptions)",
        description=STATES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    endpoint_commands = endpoint.add_subparsers(
        dest="endpoint_command", required=True, metavar="ACTION"
    )
    add = add_command(
        endpoint_commands, "add", endpoint_add, "register an endpoint", CHANGE_OPTIONS
    )
    add.add_argument("--workspace", required=True, help="workspace id whose events it receives")
    add.add_argument(
        "--kind",
        choices=[k.value for k in EndpointKind],
        default=EndpointKind.HTTP.value,
        help="http (default): deliveries are POSTed to --url; poll: they wait for its "
        "consumer to fetch them (GET /v1/endpoints/{id}/messages), no --url",
    )
    add.add_argument("--url", help="http(s) URL to POST to (required for an http endpoint)")
    add.add_argument(
        "--events", required=True, help="types or wildcards: 'issue.*,comment.created', '*'"
    )
    # --owner-email is the API's and the dashboard's name; --email is kept as an alias.
    add.add_argument(
        "--owner-email",
        "--email",
        dest="email",
        help="owner, told when the endpoint turns failing (alias --email; required for an "
        "http endpoint)",
    )
    add.add_argument("--description", default="", help="free text")
    limits = (
        ("--max-in-flight", int, "requests in flight to it across all workers (default 10)"),
        ("--rate-limit", float, "requests per second at most (default 0: no limit)"),
    )
    for flag, kind, text in limits:
        add.add_argument(
            flag, type=kind, default=DEFAULT_MAX_IN_FLIGHT if kind is int else 0.0, help=text
        )
    header_help = "'Name: value' sent with every delivery (repeatable; at most 20)"
    timeout_help = "seconds an attempt may take, at most DELIVERY_TIMEOUT (0: DELIVERY_TIMEOUT)"
    add.add_argument("--header", action="append", metavar="'NAME: VALUE'", help=header_help)
    add.add_argument("--timeout", type=float, default=0.0, help=timeout_help)
    orderings = [o.value for o in Ordering]
    ordering_help = (
        "fifo: deliveries start in publish order, one at a time (the next waits until the "
        "previous is delivered or dead); parallel: up to --max-in-flight at once"
    )
    add.add_argument(
        "--ordering", choices=orderings, default=Ordering.PARALLEL.value, help=ordering_help
    )
    filter_help = (
        'payload filter, docs/filters.md: \'{"data.priority": {"$in": ["high", "urgent"]}}\''
    )
    add.add_argument("--filter", metavar="JSON", help=filter_help)
    update = add_command(
        endpoint_commands, "update", endpoint_update, "change an endpoint", CHANGE_OPTIONS
    )
    update.add_argument("id", help="endpoint id")
    for flag, text in (
        ("--url", "new URL"),
        ("--events", "new filter"),
        ("--description", "new description"),
    ):
        update.add_argument(flag, help=text)
    update.add_argument("--owner-email", "--email", dest="email", help="new owner (alias --email)")
    for flag, kind, text in limits:
        update.add_argument(flag, type=kind, help=text)
    update.add_argument(
        "--header", action="append", metavar="'NAME: VALUE'", help=header_help + ": replaces all"
    )
    update.add_argument("--clear-headers", action="store_true", help="send no custom headers")
    update.add_argument("--timeout", type=float, help=timeout_help)
    update.add_argument(
        "--ordering",
        choices=orderings,
        help=ordering_help + "; back to parallel, those waiting in line go at once",
    )
    update.add_argument("--filter", metavar="JSON", help=filter_help + "; '{}' removes it")
    listing = add_command(endpoint_commands, "list", endpoint_list, "list endpoints")
    listing.add_argument("--workspace", help="only this workspace")
    listing.add_argument(
        "--status", choices=[s.value for s in EndpointStatus], help="only this status"
    )
    for name, handler, text in (
        ("show", endpoint_show, "show one endpoint (secret masked) and its paused count"),
        (
            "enable",
            endpoint_set_status,
            "set status active (clears failing); its paused deliveries resume in publish "
            "order, each with the attempts it had left",
        ),
        (
            "disable",
            endpoint_set_status,
            "pause it: its deliveries (queued, retrying, new) are kept as paused and spend "
            "no attempt until enabled, at most PAUSED_MAX_PER_ENDPOINT (past it the oldest "
            "end dead); --drop ends them dead with the reason instead (replayable)",
        ),
        ("delete", endpoint_delete, "delete it; its queued and paused deliveries end dead"),
    ):
        action = add_command(endpoint_commands, name, handler, text)
        action.add_argument("id", help="endpoint id")
        if name == "disable":
            action.add_argument(
                "--drop",
                action="store_true",
                help="instead of pausing them, end its paused deliveries dead at once "
                "('endpoint disabled (drop)') and its queued, retrying and new ones when "
                "their attempt comes due ('endpoint disabled'); replayable once enabled",
            )
    rotate = add_command(
        endpoint_commands,
        "rotate-secret",
        endpoint_rotate,
        "new secret, shown once; until the grace period ends X-Cliq-Signature is still "
        "made with the old one (X-Cliq-Signature-New with the new one, webhook-signature "
        "carries both), then with the new one only",
    )
    rotate.add_argument("id", help="endpoint id")
    rotate.add_argument(
        "--grace",
        type=int,
        default=ROTATION_GRACE_S,
        help="seconds until X-Cliq-Signature switches to the new secret (default: %(default)s)",
    )
