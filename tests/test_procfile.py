"""The Procfile under honcho: `web` on $PORT, several workers and a log-writer each on its
own $PORT."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from harness.polling import wait_until
from support import PROJECT, worker_env


def free_base_port() -> int:
    """A port P with P, P+100, P+101 and P+200 free: honcho gives web P, worker.N
    P+100+N-1, log-writer.1 P+200."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base: int = sock.getsockname()[1]
        if base + 200 > 65535:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in (base + 100, base + 101, base + 200):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base


def start_honcho(base: int, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``honcho start -c web=1,worker=2,log-writer=1`` on the project's Procfile, ports
    from ``base``."""
    honcho = str(Path(sys.executable).parent / "honcho")
    where = ["-f", str(PROJECT / "Procfile"), "-d", str(PROJECT), "-e", "/dev/null"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [honcho, *where, "start", "-p", str(base), "-c", "web=1,worker=2,log-writer=1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the teardown ends exactly it
        )


async def test_honcho_runs_the_api_two_workers_and_a_log_writer_each_on_its_own_port(
    redis_url: str, tmp_path: Path
) -> None:
    base = free_base_port()
    env = {
        **os.environ,
        **worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox")),
        "API_HOST": "127.0.0.1",
        "METRICS_HOST": "127.0.0.1",
        "ALLOW_NO_AUTH": "1",  # no API_KEYS here
        # The venv's python for the Procfile's `python -m …`.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # As in production: each worker and log-writer takes honcho's $PORT. Without
    # DATABASE_URL the log-writer has nothing to write, and idles.
    del env["METRICS_PORT"]
    process = start_honcho(base, env, tmp_path / "honcho.log")
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy(port: int) -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            for port in (base, base + 100, base + 101, base + 200):
                await wait_until(
                    lambda port=port: healthy(port),
                    30,
                    interval=0.2,
                    message=f"nothing healthy on {port}:\n{(tmp_path / 'honcho.log').read_text()}",
                )
            async with http.get(f"http://127.0.0.1:{base + 101}/metrics") as response:
                assert "cliq_worker_up 1.0" in await response.text()
            async with http.get(f"http://127.0.0.1:{base + 200}/metrics") as response:
                assert "cliq_log_outbox_entries" in await response.text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) in (0, -signal.SIGTERM, 143)
    finally:
        if process.poll() is None:
            # honcho stops its children on SIGTERM; a SIGKILL first would orphan them
            # (each runs in a session of its own), still working on the test's Redis.
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
