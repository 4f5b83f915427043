"""``cliq-webhooks api-keys create|list|revoke``: workspace-scoped API keys, over the HTTP API.

These commands talk to a running API (``--api-url``/``API_URL``) with an operator key
(``--api-key``/``API_KEY``: prefer the variable, flags show in process lists), not to
Redis: the API is where keys are made, digested and checked. A refusal of the API (4xx)
is a usage error naming what it said (exit 2); an API that cannot be reached or fails
(5xx) exits 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.api_client import add_api_command, call_api
from cli.output import emit, render_fields, render_table


def _row(key: dict[str, Any]) -> list[Any]:
    return [
        key["name"],
        key["id"],
        key["workspace_id"],
        key["scopes"],
        key["created_at"],
        key["last_used_at"] or "never",
    ]


async def create(args: argparse.Namespace) -> int:
    """``api-keys create``: a key of one workspace; its value is printed this once."""
    scopes = [s.strip() for item in args.scope for s in item.split(",") if s.strip()]
    body = {"workspace_id": args.workspace, "name": args.name, "scopes": scopes}
    key = await call_api(args, "POST", "/v1/api-keys", body)
    emit(
        args,
        key,
        lambda: (
            render_fields(
                [(name, key[name]) for name in ("id", "workspace_id", "name", "scopes", "key")]
            )
            + "\nThe key is shown this once: only a digest of it is kept."
        ),
    )
    return 0


async def list_keys(args: argparse.Namespace) -> int:
    """``api-keys list``: name, id, workspace, scopes, created, last used."""
    query = f"?workspace_id={args.workspace}" if args.workspace else ""
    keys = (await call_api(args, "GET", f"/v1/api-keys{query}"))["items"]
    headers = ["name", "id", "workspace", "scopes", "created", "last used"]
    emit(args, keys, lambda: render_table([_row(k) for k in keys], headers))
    return 0


async def revoke(args: argparse.Namespace) -> int:
    """``api-keys revoke ID``: the key stops working at once."""
    await call_api(args, "DELETE", f"/v1/api-keys/{args.id}")
    emit(args, {"id": args.id, "revoked": True}, lambda: f"revoked {args.id}")
    return 0


def add_commands(commands: Any) -> None:
    """Add ``api-keys`` and its subcommands to the top-level ``commands``."""
    group = commands.add_parser(
        "api-keys",
        help="make, list and revoke workspace-scoped API keys (through the HTTP API)",
        description="Workspace-scoped API keys, through the HTTP API (an operator key).",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    made = add_api_command(actions, "create", create, "make a key (its value is shown once)")
    made.add_argument("--workspace", required=True, help="the only workspace the key sees")
    made.add_argument("--name", required=True, help="what the key is for")
    made.add_argument(
        "--scope",
        action="append",
        required=True,
        help="a scope (repeat, or comma-separate): e.g. endpoints:write, events:publish",
    )
    listed = add_api_command(actions, "list", list_keys, "the keys, oldest first")
    listed.add_argument("--workspace", help="only this workspace's keys")
    gone = add_api_command(actions, "revoke", revoke, "revoke a key")
    gone.add_argument("id", help="the key's id (ak_…)")
