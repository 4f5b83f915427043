"""``cliq-webhooks event-types list``: the API's event catalogue (``GET /v1/event-types``)."""

from __future__ import annotations

import argparse
from typing import Any

from cli.api_client import ApiClient, add_api_command
from cli.output import emit, plural, render_table


async def event_types_list(args: argparse.Namespace) -> int:
    async with ApiClient.from_args(args) as client:
        items: list[dict[str, Any]] = (await client.call("GET", "/v1/event-types"))["items"]
    emit(
        args,
        items,
        lambda: (
            render_table(
                [(item["type"], item["description"]) for item in items], ["TYPE", "DESCRIPTION"]
            )
            + f"\n\n{plural(len(items), 'event type')}"
        ),
    )
    return 0


def add_commands(commands: Any) -> None:
    """Add ``event-types`` and its actions to the top-level ``commands``."""
    parser = commands.add_parser("event-types", help="the API's event catalogue")
    actions = parser.add_subparsers(dest="event_types_command", required=True, metavar="ACTION")
    add_api_command(
        actions,
        "list",
        event_types_list,
        "list the event types the API accepts (--json: each with an example event)",
    )
