"""Stopping the server processes the harness started, by the PID it holds."""

from __future__ import annotations

import signal
import subprocess


def stop_process(
    process: subprocess.Popen[bytes] | None,
    timeout_s: float,
    sig: signal.Signals = signal.SIGTERM,
) -> None:
    """Send ``sig`` to ``process`` if it still runs; SIGKILL it if it outlives ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
