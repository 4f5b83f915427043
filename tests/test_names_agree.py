"""Issue 19: the CLI's names agree with the API's and the dashboard's (``--owner-email``,
``--email`` kept as an alias), run as a real subprocess against the private Redis."""

from __future__ import annotations

from test_cli import cli, ok_json

from harness import Receiver


async def test_owner_email_is_the_flag_and_email_its_alias(
    redis_url: str, receiver: Receiver
) -> None:
    added = ok_json(
        cli(
            redis_url,
            "endpoint", "add", "--workspace", "ws_1", "--url", receiver.url(),
            "--events", "*", "--owner-email", "first@example.com", "--json",
        )
    )  # fmt: skip
    assert added["owner_email"] == "first@example.com"
    updated = ok_json(
        cli(
            redis_url, "endpoint", "update", added["id"], "--owner-email", "b@example.com", "--json"
        )
    )
    assert updated["owner_email"] == "b@example.com"
    aliased = ok_json(
        cli(redis_url, "endpoint", "update", added["id"], "--email", "c@example.com", "--json")
    )
    assert aliased["owner_email"] == "c@example.com"
    shown = ok_json(cli(redis_url, "endpoint", "show", added["id"], "--json"))
    assert shown["owner_email"] == "c@example.com"
    helped = cli(redis_url, "endpoint", "add", "--help")
    assert "--owner-email" in helped.stdout
