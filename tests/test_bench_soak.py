"""``python -m bench.soak`` end to end, small: its own Redis, PostgreSQL, sink and worker
deliver everything; the memory it plots falls back once the backlog has drained and
stays flat after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.soak import SETTLE_S

from support import PROJECT

DELIVERIES = 2000


def test_the_soak_delivers_everything_and_memory_is_flat_after_the_drain(tmp_path: Path) -> None:
    figures, plot = tmp_path / "soak.json", tmp_path / "soak.png"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.soak", "--deliveries", str(DELIVERIES),
            "--max-pending", "1000", "--interval", "0.5", "--tail", "3",
            "--json", str(figures), "--plot", str(plot),
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "redis used_memory: start" in done.stdout
    result = json.loads(figures.read_text())
    assert result["deliveries"] == DELIVERIES
    assert result["store"] == "postgresql"
    samples = result["samples"]
    # The publisher kept at most --max-pending waiting (plus one chunk being published).
    assert max(s["queued"] for s in samples) <= 2000
    after = [s for s in samples if s["at_s"] >= result["seconds_to_drain"] + SETTLE_S]
    assert len(after) >= 3
    assert result["after_drain_min_bytes"] == min(s["used_bytes"] for s in after)
    assert {s["log_outbox"] for s in after} == {0}
    # Finished deliveries left Redis: what stays is flat and below the peak. Flat within
    # 256 KiB, under 128 B per delivery: used_memory also counts client buffers, which
    # moved it by up to ~70 KiB between samples on a loaded machine.
    assert result["after_drain_max_bytes"] - result["after_drain_min_bytes"] < 256 * 1024
    assert result["after_drain_bytes"] < result["peak_bytes"]
    assert plot.read_bytes().startswith(b"\x89PNG")
