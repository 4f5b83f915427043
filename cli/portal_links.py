"""``cliq-webhooks portal-link``: a single-use link into the dashboard, over the HTTP API.

``--workspace WS`` opens the dashboard bound to that workspace (``--read-only``: it may
look, not change); ``--user ID`` that user's own Webhook Tokens screens, where they set
up their second factor. The link expires after ``--ttl`` seconds (default 15 minutes) or
its first use. ``--api-url`` and ``--api-key`` as for ``api-keys`` (a scoped key with
``portal-links:create`` will do, for its own workspace).
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.api_client import add_api_command, call_api
from cli.base import UsageError
from cli.output import emit, render_fields


async def portal_link(args: argparse.Namespace) -> int:
    """``portal-link``: print the URL and when it expires."""
    if (args.workspace is None) == (args.user is None):
        raise UsageError("give one of --workspace or --user")
    body: dict[str, Any] = {}
    if args.ttl is not None:
        body["ttl_s"] = args.ttl
    if args.user is not None:
        if args.read_only:
            raise UsageError("--read-only is for --workspace links")
        path = f"/v1/users/{args.user}/portal-links"
    else:
        body["read_only"] = args.read_only
        path = f"/v1/workspaces/{args.workspace}/portal-links"
    link = await call_api(args, "POST", path, body)
    emit(
        args,
        link,
        lambda: (
            render_fields(
                [
                    (n, link[n])
                    for n in ("url", "expires_at", "workspace_id", "read_only", "user_id")
                ]
            )
            + "\nThe link works once."
        ),
    )
    return 0


def add_commands(commands: Any) -> None:
    """Add ``portal-link`` to the top-level ``commands``."""
    link = add_api_command(
        commands,
        "portal-link",
        portal_link,
        "a single-use link opening the dashboard for one workspace, or one user's tokens",
    )
    link.add_argument("--workspace", help="the workspace the dashboard is bound to")
    link.add_argument("--user", help="a user: their own Webhook Tokens screens (and 2FA)")
    link.add_argument("--ttl", type=int, help="seconds the link stays usable (default 900)")
    link.add_argument(
        "--read-only", action="store_true", help="the session can look but change nothing"
    )
