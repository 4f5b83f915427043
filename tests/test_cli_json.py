"""Issue 19: ``--json`` everywhere, stable, documented. Every row of the ``--json prints``
tables of docs/cli.md (the Redis commands) and docs/cli-api.md (the commands through the
API) is read from the markdown and checked against what the command really prints (its
top-level keys; for a list, its items'), so that the docs and the code cannot drift: a
command documented but not run here, or run here but not documented, fails too.

The commands run in this process (``cli.main.main``, as tests/test_cli_api.py does: a
subprocess per command costs seconds), on the session's private Redis and PostgreSQL,
with a real worker, a real API process and real ``listen`` subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_cli import cli, ok_json
from test_cli_api import KEY, Api, api, enrol_in_portal  # noqa: F401  # `api`: a fixture

from cli.main import main
from producer import logs
from producer.tokens.totp import code_at

from harness import Receiver
from harness.polling import wait_until
from harness.processes import stop_process
from support import PROJECT, WorkerProcess, worker_env

DOCS = PROJECT / "docs"
# ("object" | "list", its keys or its items' keys)
Shape = tuple[str, frozenset[str]]
# A name the docs define once (*endpoint* below stands for …: `{…}`), used in the table.
DEFINITION = re.compile(
    r"\*([\w-]+)\*\s+(?:below stands\s+)?for (?:[^`*]|`[^`{][^`]*`)*?`(\{[^`]*\})`"
)
KEY_PART = re.compile(r'"([^"]+)"(?:: (?:true|false|null|-?\d+))?')


def read_shape(code: str, names: dict[str, frozenset[str]]) -> Shape:
    """``{"a", "b": true}``, ``[{…}]``, ``name``, ``[name]``, ``{name, "c"}`` as a shape;
    anything else fails: the table must stay readable by this test."""
    kind = "object"
    if code.startswith("[") and code.endswith("]"):
        kind, code = "list", code[1:-1]
    if code in names:
        return kind, names[code]
    assert code.startswith("{"), f"cannot read the shape {code!r}"
    assert code.endswith("}"), f"cannot read the shape {code!r}"
    keys: set[str] = set()
    for part in (p.strip() for p in code[1:-1].split(",")):
        if part in names:
            keys |= names[part]
            continue
        match = KEY_PART.fullmatch(part)
        assert match, f"cannot read {part!r} of the shape {code!r}"
        keys.add(match[1])
    return kind, frozenset(keys)


def documented(doc: Path) -> dict[str, Shape]:
    """The ``| command | --json prints |`` table of ``doc``: each command named in a row
    (with its parenthesised qualifier: ``listen (first line)``) and the shape it prints."""
    text = doc.read_text()
    names: dict[str, frozenset[str]] = {}
    for name, code in DEFINITION.findall(text):
        names[name] = read_shape(code, names)[1]
    lines = text.splitlines()
    header = "| command | `--json` prints |"
    assert header in lines, f"{doc.name} has no table headed {header}"
    start = lines.index(header)
    table: dict[str, Shape] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        command_cell, shape_cell = (cell.strip() for cell in line.strip("|").split("|"))
        code = re.search(r"`([^`]+)`", shape_cell)
        assert code, line
        shape = read_shape(code[1], names)
        for command, qualifier in re.findall(r"`([^`]+)`(?: (\([^)]*\)))?", command_cell):
            name = f"{command} {qualifier}".strip()
            assert name not in table, f"{name} is in two rows of {doc.name}"
            table[name] = shape
    assert table, f"no rows in {doc.name}"
    return table


def shape_of(value: Any) -> Shape:
    """What a command printed, as a shape: a list's items must all have the same keys."""
    if isinstance(value, list):
        assert value, "an empty list says nothing about its items"
        keys = {frozenset(item) for item in value}
        assert len(keys) == 1, f"items with different keys: {keys}"
        return "list", keys.pop()
    assert isinstance(value, dict), value
    return "object", frozenset(value)


