"""``cliq-webhooks users create|show|claim|add-app|2fa …``: the webhook-token API's users
(``/v1/users/{user_id}``), through the HTTP API (producer/tokens/routes.py).

The API has no user list or delete: users are named by the operator's own system.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.api_client import ApiClient, add_api_command, segments, user_path
from cli.output import emit, plural, render_fields


def user_text(user: dict[str, Any]) -> str:
    """A user as people read it: resources as lists, times in ISO 8601."""
    fields = {
        **user,
        "totp_enrolled": "yes" if user.get("totp_enrolled") else "no",
    }
    owned = sum(len(user.get(kind) or []) for kind in ("channels", "bots", "apps"))
    return render_fields(fields.items()) + f"\n\nowns {plural(owned, 'resource')}"


async def users_create(args: argparse.Namespace) -> int:
    async with ApiClient.from_args(args) as client:
        answer = await client.request(
            "PUT", user_path(args.user_id), {"workspace_id": args.workspace}
        )
    user: dict[str, Any] = answer.body
    done = "created" if answer.status == 201 else "updated (workspace set)"
    emit(args, user, lambda: f"user {user['id']} {done}\n\n{user_text(user)}")
    return 0


async def users_show(args: argparse.Namespace) -> int:
    async with ApiClient.from_args(args) as client:
        user: dict[str, Any] = await client.call("GET", user_path(args.user_id))
    emit(args, user, lambda: user_text(user))
    return 0


async def users_claim(args: argparse.Namespace) -> int:
    kind, name = ("channel", args.channel) if args.channel else ("bot", args.bot)
    async with ApiClient.from_args(args) as client:
        answer = await client.request("PUT", user_path(args.user_id) + segments(f"{kind}s", name))
    claimed: dict[str, Any] = answer.body
    done = "claimed" if answer.status == 201 else "was already theirs"
    emit(args, claimed, lambda: f"{kind} {name} {done} ({args.user_id})")
    return 0


async def users_add_app(args: argparse.Namespace) -> int:
    async with ApiClient.from_args(args) as client:
        app: dict[str, Any] = await client.call(
            "POST", f"{user_path(args.user_id)}/apps", {"name": args.name}
        )
    emit(
        args,
        app,
        lambda: render_fields(app.items()) + "\n\nThe appkeys are shown only now: store them.",
    )
    return 0


async def twofa_code(args: argparse.Namespace) -> int:
    step = args.twofa_command  # confirm or verify
    async with ApiClient.from_args(args) as client:
        session: dict[str, Any] = await client.call(
            "POST", f"{user_path(args.user_id)}/2fa/{step}", {"code": args.code}
        )
    emit(
        args,
        session,
        lambda: (
            render_fields(session.items())
            + "\n\nPass it to token commands as --session (until expires_at)."
        ),
    )
    return 0


def add_commands(commands: Any) -> None:
    """Add ``users`` and its actions to the top-level ``commands``."""
    users = commands.add_parser("users", help="users of webhook tokens, through the API")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    create = add_api_command(
        actions, "create", users_create, "create a user, or move them to another workspace"
    )
    create.add_argument("user_id", help="the user's id in your system")
    create.add_argument("--workspace", required=True, help="where their incoming webhooks publish")
    show = add_api_command(actions, "show", users_show, "show a user and what they own")
    show.add_argument("user_id", help="user id")
    claim = add_api_command(actions, "claim", users_claim, "claim a channel or bot name")
    claim.add_argument("user_id", help="user id")
    which = claim.add_mutually_exclusive_group(required=True)
    which.add_argument("--channel", help="channel name")
    which.add_argument("--bot", help="bot name")
    app = add_api_command(
        actions, "add-app", users_add_app, "an extension app (its appkeys shown once)"
    )
    app.add_argument("user_id", help="user id")
    app.add_argument("--name", required=True, help="the app's name")

    # No enrol step: the user enrols in their own portal session, never the operator
    # (`cliq-webhooks portal-link --user ID` makes the link to send them).
    twofa = actions.add_parser("2fa", help="the user's second factor (TOTP)")
    steps = twofa.add_subparsers(dest="twofa_command", required=True, metavar="STEP")
    for name, text in (
        ("confirm", "the first code of a new secret: opens a 2FA session"),
        ("verify", "a code of the enrolled secret: opens a 2FA session"),
    ):
        step = add_api_command(steps, name, twofa_code, text)
        step.add_argument("user_id", help="user id")
        step.add_argument("--code", required=True, help="the 6 digits the authenticator shows")
