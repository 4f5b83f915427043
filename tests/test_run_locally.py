"""Issue 19's safe defaults and `cliq-webhooks api`, as real processes: the API on
loopback unless told otherwise, refusing to run open unless ALLOW_NO_AUTH=1, `GET /`
sending a browser to the dashboard whose URL its start-up line prints; deploy/ opening
every interface explicitly; the outbox an absolute path; an empty REDIS_URL named."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from cli.base import redis_notice
from cli.main import build_parser
from producer.http.state import SERVE_OPTIONS, ApiSettings
from producer.settings import FALLBACK_REDIS_URL, ProducerSettings
from worker.settings import WorkerSettings

from harness.polling import wait_until
from harness.redis_server import free_port
from support import PROJECT, WorkerProcess, wait_for_api, worker_env

KEY = "test-key-0123456789abcdef"
CLI = [sys.executable, "-m", "cli"]


def log_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines written to ``path`` so far."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_the_api_refuses_to_start_without_keys_unless_allowed(redis_url: str) -> None:
    refused = subprocess.run(
        [*CLI, "api"],
        env={**os.environ, "REDIS_URL": redis_url, "API_KEYS": "", "PORT": str(free_port())},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "API_KEYS is empty" in refused.stderr
    assert "ALLOW_NO_AUTH=1" in refused.stderr


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``cliq-webhooks api`` with an API key and the default API_HOST, on a free port."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PORT": str(port), "API_KEYS": KEY}
    env.update(LOG_FORMAT="json", SHUTDOWN_GRACE="5")
    env.pop("API_HOST", None)
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*CLI, "api"], env=env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process, port, log_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_cliq_webhooks_api_serves_on_loopback_and_sends_browsers_to_the_dashboard(
    api: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, log_path = api
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        await wait_for_api(http, base, process, log_path, 30)
        # No key: the root only redirects, to a dashboard that asks for its own sign-in.
        async with http.get(f"{base}/", allow_redirects=False) as response:
            assert response.status == 302
            assert response.headers["Location"] == "/ui/"
        async with http.get(f"{base}/v1/endpoints") as response:
            assert response.status == 401  # everything else still needs the key
    (starting,) = [line for line in log_lines(log_path) if line["event"] == "api_starting"]
    assert starting["host"] == "127.0.0.1"
    assert starting["dashboard_url"] == f"http://127.0.0.1:{port}/ui/"
    # Listening on loopback only: the local address of every listening socket on the port.
    if shutil.which("ss"):
        ss = ["ss", "-Hltn", f"sport = :{port}"]
        listening = await asyncio.to_thread(
            subprocess.run, ss, capture_output=True, text=True, timeout=10
        )
        local = {line.split()[3] for line in listening.stdout.splitlines()}
        assert local == {f"127.0.0.1:{port}"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0


def test_the_dashboard_url_names_a_reachable_host() -> None:
    assert ApiSettings(api_host="0.0.0.0", port=9000).dashboard_url == "http://127.0.0.1:9000/ui/"
    assert ApiSettings(api_host="::1", port=9000).dashboard_url == "http://[::1]:9000/ui/"
    assert ApiSettings(api_host="10.1.2.3").dashboard_url == "http://10.1.2.3:8080/ui/"


def test_hosts_default_to_loopback_and_the_deploy_files_open_every_interface() -> None:
    assert ApiSettings.from_env({}).api_host == "127.0.0.1"
    assert WorkerSettings.from_env({}).metrics_host == "127.0.0.1"
    assert ApiSettings.from_env({}).allow_no_auth is False

    deploy = PROJECT / "deploy"
    systemd = dict(
        line.split("=", 1)
        for line in (deploy / "systemd" / "cliq-webhooks.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    compose = yaml.safe_load((deploy / "docker" / "compose.yaml").read_text())
    config_map = next(yaml.safe_load_all((deploy / "kubernetes" / "config.yaml").read_text()))
    for env in (systemd, compose["x-app"]["environment"], config_map["data"]):
        assert (env["API_HOST"], env["METRICS_HOST"]) == ("0.0.0.0", "0.0.0.0")
    dockerfile = (deploy / "docker" / "Dockerfile").read_text()
    assert "API_HOST=0.0.0.0" in dockerfile
    assert "METRICS_HOST=0.0.0.0" in dockerfile


def test_the_procfile_runs_the_one_cli() -> None:
    procfile = dict(
        line.split(": ", 1) for line in (PROJECT / "Procfile").read_text().splitlines() if line
    )
    assert procfile["web"] == "cliq-webhooks api"
    assert procfile["worker"].endswith("cliq-webhooks worker")
    assert procfile["log-writer"].endswith("cliq-webhooks log-writer")


def test_an_empty_redis_url_says_which_redis_is_used() -> None:
    notice = ProducerSettings.from_env({"REDIS_URL": ""}).redis_notice
    assert notice is not None
    assert FALLBACK_REDIS_URL in notice
    assert ProducerSettings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"}).redis_notice is None
    # The CLI's Redis commands say it too (the worker logs it; the demo starts its own
    # Redis; migrate and the API's commands use none). Parsed only: nothing connects.
    empty = ProducerSettings.from_env({"REDIS_URL": ""})
    parser = build_parser()
    for command in (["status"], ["endpoint", "list"], ["publish", "--file", "x.jsonl"]):
        assert redis_notice(parser.parse_args(command), empty) == notice, command
    for command in (["worker"], ["log-writer"], ["demo"], ["migrate"], ["event-types", "list"]):
        assert redis_notice(parser.parse_args(command), empty) is None, command
    assert redis_notice(parser.parse_args(["status"]), ProducerSettings()) is not None
    named = ProducerSettings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert redis_notice(parser.parse_args(["status"]), named) is None


async def test_a_relative_outbox_is_made_absolute_and_logged(
    redis_url: str, tmp_path: Path
) -> None:
    assert WorkerSettings.from_env({"NOTIFY_OUTBOX": "mail"}).notify_outbox == os.path.join(
        os.getcwd(), "mail"
    )
    # A real worker, started from the project folder (WorkerProcess's cwd).
    worker = WorkerProcess(worker_env(redis_url, NOTIFY_OUTBOX="outbox-i19"), tmp_path / "w.log")
    try:

        def started() -> list[dict[str, Any]]:
            return [
                line for line in log_lines(worker.log_path) if line["event"] == "worker_started"
            ]

        await wait_until(lambda: bool(started()), 30, message="the worker did not start")
        assert started()[0]["notify_outbox"] == str(PROJECT / "outbox-i19"), worker.log_text()
        # Only its start-up line matters here: the teardown ends it (SIGKILL, by PID).
    finally:
        worker.kill()


def test_the_api_command_is_listed_and_takes_every_api_setting() -> None:
    listed = subprocess.run(
        [*CLI, "--help"], cwd=PROJECT, capture_output=True, text=True, timeout=60, check=True
    )
    assert "api" in listed.stdout
    helped = subprocess.run(
        [*CLI, "api", "--help"],
        cwd=PROJECT,
        env={**os.environ, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for option in SERVE_OPTIONS:
        assert f"env {option.env}" in helped.stdout
