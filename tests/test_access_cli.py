"""``cliq-webhooks api-keys`` and ``cliq-webhooks portal-link`` against a real API process
(``python -m producer`` on 127.0.0.1 with the private Redis): the command's entry point
runs in this process (a process per command would cost seconds each), its output read
from stdout and stderr as a user reads it."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_api import spawn_api

from cli.main import main
from producer import logs

from harness.polling import wait_until_sync
from harness.redis_server import free_port

OPERATOR_KEY = "access-cli-key-0123456789"


@pytest.fixture
def api_url(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """``python -m producer`` on a free port with an operator key; its base URL."""
    port = free_port()
    log_path = tmp_path / "api.log"
    env = {"REDIS_URL": redis_url, "PORT": str(port), "API_KEYS": OPERATOR_KEY}
    process = spawn_api(env, log_path)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_until_sync(ready, 20, message="the API did not become ready")
        yield base
    finally:
        process.kill()
        process.wait()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    api_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """``cliq-webhooks ARGS`` run in this process (its parser reads API_URL and API_KEY)."""

    # The entry point configures logging for the process: here that would bind the
    # session's logging to this test's captured stderr, closed after it.
    monkeypatch.setattr(logs, "configure", lambda *_args: None)

    def run(*args: str, key: str = OPERATOR_KEY, url: str = api_url) -> Result:
        monkeypatch.setenv("API_URL", url)
        monkeypatch.setenv("API_KEY", key)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def ok_json(result: Result) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_keys_are_made_listed_and_revoked_from_the_command_line(cli: Callable[..., Result]) -> None:
    made = ok_json(
        cli("api-keys", "create", "--json", "--workspace", "ws_cli", "--name", "deploy",
            "--scope", "endpoints:read,events:publish")
    )  # fmt: skip
    assert made["scopes"] == ["endpoints:read", "events:publish"]
    assert made["key"].startswith(made["id"] + ".")
    listed = ok_json(cli("api-keys", "list", "--json", "--workspace", "ws_cli"))
    assert [k["id"] for k in listed] == [made["id"]]
    assert "key" not in listed[0]
    table = cli("api-keys", "list")
    assert table.returncode == 0, table.stderr
    assert "deploy" in table.stdout
    assert "never" in table.stdout  # not used yet
    # The new key works for its scope (and is refused the operator's routes).
    refused = cli("api-keys", "list", key=made["key"])
    assert refused.returncode == 2
    assert "lacks the scope" in refused.stderr
    assert "'operator'" in refused.stderr
    ok_json(cli("api-keys", "revoke", "--json", made["id"]))
    assert ok_json(cli("api-keys", "list", "--json")) == []
    again = cli("api-keys", "revoke", made["id"])
    assert again.returncode == 2
    assert "No API key with id" in again.stderr


def test_bad_input_names_the_field(cli: Callable[..., Result]) -> None:
    bad = cli("api-keys", "create", "--workspace", "ws", "--name", "x", "--scope", "root")
    assert bad.returncode == 2
    assert "scopes" in bad.stderr
    assert "root" in bad.stderr
    both = cli("portal-link", "--workspace", "ws", "--user", "u")
    assert both.returncode == 2
    assert "one of --workspace or --user" in both.stderr


def test_portal_links_from_the_command_line(cli: Callable[..., Result], api_url: str) -> None:
    link = ok_json(
        cli("portal-link", "--json", "--workspace", "ws_cli", "--read-only", "--ttl", "60")
    )
    assert link["url"].startswith(f"{api_url}/ui/portal/pl_")
    assert link["read_only"] is True
    shown = cli("portal-link", "--workspace", "ws_cli")
    assert shown.returncode == 0, shown.stderr
    assert "/ui/portal/pl_" in shown.stdout
    assert "works once" in shown.stdout
    unknown = cli("portal-link", "--user", "nobody")
    assert unknown.returncode == 2
    assert "No user 'nobody'" in unknown.stderr


def test_an_unreachable_api_exits_1(cli: Callable[..., Result]) -> None:
    gone = cli("api-keys", "list", url=f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 1
    assert "cannot reach the API" in gone.stderr
