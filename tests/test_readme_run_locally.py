"""The README's "Run it locally" block, run as written: Redis, PostgreSQL, the schema, the
API and two workers come up, `GET /` sends a browser to the dashboard and the printed key
signs in. Only its ports and folders are replaced by free ones (and, as root, `initdb` and
`pg_ctl` run as the `postgres` account, as they refuse root); the venv is the tests' own."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.polling import wait_until_sync
from harness.redis_server import free_port
from support import PROJECT

ROOT = os.geteuid() == 0


def readme_block() -> str:
    """The shell block of the README's "Run it locally" section."""
    section = (PROJECT / "README.md").read_text().split("### Run it locally", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_block_starts_what_it_says_and_stops_as_the_prose_says() -> None:
    block = readme_block()
    assert block.startswith("make .venv/bin/cliq-webhooks && . .venv/bin/activate\n")
    for command in ("redis-server", "initdb", "pg_ctl", "cliq-webhooks migrate", "/ui/"):
        assert command in block
    assert block.count("cliq-webhooks api &") == 1
    assert block.count("cliq-webhooks worker --metrics-port") == 2
    prose = (PROJECT / "README.md").read_text().split("### Run it locally", 1)[1]
    assert "kill %1 %2 %3" in prose.split("```sh", 1)[0]  # the three background jobs


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str | None]:
    """The status of a GET (redirects not followed) and its ``Location``."""
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.headers.get("Location")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def answers(url: str) -> bool:
    try:
        return get(url)[0] == 200
    except OSError:
        return False


@pytest.mark.timeout(240)
def test_the_run_it_locally_block_works_as_written() -> None:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindirs or not shutil.which("redis-server"):
        pytest.skip("needs Debian's postgresql and redis-server (make system-deps)")
    ports = {name: free_port() for name in ("6380", "5433", "8080", "9464", "9465")}
    # As root, the server's account must reach its folder: one in /tmp, not pytest's.
    work = Path(tempfile.mkdtemp(prefix="cliq-readme-", dir="/tmp"))
    work.chmod(0o777)
    pg_dir = str(work / "pg")
    script = readme_block().replace("/tmp/cliq-pg", pg_dir)
    for written, port in ports.items():
        script = script.replace(written, str(port))
    script = script.replace(
        "make .venv/bin/cliq-webhooks && . .venv/bin/activate",
        f"export PATH={Path(sys.executable).parent}:$PATH",
    )
    if ROOT:
        script = (
            'as_postgres() { runuser -u postgres -- "$(type -P "$1")" "${@:2}"; }\n'
            'initdb() { as_postgres initdb "$@"; }\npg_ctl() { as_postgres pg_ctl "$@"; }\n'
            + script
        )
    log_path = work / "block.log"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    # The API's port is its default in the block (8080): the one setting given here.
    env.update(LOG_FORMAT="json", PORT=str(ports["8080"]))
    with log_path.open("wb") as log:
        shell = subprocess.Popen(
            ["bash", "-ec", script],
            cwd=work,  # the workers' outbox lands here
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the API and workers share its group: ended by it
        )
    api = f"http://127.0.0.1:{ports['8080']}"
    try:
        assert shell.wait(timeout=120) == 0, log_path.read_text()
        printed = log_path.read_text()
        assert "schema at version" in printed
        found = re.search(rf"open {re.escape(api)}/ui/ and sign in with (\S+)", printed)
        assert found is not None, printed
        urls = [f"{api}/healthz"] + [
            f"http://127.0.0.1:{ports[p]}/metrics" for p in ("9464", "9465")
        ]
        wait_until_sync(
            lambda: all(answers(url) for url in urls), 60, 0.2, message=log_path.read_text()
        )
        assert get(f"{api}/") == (302, "/ui/")
        assert get(f"{api}/v1/endpoints", {"Authorization": f"Bearer {found.group(1)}"})[0] == 200
        assert get(f"{api}/v1/endpoints")[0] == 401
        assert f'"dashboard_url":"{api}/ui/"' in log_path.read_text()
    finally:
        if shell.poll() is None:
            shell.kill()
        with contextlib.suppress(ProcessLookupError):  # the block's background jobs
            os.killpg(shell.pid, signal.SIGTERM)  # its session's group, by the shell's PID
        subprocess.run(
            ["redis-cli", "-p", str(ports["6380"]), "shutdown", "nosave"],
            capture_output=True,
            timeout=30,
        )
        pg_ctl = [os.path.join(bindirs[-1], "pg_ctl"), "-D", pg_dir, "-m", "immediate", "stop"]
        if ROOT:
            pg_ctl = ["runuser", "-u", "postgres", "--", *pg_ctl]
        subprocess.run(pg_ctl, capture_output=True, timeout=60)
        shutil.rmtree(work, ignore_errors=True)
