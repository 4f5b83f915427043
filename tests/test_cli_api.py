"""Issue 19: ``cliq-webhooks users|tokens|event-types`` cover what the API does, against a
real API process (``python -m producer``) on the private Redis.

The commands run in this process (``cli.main.main``: a subprocess costs seconds of
imports each, and these tests run dozens); one runs as a real subprocess, reading the
URL and key from the environment.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_api import spawn_api
from test_cli import cli

from cli.main import main
from producer.events import BUILTIN_EVENT_TYPES
from producer.tokens.totp import code_at

from harness.redis_server import free_port
from support import wait_for_api

KEY = "cli-api-key-0123456789abcdef"


@dataclass(frozen=True)
class Ran:
    """What one command did: its exit status and output."""

    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Api:
    """A running API process and how the CLI reaches it."""

    url: str
    redis_url: str
    capsys: pytest.CaptureFixture[str]

    def run(self, *args: str, key: str = KEY, url: str | None = None) -> Ran:
        """``cliq-webhooks ARGS --api-url … --api-key …`` in this process."""
        self.capsys.readouterr()  # drop anything printed before
        try:
            code = main([*args, "--api-url", url or self.url, "--api-key", key])
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        out = self.capsys.readouterr()
        return Ran(code, out.out, out.err)

    def json(self, *args: str) -> Any:
        """The ``--json`` output of a command that must succeed."""
        ran = self.run(*args, "--json")
        assert ran.returncode == 0, ran.stderr
        return json.loads(ran.stdout)


@pytest.fixture
def api(redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Api]:
    """``python -m producer`` with an API key, on a free port, stopped by its own PID."""
    port = free_port()
    log_path = tmp_path / "api.log"
    process = spawn_api(
        {"REDIS_URL": redis_url, "PORT": str(port), "API_KEYS": KEY, "SHUTDOWN_GRACE": "5"},
        log_path,
    )
    base = f"http://127.0.0.1:{port}"

    async def ready() -> None:
        async with aiohttp.ClientSession() as session:
            await wait_for_api(session, base, process, log_path, 30)

    try:
        asyncio.run(ready())
        yield Api(base, redis_url, capsys)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_event_types_list_reads_the_catalogue(api: Api) -> None:
    # Once as the installed command would run, the URL and key from the environment.
    ran: subprocess.CompletedProcess[str] = cli(
        api.redis_url, "event-types", "list", "--json", API_URL=api.url, API_KEY=KEY
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == api.json("event-types", "list")
    listed = api.json("event-types", "list")
    assert [item["type"] for item in listed] == sorted(BUILTIN_EVENT_TYPES)
    assert all(item["example"]["type"] == item["type"] for item in listed)
    table = api.run("event-types", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["TYPE", "DESCRIPTION"]
    assert "issue.created" in table.stdout
    assert f"{len(BUILTIN_EVENT_TYPES)} event types" in table.stdout


def test_the_api_key_and_url_are_required_to_be_right(api: Api) -> None:
    wrong_key = api.run("event-types", "list", key="not-the-key-0123456789")
    assert wrong_key.returncode == 2
    assert "error:" in wrong_key.stderr
    unreachable = api.run("event-types", "list", url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == 1
    assert "cannot reach the API at http://127.0.0.1:" in unreachable.stderr


def test_users_create_show_move_and_claim(api: Api) -> None:
    created = api.run("users", "create", "u_ana", "--workspace", "ws_1")
    assert created.returncode == 0, created.stderr
    assert "user u_ana created" in created.stdout
    assert "totp_enrolled  no" in created.stdout
    moved = api.json("users", "create", "u_ana", "--workspace", "ws_2")
    assert moved["workspace_id"] == "ws_2"
    assert api.json("users", "claim", "u_ana", "--channel", "alerts")["kind"] == "channel"
    api.json("users", "claim", "u_ana", "--channel", "deploys")
    api.json("users", "claim", "u_ana", "--bot", "helper")
    shown = api.json("users", "show", "u_ana")
    assert (shown["channels"], shown["bots"]) == (["alerts", "deploys"], ["helper"])
    table = api.run("users", "show", "u_ana")
    assert "channels       alerts, deploys" in table.stdout
    assert "owns 3 resources" in table.stdout
    created_line = next(line for line in table.stdout.splitlines() if line.startswith("created"))
    assert created_line.split()[1].endswith("Z")  # an ISO 8601 UTC time
    app = api.json("users", "add-app", "u_ana", "--name", "Deployer")
    assert app["sandbox_appkey"]
    assert app["marketplace_appkey"]

    api.json("users", "create", "u_bo", "--workspace", "ws_1")
    taken = api.run("users", "claim", "u_bo", "--channel", "alerts")
    assert taken.returncode == 2
    assert "alerts" in taken.stderr
    missing = api.run("users", "show", "u_nobody")
    assert missing.returncode == 2
    assert "u_nobody" in missing.stderr
    bad = api.run("users", "create", "u_cy", "--workspace", "not a workspace!")
    assert bad.returncode == 2
    assert "workspace" in bad.stderr


def enrol_in_portal(link: str, user_id: str) -> str:
    """What the user does with their portal link: open it, set up TOTP; the secret shown."""
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with browser.open(link, timeout=10) as response:
        page = response.read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None, page
    base = link.split("/ui/", 1)[0]
    form = urllib.parse.urlencode({"csrf": csrf[1]}).encode()
    request = urllib.request.Request(
        f"{base}/ui/tokens/{user_id}/2fa/enroll", data=form, headers={"Origin": base}
    )
    with browser.open(request, timeout=10) as response:
        page = response.read().decode()
    secret = re.search(r'id="totp-secret" class="secret" value="([A-Z2-7]+)"', page)
    assert secret is not None, page
    return secret[1]


def test_tokens_need_the_second_factor_and_cover_the_api(api: Api) -> None:
    api.json("users", "create", "u_dee", "--workspace", "ws_1")
    assert api.run("users", "2fa", "enroll", "u_dee").returncode == 2  # no such step
    secret = enrol_in_portal(api.json("portal-link", "--user", "u_dee")["url"], "u_dee")
    now = time.time()
    session = api.json("users", "2fa", "confirm", "u_dee", "--code", code_at(secret, now))
    assert session["header"] == "X-Cliq-2FA-Session"
    flags = ("--session", session["session"])

    no_session = api.run("tokens", "list", "u_dee", "--session", "nope")
    assert no_session.returncode == 2
    assert "Re-authenticate" in no_session.stderr
    # --code opens a session of its own (the next step's code: each code works once).
    made = api.json(
        "tokens", "create", "u_dee", "--name", "ci", "--code", code_at(secret, now + 30)
    )
    assert made["token"]
    assert made["name"] == "ci"
    replayed = api.run("tokens", "list", "u_dee", "--code", code_at(secret, now + 30))
    assert replayed.returncode == 2
    assert "already used" in replayed.stderr

    second = api.run("tokens", "create", "u_dee", "--name", "deploy", *flags)
    assert second.returncode == 0, second.stderr
    assert "The token is shown only now" in second.stdout
    assert "invocations      0 invocations" in second.stdout
    assert "last_invoked_at  never" in second.stdout
    listed = api.json("tokens", "list", "u_dee", *flags)
    assert [t["name"] for t in listed] == ["ci", "deploy"]
    assert all("token" not in t for t in listed)  # values only at creation
    table = api.run("tokens", "list", "u_dee", *flags).stdout
    assert table.splitlines()[0].split() == [
        "ID",
        "NAME",
        "STATUS",
        "USES",
        "LAST",
        "USED",
        "CREATED",
    ]
    assert "2 tokens of at most" in table

    token_id = made["id"]
    assert (
        api.json("tokens", "rename", "u_dee", token_id, "--name", "ci-2", *flags)["name"] == "ci-2"
    )
    assert api.json("tokens", "disable", "u_dee", token_id, *flags)["status"] == "disabled"
    enabled = api.run("tokens", "enable", "u_dee", token_id, *flags)
    assert f"{token_id} is now active" in enabled.stdout
    assert api.json("tokens", "show", "u_dee", token_id, *flags)["name"] == "ci-2"
    assert api.json("tokens", "usage", "u_dee", token_id, "--limit", "5", *flags) == []
    assert "0 uses, newest first" in api.run("tokens", "usage", "u_dee", token_id, *flags).stdout
    api.json("users", "claim", "u_dee", "--channel", "builds")
    url = api.json(
        "tokens", "webhook-url", "u_dee", token_id, "--module", "channel", "--name", "builds",
        "--token", made["token"], *flags,
    )  # fmt: skip
    assert url["complete"] is True
    assert made["token"] in url["url"]

    revoked = api.json("tokens", "revoke", "u_dee", token_id, *flags)
    assert revoked == {"id": token_id, "revoked": True}
    gone = api.run("tokens", "show", "u_dee", token_id, *flags)
    assert gone.returncode == 2
    assert [t["name"] for t in api.json("tokens", "list", "u_dee", *flags)] == ["deploy"]
    usage_error = api.run("tokens", "list", "u_dee")  # neither --session nor --code
    assert usage_error.returncode == 2
    assert "--session" in usage_error.stderr
