"""Child processes of the benchmark: start, wait for a port, read CPU time, stop by PID.

Every process the benchmark starts goes through :class:`Child`, so each one is
stopped by its own PID (SIGTERM, then SIGKILL after a bounded wait) and nothing
else on the machine is ever signalled.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.cpu import process_seconds

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class BenchError(RuntimeError):
    """A run that could not be measured (a deadline passed, a process died, a check failed)."""


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a child's log, to explain why it failed."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Child:
    """One process the benchmark started; its stdout and stderr go to the file ``log``."""

    def __init__(
        self, name: str, argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.log = log
        with open(log, "wb") as out:
            self._process = subprocess.Popen(
                list(argv),
                cwd=REPO_ROOT,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        """The process id (the only handle ever used to signal it)."""
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self._process.poll() is None

    def cpu_seconds(self) -> float:
        """CPU seconds used so far (the process must still be running)."""
        return process_seconds(self.pid)

    def failure(self, what: str) -> BenchError:
        """An error about this child that carries the end of its log."""
        tail = log_tail(self.log)
        return BenchError(f"{self.name} (pid {self.pid}) {what}" + (f":\n{tail}" if tail else ""))

    async def wait_for_port(self, port: int, timeout_s: float = 20.0) -> None:
        """Wait until something accepts connections on ``127.0.0.1:port``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise self.failure("exited before listening")
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise self.failure(f"did not listen on port {port} within {timeout_s:g}s")

    async def wait_for_output(self, text: str, timeout_s: float = 20.0) -> None:
        """Wait until the child's log contains ``text`` (its own "ready" line)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log.exists() and text in self.log.read_text(errors="replace"):
                return
            if not self.running:
                raise self.failure("exited before it was ready")
            await asyncio.sleep(0.05)
        raise self.failure(f"did not print {text!r} within {timeout_s:g}s")

    async def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit status."""
        if self.running:
            self._process.send_signal(signal.SIGTERM)
            try:
                return await asyncio.to_thread(self._process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
        return await asyncio.to_thread(self._process.wait)


async def run_json(name: str, argv: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run a child to completion and parse the JSON object it prints on stdout."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        raise BenchError(f"{name} did not finish within {timeout_s:g}s") from None
    finally:
        # Also when the benchmark is interrupted: the child must not outlive it.
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise BenchError(f"{name} exited {process.returncode}: {err.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(out)
    return result
