"""Issue 19: ``cliq-webhooks demo`` tells a readable story (no log lines), removes its
temporary folders, and with ``--keep`` leaves the API and its dashboard running,
printing their URL and a sign-in key. Real subprocesses, each with a private Redis
of its own (REDIS_URL unset) and a private TMPDIR."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from harness.polling import wait_until
from support import PROJECT

# Each demo starts its own Redis and PostgreSQL: slower than the suite's default limit
# on a loaded machine.
pytestmark = pytest.mark.timeout(180)


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(TMPDIR=str(tmp_path), LOG_FORMAT="json", LOG_LEVEL="info")
    return env


def test_the_demo_tells_a_story_without_log_lines_and_cleans_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "demo", "--events", "6"],
        env=demo_env(tmp_path),
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Demo finished: everything behaved as documented." in result.stdout
    assert "is now FAILING" in result.stdout
    output = (result.stdout + result.stderr).splitlines()
    assert [line for line in output if line.lstrip().startswith("{")] == []
    # The email reads as its recipient sees it: decoded, no MIME plumbing, no word cut by
    # a quoted-printable soft line break ("=" at a line's end).
    assert "Subject: [cliq-webhooks] Webhook endpoint" in result.stdout
    assert "Content-Transfer-Encoding" not in result.stdout
    assert [line for line in output if line.endswith("=")] == []
    assert list(tmp_path.iterdir()) == []  # the private Redis's and the outbox's folders


@pytest.fixture
def kept_demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``demo --keep`` in a subprocess, its output in a file beside ``tmp_path``."""
    out = tmp_path.parent / f"{tmp_path.name}-demo.out"
    with out.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "demo", "--events", "4", "--keep"],
            env=demo_env(tmp_path),
            cwd=PROJECT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, out
    finally:
        # As a user would end it, so that it stops its private servers and removes
        # their folders; killed only if it does not (they then end with it: lifeline.py).
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def leftovers(folder: Path) -> list[Path]:
    return list(folder.iterdir())


async def test_demo_keep_leaves_the_api_and_dashboard_running(
    kept_demo: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    process, out = kept_demo

    def printed() -> re.Match[str] | None:
        assert process.poll() is None, out.read_text()
        return re.search(r"Dashboard: (\S+)\nSign-in key: (\S+)", out.read_text())

    await wait_until(lambda: printed() is not None, 90, interval=0.2, message="no URL printed")
    found = printed()
    assert found is not None
    url, key = found.groups()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ui/", url)
    base = url.removesuffix("/ui/")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/", allow_redirects=False) as response:
            assert (response.status, response.headers["Location"]) == (302, "/ui/")
        auth = {"Authorization": f"Bearer {key}"}
        async with http.get(f"{base}/v1/endpoints", headers=auth) as response:
            assert response.status == 200
            assert len((await response.json())["items"]) == 2  # the demo's endpoints
        async with http.get(f"{base}/v1/endpoints") as response:
            assert response.status == 401
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, 60) == 0, out.read_text()
    assert await asyncio.to_thread(leftovers, tmp_path) == []


def accepts(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def remove_postgres_folders(pid: int) -> None:
    """What a killed demo would have removed: as root its PostgreSQL's folder is in /tmp
    (worker/localpostgres.py), named after the demo's process."""
    for folder in Path("/tmp").glob(f"cliq-pg-{pid}-*"):
        shutil.rmtree(folder)


async def test_a_killed_demo_takes_its_private_servers_with_it(
    kept_demo: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, out = kept_demo
    started = re.compile(
        r"private Redis on redis://127\.0\.0\.1:(\d+)/.*?\n"
        r"(?:Started a private PostgreSQL on 127\.0\.0\.1:(\d+)|PostgreSQL is not installed)",
        re.DOTALL,
    )

    def servers() -> re.Match[str] | None:
        assert process.poll() is None, out.read_text()
        return started.search(out.read_text())

    await wait_until(lambda: servers() is not None, 90, interval=0.2, message="no servers")
    found = servers()
    assert found is not None
    ports = [int(port) for port in found.groups() if port is not None]
    assert all(accepts(port) for port in ports), ports
    process.kill()  # SIGKILL: the demo cannot stop them itself
    await asyncio.to_thread(process.wait, 10)

    def all_gone() -> bool:
        return not any(accepts(port) for port in ports)

    await wait_until(all_gone, 20, interval=0.2, message=f"servers outlived the demo: {ports}")
    await asyncio.to_thread(remove_postgres_folders, process.pid)
