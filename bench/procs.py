"""Child processes of the benchmark: start, wait for a port, read CPU time, stop by PID.

Every process the benchmark starts goes through :class:`Child`, so each one is
stopped by its own PID (SIGTERM, then SIGKILL after a bounded wait) and nothing
else on the machine is ever signalled.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A run that could not be measured (a deadline passed, a process died, a check failed)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far, from ``/proc/<pid>/stat``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    # Then index 0 is field 3 (state), so utime (field 14) and stime (15) are 11 and 12.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def log_tail(path: Path | None, lines: int = 15) -> str:
    """The last lines of a child's log, to explain why it failed."""
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Child:
    """One process the benchmark started; its output goes to ``log`` (or nowhere)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log
        with open(log, "wb") if log is not None else open(os.devnull, "wb") as out:
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
        return cpu_seconds(self.pid)

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
        assert self.log is not None, "only a child with a log can be waited for this way"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log.exists() and text in self.log.read_text(errors="replace"):
                return
            if not self.running:
                raise self.failure("exited before it was ready")
            await asyncio.sleep(0.05)
        raise self.failure(f"did not print {text!r} within {timeout_s:g}s")

    async def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit status."""
        if self.running:
            self._process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while self.running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.running:
                self._process.kill()
        while self.running:
            await asyncio.sleep(0.01)
        return self._process.returncode


async def run_json(name: str, argv: Sequence[str], timeout_s: float) -> dict[str, Any]:
    """Run a child to completion and parse the JSON object it prints on stdout."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BenchError(f"{name} did not finish within {timeout_s:g}s") from None
    if process.returncode != 0:
        raise BenchError(f"{name} exited {process.returncode}: {err.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(out)
    return result

