"""The seed's Express receiver (``tests/node/receiver.js``) run as a real Node.js process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from .polling import wait_until

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
RECEIVER_JS = NODE_DIR / "receiver.js"
INSTALL_HINT = "install Node.js (>= 18) and run `npm ci --prefix tests/node`"


class NodeReceiverUnavailable(RuntimeError):
    """``node`` or the receiver's ``node_modules`` is missing."""


def find_node() -> str:
    """The ``node`` binary, after checking that the receiver's dependencies are installed."""
    node = shutil.which("node")
    if node is None:
        raise NodeReceiverUnavailable(f"`node` is not on PATH: {INSTALL_HINT}")
    if not (NODE_DIR / "node_modules" / "express" / "package.json").is_file():
        raise NodeReceiverUnavailable(
            f"express is not installed in {NODE_DIR / 'node_modules'}: {INSTALL_HINT}"
        )
    return node


class NodeReceiver:
    """``node receiver.js`` with ``CLIQ_WEBHOOK_SECRET`` set, on a port it picks itself.

    The process prints its port as the first stdout line (read from a log file, so its
    later output can never fill a pipe); ``stop()`` ends it by its own PID.
    """

    def __init__(
        self,
        secret: str,
        start_timeout_s: float = 15.0,
        script: Path = RECEIVER_JS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``script``: another receiver (it resolves ``express`` through ``NODE_PATH``);
        ``env``: more variables for it."""
        self.secret = secret
        self.start_timeout_s = start_timeout_s
        self.script = script
        self.extra_env = dict(env or {})
        self.port = 0
        self._dir = Path(tempfile.mkdtemp(prefix="cliq-test-node-"))
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def stdout_file(self) -> Path:
        return self._dir / "stdout.log"

    @property
    def stderr_file(self) -> Path:
        return self._dir / "stderr.log"

    @property
    def base_url(self) -> str:
        if self.port == 0:
            raise RuntimeError("node receiver has not been started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The seed's endpoint: ``http://127.0.0.1:PORT/webhooks/cliq``."""
        return self.base_url + "/webhooks/cliq"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("node receiver is not running")
        return self._process.pid

    def output(self) -> str:
        """Everything the process printed so far (stdout, then stderr)."""
        parts = []
        for path in (self.stdout_file, self.stderr_file):
            with contextlib.suppress(OSError):
                parts.append(f"--- {path.name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    async def start(self) -> None:
        node = find_node()
        env = {
            **os.environ,
            "NODE_PATH": str(NODE_DIR / "node_modules"),
            **self.extra_env,
            "CLIQ_WEBHOOK_SECRET": self.secret,
        }
        with self.stdout_file.open("wb") as out, self.stderr_file.open("wb") as err:
            process = await asyncio.to_thread(
                subprocess.Popen,
                [node, str(self.script)],
                cwd=NODE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self._process = process

        def port_printed() -> bool:
            return process.poll() is not None or self.stdout_file.read_bytes().count(b"\n") > 0

        try:
            await wait_until(
                port_printed,
                self.start_timeout_s,
                message=f"node receiver (pid {process.pid}) did not print its port",
            )
            if process.poll() is not None:
                raise RuntimeError(
                    f"node receiver exited with code {process.returncode}\n{self.output()}"
                )
            first_line = self.stdout_file.read_text().splitlines()[0].strip()
            self.port = int(first_line)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """SIGTERM the PID this object started; SIGKILL it if it outlives the deadline."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 10.0)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 10.0)

    def close(self) -> None:
        """Remove the log folder (after ``stop()``)."""
        shutil.rmtree(self._dir, ignore_errors=True)

    async def received(self) -> list[dict[str, Any]]:
        """What the receiver recorded: ``[{valid, event_id, type, signature}, ...]``."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.base_url + "/received") as response,
        ):
            response.raise_for_status()
            data: list[dict[str, Any]] = await response.json()
            return data

    async def wait_for(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109  # a deadline for a poll, not a cancel scope
    ) -> list[dict[str, Any]]:
        """Poll ``/received`` until at least ``count`` requests were recorded."""
        seen: list[dict[str, Any]] = []

        async def enough() -> bool:
            nonlocal seen
            seen = await self.received()
            return len(seen) >= count

        try:
            await wait_until(
                enough,
                timeout,
                interval=0.05,
                message=f"node receiver did not record {count} request(s)",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}; recorded: {seen}") from None
        return seen

    async def __aenter__(self) -> NodeReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
        self.close()

    def __repr__(self) -> str:
        return f"NodeReceiver(port={self.port})"
