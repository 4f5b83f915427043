"""``cliq-webhooks api-keys`` and ``cliq-webhooks portal-link`` against a real API process
(``python -m producer`` on 127.0.0.1 with the private Redis), run as the user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_api import spawn_api

from harness.redis_server import free_port
from support import PROJECT, wait_for_api

OPERATOR_KEY = "access-cli-key-0123456789"


@pytest.fixture
async def api_url(redis_url: str, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    log_path = tmp_path / "api.log"
    env = {"REDIS_URL": redis_url, "PORT": str(port), "API_KEYS": OPERATOR_KEY}
    process = spawn_api(env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_for_api(session, base, process, log_path, 20)
        yield base
    finally:
        process.kill()
        process.wait()


def cli(api_url: str, *args: str, key: str = OPERATOR_KEY) -> subprocess.CompletedProcess[str]:
    """``cliq-webhooks ARGS`` with the API's URL and a key in the environment."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, "CLIQ_API_URL": api_url, "CLIQ_API_KEY": key},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_keys_are_made_listed_and_revoked_from_the_command_line(api_url: str) -> None:
    made = ok_json(
        cli(api_url, "api-keys", "create", "--json", "--workspace", "ws_cli", "--name", "deploy",
            "--scope", "endpoints:read,events:publish")
    )  # fmt: skip
    assert made["scopes"] == ["endpoints:read", "events:publish"]
    assert made["key"].startswith(made["id"] + ".")
    listed = ok_json(cli(api_url, "api-keys", "list", "--json", "--workspace", "ws_cli"))
    assert [k["id"] for k in listed] == [made["id"]]
    assert "key" not in listed[0]
    table = cli(api_url, "api-keys", "list")
    assert table.returncode == 0, table.stderr
    assert "deploy" in table.stdout
    assert "never" in table.stdout  # not used yet
    # The new key works for its scope (and is refused the operator's routes).
    refused = cli(api_url, "api-keys", "list", key=made["key"])
    assert refused.returncode == 2
    assert "403" in refused.stderr
    assert "'operator'" in refused.stderr
    ok_json(cli(api_url, "api-keys", "revoke", "--json", made["id"]))
    assert ok_json(cli(api_url, "api-keys", "list", "--json")) == []
    again = cli(api_url, "api-keys", "revoke", made["id"])
    assert again.returncode == 2
    assert "404" in again.stderr


async def test_bad_input_names_the_field(api_url: str) -> None:
    bad = cli(api_url, "api-keys", "create", "--workspace", "ws", "--name", "x", "--scope", "root")
    assert bad.returncode == 2
    assert "scopes" in bad.stderr
    assert "root" in bad.stderr
    both = cli(api_url, "portal-link", "--workspace", "ws", "--user", "u")
    assert both.returncode == 2
    assert "one of --workspace or --user" in both.stderr


async def test_portal_links_from_the_command_line(api_url: str) -> None:
    link = ok_json(
        cli(api_url, "portal-link", "--json", "--workspace", "ws_cli", "--read-only", "--ttl", "60")
    )
    assert link["url"].startswith(f"{api_url}/ui/portal/pl_")
    assert link["read_only"] is True
    shown = cli(api_url, "portal-link", "--workspace", "ws_cli")
    assert shown.returncode == 0, shown.stderr
    assert "/ui/portal/pl_" in shown.stdout
    assert "works once" in shown.stdout
    unknown = cli(api_url, "portal-link", "--user", "nobody")
    assert unknown.returncode == 2
    assert "No user 'nobody'" in unknown.stderr


async def test_an_unreachable_api_exits_1(api_url: str) -> None:
    gone = cli(f"http://127.0.0.1:{free_port()}", "api-keys", "list")
    assert gone.returncode == 1
    assert "cannot reach the API" in gone.stderr