def assert_agrees(doc: Path, printed: dict[str, Any]) -> None:
    """Every documented command was run, and printed the documented shape."""
    table = documented(doc)
    assert sorted(printed) == sorted(table), f"commands run here vs rows of {doc.name}"
    wrong = {
        name: (shape_of(value), table[name])
        for name, value in printed.items()
        if shape_of(value) != table[name]
    }
    assert not wrong, f"printed (kind, keys) vs {doc.name}: {wrong}"


async def test_redis_commands_print_what_docs_cli_md_says(
    redis_url: str,
    receiver: Receiver,
    postgres_empty_url: str,
    spawn_worker: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for name, value in worker_env(redis_url).items():
        monkeypatch.setenv(name, value)
    # The entry point configures logging for the process: here that would bind the
    # session's logging to this test's captured stderr.
    monkeypatch.setattr(logs, "configure", lambda *_args: None)

    def run_sync(*args: str) -> Any:
        capsys.readouterr()
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        return json.loads(out)  # fails on anything but one JSON document

    async def run(*args: str) -> Any:
        return await asyncio.to_thread(run_sync, *args)

    printed: dict[str, Any] = {}
    added = await run(
        "endpoint", "add", "--workspace", "ws_1", "--url", receiver.url(), "--events", "*",
        "--owner-email", "o@example.com",
    )  # fmt: skip
    printed["endpoint add"] = added
    ep = added["id"]
    printed["endpoint update"] = await run("endpoint", "update", ep, "--description", "docs")
    printed["endpoint show"] = await run("endpoint", "show", ep)
    printed["endpoint list"] = await run("endpoint", "list")
    printed["endpoint disable"] = await run("endpoint", "disable", ep)
    printed["endpoint enable"] = await run("endpoint", "enable", ep)
    printed["endpoint rotate-secret"] = await run("endpoint", "rotate-secret", ep)

    spawn_worker()
    printed["publish"] = await run("publish", "--workspace", "ws_1", "--type", "issue.created")
    events = tmp_path / "events.jsonl"
    events.write_text('{"type": "issue.updated", "workspace_id": "ws_1", "data": {}}\n')
    printed["publish --file"] = await run("publish", "--file", str(events))

    async def attempted() -> bool:
        printed["attempts"] = await run("attempts", "--endpoint", ep)
        return len(printed["attempts"]) == 2

    await wait_until(attempted, 30, interval=0.2, message="the worker did not deliver both")
    printed["send-test"] = await run("send-test", "--endpoint", ep)
    printed["status"] = await run("status")
    printed["replay"] = await run("replay", "--endpoint", ep)
    printed["endpoint delete"] = await run("endpoint", "delete", ep)
    # As the installed command runs, its log lines (one per migration) configured as they
    # are there: on stderr, stdout holding the JSON alone.
    migrated = await asyncio.to_thread(
        cli, redis_url, "migrate", "--json", DATABASE_URL=postgres_empty_url
    )
    printed["migrate"] = ok_json(migrated)

    assert printed["send-test"]["ok"] is True
    assert printed["endpoint add"]["secret"] != printed["endpoint show"]["secret"]
    assert_agrees(DOCS / "cli.md", printed)


async def accepted(url: str, body: Any, headers: dict[str, str] | None = None) -> None:
    """POST ``body`` to ``url``: it must be accepted (202)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=body, headers=headers) as response,
    ):
        assert response.status == 202, await response.text()


class Listen:
    """``python -m cli listen --json …`` in a subprocess, its stdout in a file."""

    def __init__(self, api_url: str, tmp_path: Path, *args: str) -> None:
        self.out = tmp_path / f"listen-{time.monotonic_ns()}.out"
        env = {**os.environ, "API_URL": api_url, "API_KEY": KEY, "LOG_LEVEL": "warning"}
        with self.out.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "listen", "--json", *args],
                cwd=PROJECT,
                env=env,
                stdout=out,
                stderr=subprocess.DEVNULL,
            )

    def lines(self) -> list[Any]:
        """Every line printed so far, each parsed: with --json each must be JSON."""
        return [json.loads(line) for line in self.out.read_text().splitlines()]

    async def printed(self, count: int) -> list[Any]:
        def enough() -> bool:
            assert self.process.poll() is None, self.out.read_text()
            return len(self.lines()) >= count

        await wait_until(enough, 20, message=f"listen did not print {count} lines")
        return self.lines()

    async def stop(self) -> list[Any]:
        """Ctrl-C; the lines printed in all."""
        await asyncio.to_thread(stop_process, self.process, 15, signal.SIGINT)
        assert self.process.returncode == 0
        return self.lines()


async def test_api_commands_print_what_docs_cli_api_md_says(
    api: Api,  # noqa: F811  # the fixture of tests/test_cli_api.py
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    async def run(*args: str) -> Any:
        return await asyncio.to_thread(api.json, *args)

    printed: dict[str, Any] = {}
    printed["event-types list"] = await run("event-types", "list")
    printed["users create"] = await run("users", "create", "u_ana", "--workspace", "ws_1")
    printed["users claim"] = await run("users", "claim", "u_ana", "--channel", "alerts")
    printed["users add-app"] = await run("users", "add-app", "u_ana", "--name", "Deployer")
    printed["users show"] = await run("users", "show", "u_ana")
    printed["portal-link"] = link = await run("portal-link", "--user", "u_ana")
    secret = await asyncio.to_thread(enrol_in_portal, link["url"], "u_ana")
    now = time.time()
    printed["users 2fa confirm"] = session = await run(
        "users", "2fa", "confirm", "u_ana", "--code", code_at(secret, now)
    )
    printed["verify"] = await run(
        "users", "2fa", "verify", "u_ana", "--code", code_at(secret, now + 30)
    )
    flags = ("u_ana", "--session", session["session"])

    printed["tokens create"] = made = await run("tokens", "create", *flags, "--name", "ci")
    tok = made["id"]
    printed["tokens list"] = await run("tokens", "list", *flags)
    printed["tokens show"] = await run("tokens", "show", *flags[:1], tok, *flags[1:])
    for action, extra in (("rename", ("--name", "ci-2")), ("disable", ()), ("enable", ())):
        printed[action] = await run("tokens", action, flags[0], tok, *flags[1:], *extra)
    printed["tokens webhook-url"] = url = await run(
        "tokens", "webhook-url", flags[0], tok, *flags[1:], "--module", "channel", "--name",
        "alerts", "--token", made["token"],
    )  # fmt: skip
    await accepted(url["url"], {"text": "hi"})  # a use of the token, for its usage
    printed["tokens usage"] = await run("tokens", "usage", flags[0], tok, *flags[1:])
    printed["tokens revoke"] = await run("tokens", "revoke", flags[0], tok, *flags[1:])

    printed["api-keys create"] = key = await run(
        "api-keys", "create", "--workspace", "ws_1", "--name", "ci", "--scope", "endpoints:read"
    )
    printed["api-keys list"] = await run("api-keys", "list")
    printed["api-keys revoke"] = await run("api-keys", "revoke", key["id"])

    forwarding = Listen(api.url, tmp_path, "--forward-to", receiver.url())
    printing = Listen(api.url, tmp_path, "--print-only")
    try:
        first, _ = await forwarding.printed(1), await printing.printed(1)
        event = {"type": "issue.created", "workspace_id": "local", "data": {}}
        await accepted(f"{api.url}/v1/events", event, {"Authorization": f"Bearer {KEY}"})
        await forwarding.printed(2)
        await printing.printed(2)
    finally:
        forwarded, shown = await forwarding.stop(), await printing.stop()
    printed["listen (first line)"] = first[0]
    printed["listen (each attempt)"] = forwarded[1]
    printed["listen --print-only (each message)"] = shown[1]
    printed["listen (stopped)"] = forwarded[2]
    assert len(forwarded) == len(shown) == 3
    assert forwarded[1]["status"] == 200
    assert shown[2] == {"deleted": shown[0]["endpoint_id"]}
    assert_agrees(DOCS / "cli-api.md", printed)
