"""Issue 19: ``cliq-webhooks send-test`` goes through a worker, like the API's test send:
it succeeds where the CLI process itself may not deliver (its destination policy is
strict here, the worker's allows the loopback receiver), and says so when no worker
answers. The CLI as a subprocess, a real worker, a real receiver, the private Redis."""

from __future__ import annotations

import asyncio
import json

from test_cli import cli, ok_json

from harness import Receiver
from support import start_worker, worker_env


async def test_send_test_is_sent_by_a_worker(redis_url: str, receiver: Receiver) -> None:
    added = ok_json(
        cli(
            redis_url,
            "endpoint", "add", "--workspace", "ws_1", "--url", receiver.url(),
            "--events", "*", "--owner-email", "o@example.com", "--json",
        )
    )  # fmt: skip
    worker = await start_worker(worker_env(redis_url))
    try:
        result = await asyncio.to_thread(
            cli,
            redis_url,
            "send-test", "--endpoint", added["id"], "--type", "comment.created", "--json",
            # The CLI itself would refuse 127.0.0.1: only a worker can have sent it.
            ALLOW_PRIVATE_DESTINATIONS="0",
        )  # fmt: skip
    finally:
        assert await worker.stop() == 0
    shown = ok_json(result)
    assert shown["ok"] is True
    assert shown["status"] == 200
    assert shown["event_type"] == "comment.created"
    (request,) = receiver.received
    assert request.headers["X-Cliq-Event"] == "comment.created"
    assert json.loads(request.body)["id"] == shown["event_id"]


async def test_send_test_without_a_worker_says_so(redis_url: str, receiver: Receiver) -> None:
    added = ok_json(
        cli(
            redis_url,
            "endpoint", "add", "--workspace", "ws_1", "--url", receiver.url(),
            "--events", "*", "--owner-email", "o@example.com", "--json",
        )
    )  # fmt: skip
    result = await asyncio.to_thread(
        cli, redis_url, "send-test", "--endpoint", added["id"], DELIVERY_TIMEOUT="0.2"
    )
    assert result.returncode == 1
    assert "no worker answered within 5.2 s" in result.stderr
    assert receiver.received == []


def test_send_test_refuses_an_unknown_type_or_endpoint(redis_url: str) -> None:
    unknown_type = cli(redis_url, "send-test", "--endpoint", "ep_x", "--type", "issue.nope")
    assert unknown_type.returncode == 2
    assert "unknown event type 'issue.nope'" in unknown_type.stderr
    unknown_endpoint = cli(redis_url, "send-test", "--endpoint", "ep_missing")
    assert unknown_endpoint.returncode == 2
    assert "ep_missing" in unknown_endpoint.stderr
