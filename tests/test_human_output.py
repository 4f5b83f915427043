"""Issue 19: the CLI's readable output is for people: lists as ``issue.*, comment.created``,
times as ISO 8601, counts with nouns that agree ("1 delivery"). The CLI as a subprocess
against the private Redis."""

from __future__ import annotations

import json
import re

from test_cli import cli

from cli.output import human, plural

from harness import Receiver

ISO_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


def test_values_and_counts_read_as_words() -> None:
    assert human(["issue.*", "comment.created"]) == "issue.*, comment.created"
    assert human(None) == ""
    assert (human(True), human(False)) == ("yes", "no")
    assert human({}) == "none"
    assert human({"Authorization": "Bearer x", "X-Team": "ops"}) == (
        "Authorization: Bearer x, X-Team: ops"
    )
    assert (plural(1, "delivery", "deliveries"), plural(0, "event")) == ("1 delivery", "0 events")
    assert plural(2, "delivery", "deliveries") == "2 deliveries"


async def test_endpoint_and_publish_output_is_readable(redis_url: str, receiver: Receiver) -> None:
    added = cli(
        redis_url,
        "endpoint", "add", "--workspace", "ws_h", "--url", receiver.url(),
        "--events", "issue.*,comment.created", "--owner-email", "o@example.com",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert re.search(r"^events\s+issue\.\*, comment\.created$", added.stdout, re.M)
    assert re.search(rf"^created\s+{ISO_TIME}$", added.stdout, re.M), added.stdout
    assert "[" not in added.stdout  # no Python list shown
    listed = cli(redis_url, "endpoint", "list", "--workspace", "ws_h")
    assert "issue.*, comment.created" in listed.stdout

    one = cli(redis_url, "publish", "--workspace", "ws_h", "--type", "issue.created")
    assert one.returncode == 0, one.stderr
    assert one.stdout.rstrip().endswith(": 1 delivery")
    line = json.dumps({"type": "comment.created", "workspace_id": "ws_h", "data": {}})
    batch = cli(redis_url, "publish", "--file", "-", stdin=line + "\n")
    assert batch.stdout.strip() == "published 1 event (0 duplicates), 1 delivery"
