"""Issue 19: ``cliq-webhooks attempts`` takes the API's filters (outcome, since, until)
and shows each attempt's event type. A real worker delivers to a real receiver that
fails once; the CLI runs as a subprocess against the private Redis."""

from __future__ import annotations

import asyncio
import json

from test_cli import cli, ok_json

from harness import Receiver, ScriptedResponse
from harness.polling import wait_until
from support import start_worker, worker_env


async def test_attempts_filter_by_outcome_and_time_and_show_the_event_type(
    redis_url: str, receiver: Receiver
) -> None:
    receiver.script(ScriptedResponse(status=500))  # the first attempt fails, then 200s
    added = ok_json(
        cli(
            redis_url,
            "endpoint", "add", "--workspace", "ws_f", "--url", receiver.url(),
            "--events", "*", "--owner-email", "o@example.com", "--json",
        )
    )  # fmt: skip
    worker = await start_worker(worker_env(redis_url))
    try:
        ok_json(
            cli(redis_url, "publish", "--workspace", "ws_f", "--type", "comment.created", "--json")
        )

        async def delivered() -> bool:
            rows = await asyncio.to_thread(
                cli, redis_url, "attempts", "--endpoint", added["id"], "--json"
            )
            return any(row["outcome"] == "delivered" for row in json.loads(rows.stdout))

        await wait_until(delivered, 30, interval=0.2, message="never delivered")
    finally:
        assert await worker.stop() == 0

    def rows(*flags: str) -> list[dict[str, object]]:
        found = ok_json(cli(redis_url, "attempts", "--endpoint", added["id"], "--json", *flags))
        assert isinstance(found, list)
        return found

    every = rows()
    assert [row["outcome"] for row in every] == ["delivered", "retry"]  # newest first
    assert {row["event_type"] for row in every} == {"comment.created"}
    assert [row["number"] for row in rows("--outcome", "retry")] == [1]
    assert [row["number"] for row in rows("--outcome", "delivered")] == [2]
    assert rows("--since", "2999-01-01T00:00:00Z") == []
    assert len(rows("--until", "2999-01-01T00:00:00Z", "--since", "2000-01-01T00:00:00Z")) == 2
    table = cli(redis_url, "attempts", "--endpoint", added["id"], "--outcome", "retry")
    assert "TYPE" in table.stdout
    assert "comment.created" in table.stdout

    bad = cli(redis_url, "attempts", "--endpoint", added["id"], "--since", "yesterday")
    assert bad.returncode == 2
    assert "--since: 'yesterday' is not an ISO 8601 timestamp" in bad.stderr
    backwards = cli(
        redis_url, "attempts", "--endpoint", added["id"],
        "--since", "2025-01-02T00:00:00Z", "--until", "2025-01-01T00:00:00Z",
    )  # fmt: skip
    assert backwards.returncode == 2
    assert "--until must not be earlier than --since" in backwards.stderr
