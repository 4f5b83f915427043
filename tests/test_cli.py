"""The command-line contract, run as a real subprocess against the private Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import redis.asyncio as aioredis

from harness import Receiver
from support import HEADER_REFUSALS, PROJECT, worker_env


def cli(
    redis_url: str, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``cliq-webhooks ARGS`` with the test environment."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **worker_env(redis_url), **env},
        cwd=PROJECT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def key_count(redis: aioredis.Redis) -> int:
    return int(await redis.dbsize())


async def test_endpoint_add_show_list_and_status_changes(
    redis_url: str, receiver: Receiver
) -> None:
    added = ok_json(
        cli(
            redis_url,
            "endpoint", "add", "--workspace", "ws_1", "--url", receiver.url(),
            "--events", "issue.*,comment.created", "--email", "owner@example.com",
            "--description", "billing", "--json",
        )
    )  # fmt: skip
    assert added["status"] == "active"
    assert added["secret"].startswith("whsec_")
    assert len(added["secret"]) > 40
    assert added["events"] == ["issue.*", "comment.created"]

    shown = ok_json(cli(redis_url, "endpoint", "show", added["id"], "--json"))
    assert shown["status"] == "active"
    assert shown["secret"] != added["secret"]  # masked after creation
    assert added["secret"] not in cli(redis_url, "endpoint", "list").stdout

    ok_json(cli(redis_url, "endpoint", "disable", added["id"], "--json"))
    assert (
        ok_json(cli(redis_url, "endpoint", "show", added["id"], "--json"))["status"] == "disabled"
    )
    ok_json(cli(redis_url, "endpoint", "enable", added["id"], "--json"))
    listed = ok_json(cli(redis_url, "endpoint", "list", "--workspace", "ws_1", "--json"))
    assert [e["id"] for e in listed] == [added["id"]]

    rotated = ok_json(cli(redis_url, "endpoint", "rotate-secret", added["id"], "--json"))
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != added["secret"]

    ok_json(cli(redis_url, "endpoint", "delete", added["id"], "--json"))
    missing = cli(redis_url, "endpoint", "show", added["id"])
    assert missing.returncode == 2
    assert "no endpoint with id" in missing.stderr


async def test_publish_prints_id_and_delivery_count_and_is_idempotent(
    redis_url: str, receiver: Receiver
) -> None:
    ok_json(
        cli(
            redis_url, "endpoint", "add", "--workspace", "ws_1", "--url", receiver.url(),
            "--events", "*", "--email", "o@example.com", "--json",
        )
    )  # fmt: skip
    args = ["publish", "--workspace", "ws_1", "--type", "issue.created", "--data", '{"a": 1}']
    first = ok_json(cli(redis_url, *args, "--id", "evt_cli_1", "--json"))
    assert first == {"id": "evt_cli_1", "deliveries": 1, "duplicate": False}
    again = ok_json(cli(redis_url, *args, "--id", "evt_cli_1", "--json"))
    assert again == {"id": "evt_cli_1", "deliveries": 0, "duplicate": True}
    generated = ok_json(cli(redis_url, *args, "--json"))
    assert generated["id"].startswith("evt_")


async def test_publish_file_validates_every_line_before_publishing(
    redis_url: str, redis: aioredis.Redis
) -> None:
    good = json.dumps({"type": "issue.created", "workspace_id": "ws_1", "data": {}})
    bad = json.dumps({"type": "issue.nope", "workspace_id": "ws_1", "data": {}})
    before = await key_count(redis)
    result = cli(redis_url, "publish", "--file", "-", stdin=f"{good}\n{good}\n{bad}\n")
    assert result.returncode == 2
    assert "<stdin>:3: type: unknown event type 'issue.nope'" in result.stderr
    assert await key_count(redis) == before

    lines = "".join(
        json.dumps({"type": "issue.created", "workspace_id": "ws_1", "data": {"n": n}}) + "\n"
        for n in range(2500)
    )
    summary = ok_json(cli(redis_url, "publish", "--file", "-", "--json", stdin=lines))
    assert summary == {"events": 2500, "duplicates": 0, "deliveries": 0}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "issue.created"], "publish needs --type and --workspace"),
        (
            ["--workspace", "ws_1", "--type", "issue.exploded"],
            "unknown event type 'issue.exploded'",
        ),
        (
            ["--workspace", "ws_1", "--type", "issue.created", "--data", "[1, 2]"],
            "data: must be a JSON object",
        ),
        (
            ["--workspace", "ws_1", "--type", "issue.created", "--data", "{oops"],
            "--data is not valid JSON",
        ),
        (["--workspace", "ws 1", "--type", "issue.created"], "workspace_id: is required"),
        (["--workspace", "ws_1", "--type", "issue.created", "--id", "a:b"], "id: must be 1-128"),
        (
            ["--workspace", "ws_1", "--type", "issue.created", "--created-at", "yesterday"],
            "created_at: 'yesterday' is not an ISO 8601 timestamp",
        ),
    ],
    ids=[
        "missing-workspace",
        "unknown-type",
        "non-object-data",
        "bad-json",
        "bad-workspace",
        "bad-id",
        "bad-time",
    ],
)
async def test_bad_publish_input_is_refused_and_nothing_is_enqueued(
    redis_url: str, redis: aioredis.Redis, args: list[str], message: str
) -> None:
    before = await key_count(redis)
    result = cli(redis_url, "publish", *args)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert await key_count(redis) == before


async def test_an_event_over_256_kib_is_refused(redis_url: str, redis: aioredis.Redis) -> None:
    line = json.dumps(
        {"type": "issue.created", "workspace_id": "ws_1", "data": {"x": "y" * 263_000}}
    )
    before = await key_count(redis)
    result = cli(redis_url, "publish", "--file", "-", stdin=line + "\n")
    assert result.returncode == 2
    assert "<stdin>:1: data: event is 263134 bytes" in result.stderr
    assert "the limit is 262144 bytes" in result.stderr
    assert await key_count(redis) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://example.com/x"], "must use http or https"),
        (["--url", "not a url"], "must use http or https"),
        (["--url", "http://user:pw@example.com/"], "must not carry credentials"),
        (["--url", "https://example.com", "--events", "issue.nope"], "unknown event type"),
        (["--url", "https://example.com", "--email", "nobody"], "is not an email address"),
    ],
)
async def test_bad_endpoint_input_is_refused(
    redis_url: str, redis: aioredis.Redis, args: list[str], message: str
) -> None:
    base = {"--workspace": "ws_1", "--events": "*", "--email": "o@example.com"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    flat = [x for k, v in {**base, **given}.items() for x in (k, v)]
    before = await key_count(redis)
    result = cli(redis_url, "endpoint", "add", *flat)
    assert result.returncode == 2
    assert message in result.stderr
    assert await key_count(redis) == before


def test_bad_retry_schedule_is_refused_with_the_variable_named(redis_url: str) -> None:
    result = cli(redis_url, "worker", RETRY_SCHEDULE="0,soon")
    assert result.returncode == 2
    assert "RETRY_SCHEDULE='0,soon'" in result.stderr
    flag = cli(redis_url, "worker", "--retry-schedule", "5,10")
    assert flag.returncode == 2
    assert "must start with 0" in flag.stderr


def test_unreachable_redis_is_a_clear_error_and_a_failure_exit() -> None:
    from worker.localredis import free_port

    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0"
    result = cli(url, "publish", "--workspace", "ws_1", "--type", "issue.created")
    assert result.returncode == 1
    assert f"cannot reach Redis at redis://***@127.0.0.1:{port}/0" in result.stderr
    assert "hunter2" not in result.stderr


async def test_status_and_attempts_report_what_happened(redis_url: str, receiver: Receiver) -> None:
    added = ok_json(
        cli(
            redis_url, "endpoint", "add", "--workspace", "ws_1", "--url", receiver.url(),
            "--events", "*", "--email", "o@example.com", "--json",
        )
    )  # fmt: skip
    ok_json(cli(redis_url, "publish", "--workspace", "ws_1", "--type", "issue.created", "--json"))
    status = ok_json(cli(redis_url, "status", "--json"))
    assert status["deliveries"]["queued"] == 1
    assert status["ready"] == 1  # a single publish: its delivery waits for a worker
    assert status["jobs"]["deliveries"]["wait"] == 0  # and costs no bullmq job
    assert status["failing_endpoints"] == []
    assert "1 new deliveries on the ready list" in cli(redis_url, "status").stdout
    attempts = ok_json(cli(redis_url, "attempts", "--endpoint", added["id"], "--json"))
    assert attempts == []  # nothing attempted without a worker
    table = cli(redis_url, "attempts", "--endpoint", added["id"])
    assert "1 deliveries not attempted yet" in table.stdout


def test_help_documents_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PROJECT,
    )
    for command in (
        "worker",
        "endpoint",
        "publish",
        "send-test",
        "attempts",
        "status",
        "replay",
        "demo",
    ):
        assert command in result.stdout


async def test_rotate_secret_says_exactly_when_the_seed_signature_switches(
    redis_url: str,
) -> None:
    added = ok_json(
        cli(
            redis_url, "endpoint", "add", "--workspace", "ws_1", "--url", "https://e.example/h",
            "--events", "*", "--email", "o@example.com", "--json",
        )
    )  # fmt: skip
    assert added["signature_switches_at"] is None
    rotated = cli(redis_url, "endpoint", "rotate-secret", added["id"], "--grace", "60")
    assert rotated.returncode == 0, rotated.stderr
    shown = ok_json(cli(redis_url, "endpoint", "show", added["id"], "--json"))
    switches_at = shown["signature_switches_at"]
    assert switches_at.endswith("Z")
    assert f"Until {switches_at} X-Cliq-Signature is still made with" in rotated.stdout
    assert "X-Cliq-Signature-New" in rotated.stdout


# Half of them (the API's test has all), none with a NUL: a command line cannot carry one.
@pytest.mark.parametrize(
    ("headers", "message"),
    [case for case in HEADER_REFUSALS if "\0" not in "".join(case[0].values())][::2],
)
def test_endpoint_add_refuses_bad_headers_with_the_apis_message(
    redis_url: str, headers: dict[str, str], message: str
) -> None:
    flags = [f"--header={name}: {value}" for name, value in headers.items()]
    result = cli(
        redis_url, "endpoint", "add", "--workspace", "ws_1", "--url", "https://e.example/h",
        "--events", "*", "--email", "o@example.com", *flags,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout
    assert f"--header: {message}" in result.stderr


def test_endpoint_add_refuses_a_header_without_a_colon_and_a_long_timeout(
    redis_url: str,
) -> None:
    base = (
        "endpoint", "add", "--workspace", "ws_1", "--url", "https://e.example/h",
        "--events", "*", "--email", "o@example.com",
    )  # fmt: skip
    no_colon = cli(redis_url, *base, "--header", "X-Team team-a")
    assert no_colon.returncode == 2
    assert "--header: 'X-Team team-a' is not of the form 'Name: value'" in no_colon.stderr
    too_long = cli(redis_url, *base, "--timeout", "3", DELIVERY_TIMEOUT="2")
    assert too_long.returncode == 2
    assert "--timeout: must be a number of seconds from 0 to 2" in too_long.stderr


async def test_endpoint_add_and_update_keep_headers_and_timeout(redis_url: str) -> None:
    added = ok_json(
        cli(
            redis_url, "endpoint", "add", "--workspace", "ws_1", "--url", "https://e.example/h",
            "--events", "*", "--email", "o@example.com", "--header", "Authorization: Bearer t",
            "--header", "X-Team: a", "--timeout", "1.5", "--json",
        )
    )  # fmt: skip
    assert added["headers"] == {"Authorization": "Bearer t", "X-Team": "a"}
    assert added["timeout_s"] == 1.5
    updated = ok_json(
        cli(redis_url, "endpoint", "update", added["id"], "--header", "X-Only: 1", "--json")
    )
    assert updated["headers"] == {"X-Only": "1"}
    assert updated["timeout_s"] == 1.5
    cleared = ok_json(
        cli(redis_url, "endpoint", "update", added["id"], "--clear-headers", "--json")
    )
    assert cleared["headers"] == {}
