"""``cliq-webhooks tokens list|create|show|rename|enable|disable|revoke|usage|webhook-url``:
a user's webhook tokens, through the HTTP API (producer/tokens/routes.py).

The API asks for the user's second factor on every token call: pass an open session
(``--session``, from ``users 2fa verify``) or a current code (``--code``, which opens one).
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.api_client import (
    ApiClient,
    add_api_command,
    add_session_flags,
    segments,
    two_factor_session,
    user_path,
)
from cli.output import emit, plural, render_fields, render_table
from producer.tokens.modules import WebhookModule


def token_fields(token: dict[str, Any]) -> str:
    """One token as people read it (its uses counted in words)."""
    shown = {**token, "invocations": plural(int(token["invocations"]), "invocation")}
    shown["last_invoked_at"] = token.get("last_invoked_at") or "never"
    return render_fields(shown.items())


async def _call(
    args: argparse.Namespace, method: str, tail: str = "", body: dict[str, Any] | None = None
) -> Any:
    """``method`` on the user's tokens (``tail`` after ``/tokens``), with the 2FA session."""
    async with ApiClient.from_args(args) as client:
        session = await two_factor_session(client, args.user_id, args)
        path = f"{user_path(args.user_id)}/tokens{tail}"
        params = {"limit": str(args.limit)} if getattr(args, "limit", None) else None
        return await client.call(method, path, body, session=session, params=params)


def _token_tail(args: argparse.Namespace, *more: str) -> str:
    return segments(args.token_id, *more)


async def tokens_list(args: argparse.Namespace) -> int:
    answer = await _call(args, "GET")
    tokens: list[dict[str, Any]] = answer["items"]
    rows = [
        (
            t["id"],
            t["name"],
            t["status"],
            t["invocations"],
            t["last_invoked_at"] or "never",
            t["created_at"],
        )
        for t in tokens
    ]
    emit(
        args,
        tokens,
        lambda: (
            render_table(rows, ["ID", "NAME", "STATUS", "USES", "LAST USED", "CREATED"])
            + f"\n\n{plural(len(tokens), 'token')} of at most {answer['max_tokens']}"
        ),
    )
    return 0


async def tokens_create(args: argparse.Namespace) -> int:
    token: dict[str, Any] = await _call(args, "POST", body={"name": args.name})
    emit(
        args,
        token,
        lambda: token_fields(token) + "\n\nThe token is shown only now: store it.",
    )
    return 0


async def tokens_show(args: argparse.Namespace) -> int:
    token: dict[str, Any] = await _call(args, "GET", _token_tail(args))
    emit(args, token, lambda: token_fields(token))
    return 0


async def tokens_rename(args: argparse.Namespace) -> int:
    token: dict[str, Any] = await _call(args, "PATCH", _token_tail(args), {"name": args.name})
    emit(args, token, lambda: token_fields(token))
    return 0


async def tokens_set_status(args: argparse.Namespace) -> int:
    action = args.tokens_command  # enable or disable
    token: dict[str, Any] = await _call(args, "POST", _token_tail(args, action))
    emit(args, token, lambda: f"{token['id']} is now {token['status']}")
    return 0


async def tokens_revoke(args: argparse.Namespace) -> int:
    await _call(args, "DELETE", _token_tail(args))
    emit(
        args,
        {"id": args.token_id, "revoked": True},
        lambda: f"{args.token_id} revoked: it authenticates nothing more",
    )
    return 0


async def tokens_usage(args: argparse.Namespace) -> int:
    uses: list[dict[str, Any]] = (await _call(args, "GET", _token_tail(args, "usage")))["items"]
    rows = [
        (u["at"], u["module"], u["resource"], u["source"], u["outcome"], u["event_id"])
        for u in uses
    ]
    emit(
        args,
        uses,
        lambda: (
            render_table(rows, ["AT", "MODULE", "RESOURCE", "SOURCE", "OUTCOME", "EVENT"])
            + f"\n\n{plural(len(uses), 'use')}, newest first"
        ),
    )
    return 0


async def tokens_webhook_url(args: argparse.Namespace) -> int:
    body = {"module": args.module, "name": args.name}
    for name in ("token", "appkey"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    made: dict[str, Any] = await _call(args, "POST", _token_tail(args, "webhook-url"), body)
    note = "" if made["complete"] else "\n\nIncomplete: add the token (and an appkey) to use it."
    emit(args, made, lambda: render_fields(made.items()) + note)
    return 0


def add_commands(commands: Any) -> None:
    """Add ``tokens`` and its actions to the top-level ``commands``."""
    tokens = commands.add_parser(
        "tokens", help="a user's webhook tokens, through the API (each call needs 2FA)"
    )
    actions = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")

    def action(name: str, handler: Any, text: str, *, token: bool = True) -> Any:
        parser = add_api_command(actions, name, handler, text)
        parser.add_argument("user_id", help="user id")
        if token:
            parser.add_argument("token_id", help="token id")
        add_session_flags(parser)
        return parser

    action("list", tokens_list, "the user's tokens, oldest first", token=False)
    create = action("create", tokens_create, "generate a token (shown once)", token=False)
    create.add_argument("--name", required=True, help="the token's name")
    action("show", tokens_show, "one token")
    rename = action("rename", tokens_rename, "rename a token")
    rename.add_argument("--name", required=True, help="the new name")
    action("enable", tokens_set_status, "let it authenticate again")
    action("disable", tokens_set_status, "stop it authenticating (it keeps its slot)")
    action("revoke", tokens_revoke, "delete it: it authenticates nothing more, its slot is free")
    usage = action("usage", tokens_usage, "its latest uses, newest first")
    usage.add_argument("--limit", type=int, help="at most this many (the API's limit)")
    url = action("webhook-url", tokens_webhook_url, "the incoming-webhook URL of a module")
    url.add_argument(
        "--module",
        required=True,
        choices=[m.value for m in WebhookModule],
        help="where the webhook posts",
    )
    url.add_argument("--name", required=True, help="the channel, bot or app name")
    url.add_argument("--token", help="the token's value, to put in the URL")
    url.add_argument("--appkey", help="an extension app's appkey")
