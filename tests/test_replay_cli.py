"""``cliq-webhooks replay``: every dead delivery of an endpoint (or those that died since
``--since``, as the API's bulk replay), or one delivery; counts read as words and
``--json`` answers as ``POST /v1/endpoints/{id}/replay`` does. A real worker, a receiver
that always fails, one attempt per delivery; the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json

from test_cli import cli, ok_json

from harness import Receiver
from harness.polling import wait_until
from support import start_worker, worker_env


async def test_replay_by_endpoint_since_and_by_delivery(redis_url: str, receiver: Receiver) -> None:
    receiver.respond(status=500, times=2)  # each delivery's only attempt fails
    added = ok_json(
        cli(
            redis_url,
            "endpoint", "add", "--workspace", "ws_r", "--url", receiver.url(),
            "--events", "*", "--owner-email", "o@example.com", "--json",
        )
    )  # fmt: skip
    worker = await start_worker(worker_env(redis_url, RETRY_SCHEDULE="0"))
    try:
        for _ in range(2):
            ok_json(
                cli(
                    redis_url, "publish", "--workspace", "ws_r", "--type", "issue.created", "--json"
                )
            )

        async def dead() -> list[str]:
            rows = await asyncio.to_thread(
                cli, redis_url, "attempts", "--endpoint", added["id"], "--outcome", "dead", "--json"
            )
            return [row["delivery_id"] for row in json.loads(rows.stdout)]

        async def both_dead() -> bool:
            return len(await dead()) == 2

        await wait_until(both_dead, 30, interval=0.2, message="not both dead")
    finally:
        assert await worker.stop() == 0
    first, _ = await dead()

    none_yet = cli(
        redis_url, "replay", "--endpoint", added["id"], "--since", "2999-01-01T00:00:00Z"
    )
    assert none_yet.returncode == 0, none_yet.stderr
    assert none_yet.stdout.strip() == "re-enqueued 0 dead deliveries"

    one = ok_json(cli(redis_url, "replay", "--delivery", first, "--json"))
    assert one == {"replayed": [first], "count": 1}

    rest = cli(redis_url, "replay", "--endpoint", added["id"], "--since", "2000-01-01T00:00:00Z")
    assert rest.returncode == 0, rest.stderr
    assert rest.stdout.strip() == "re-enqueued 1 dead delivery"  # the other one was queued
    again = ok_json(cli(redis_url, "replay", "--endpoint", added["id"], "--json"))
    assert again == {"replayed": [], "count": 0}

    bad = cli(redis_url, "replay", "--endpoint", added["id"], "--since", "last week")
    assert bad.returncode == 2
    assert "--since: 'last week' is not an ISO 8601 timestamp" in bad.stderr
    mixed = cli(redis_url, "replay", "--delivery", first, "--since", "2000-01-01T00:00:00Z")
    assert mixed.returncode == 2
    assert "--since goes with --endpoint" in mixed.stderr
