"""``cliq-webhooks api-keys create|list|revoke``: workspace-scoped API keys, over the HTTP API.

These commands talk to a running API (``--api-url``, default ``$CLIQ_API_URL`` or
http://127.0.0.1:8080) with an operator key (``--api-key``, default ``$CLIQ_API_KEY``:
prefer the variable, flags show in process lists), not to Redis: the API is where keys
are made, digested and checked. A refusal of the API (4xx) is a usage error naming what
it said (exit 2); an API that cannot be reached or fails (5xx) exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

import aiohttp

from cli.base import CommandFailed, UsageError, add_command
from cli.output import emit, render_fields, render_table

DEFAULT_API_URL = "http://127.0.0.1:8080"
API_URL_ENV = "CLIQ_API_URL"
API_KEY_ENV = "CLIQ_API_KEY"
REQUEST_TIMEOUT_S = 30


def add_api_flags(parser: argparse.ArgumentParser) -> None:
    """``--api-url`` and ``--api-key``: where the API is and the key to call it with."""
    parser.add_argument(
        "--api-url",
        default=os.environ.get(API_URL_ENV, DEFAULT_API_URL),
        help=f"the HTTP API's base URL (default ${API_URL_ENV} or {DEFAULT_API_URL})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV, ""),
        help=f"an operator API key (default ${API_KEY_ENV}; prefer the variable)",
    )


async def call_api(
    args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None
) -> Any:
    """The JSON answer of ``method path``; a problem answer raises what it says."""
    url = args.api_url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.request(method, url, json=body, headers=headers) as response,
        ):
            text = await response.text()
            status = response.status
            is_json = response.content_type.endswith("json")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CommandFailed(f"cannot reach the API at {args.api_url}: {exc}") from None
    document: Any = json.loads(text) if text and is_json else None
    if status >= 400:
        detail = document.get("detail", text) if isinstance(document, dict) else text
        message = f"the API answered {status}: {detail}"
        if isinstance(document, dict) and document.get("errors"):
            fields = "; ".join(f"{e['field']}: {e['message']}" for e in document["errors"])
            message += f" ({fields})"
        raise (UsageError if status < 500 else CommandFailed)(message)
    return document


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
    made = add_command(actions, "create", create, "make a key (its value is shown once)", ())
    made.add_argument("--workspace", required=True, help="the only workspace the key sees")
    made.add_argument("--name", required=True, help="what the key is for")
    made.add_argument(
        "--scope",
        action="append",
        required=True,
        help="a scope (repeat, or comma-separate): e.g. endpoints:write, events:publish",
    )
    listed = add_command(actions, "list", list_keys, "the keys, oldest first", ())
    listed.add_argument("--workspace", help="only this workspace's keys")
    gone = add_command(actions, "revoke", revoke, "revoke a key", ())
    gone.add_argument("id", help="the key's id (ak_…)")
    for parser in (made, listed, gone):
        add_api_flags(parser)
