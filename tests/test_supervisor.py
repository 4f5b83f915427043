"""``worker --processes N``: children restarted when they die, one /metrics for all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from producer.events import parse_event
from worker.localredis import free_port

from harness import Receiver
from harness.polling import wait_until
from support import PROJECT, producer_for, worker_env


def start_supervisor(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``python -m worker --processes 2``, logging to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "worker", "--processes", "2"],
            env=env,
            cwd=PROJECT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_supervised_workers_restart_and_report_one_set_of_metrics(
    redis_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path)),
        "METRICS_PORT": str(port),
        "METRICS_HOST": "127.0.0.1",
    }
    supervisor = start_supervisor(env, tmp_path / "supervisor.log")
    try:
        async with aiohttp.ClientSession() as http:

            async def health() -> dict[str, Any]:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return dict(await response.json())
                except aiohttp.ClientError:
                    return {}

            async def metric_text() -> str:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                    return await response.text()

            async def both_running() -> bool:
                return len((await health()).get("pids", [])) == 2

            await wait_until(both_running, 20, interval=0.1, message="children not up")
            first_pids = (await health())["pids"]

            async with producer_for(redis_url) as producer:
                await producer.endpoints.create(
                    workspace_id="ws_1",
                    url=receiver.url(),
                    events=["*"],
                    owner_email="o@example.com",
                )
                events = [
                    parse_event(
                        {"type": "issue.created", "workspace_id": "ws_1", "data": {"n": n}},
                        producer.catalogue,
                        max_payload_bytes=1024,
                    )
                    for n in range(40)
                ]
                await producer.publisher.publish_many(events)
                await receiver.wait_for(40, 20)

            async def all_counted() -> bool:
                return 'cliq_deliveries_total{outcome="delivered"} 40.0' in await metric_text()

            await wait_until(all_counted, 10, interval=0.1, message="metrics not aggregated")

            os.kill(first_pids[0], signal.SIGKILL)  # a child dies: it is replaced

            async def replaced() -> bool:
                state = await health()
                pids = state.get("pids", [])
                return state.get("restarts") == 1 and len(pids) == 2 and first_pids[0] not in pids

            await wait_until(replaced, 20, interval=0.1, message="dead child not restarted")
            assert first_pids[0] not in (await health())["pids"]
            # The dead child's counts stay in the total.
            assert 'cliq_deliveries_total{outcome="delivered"} 40.0' in await metric_text()
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(timeout=30)
    text = (tmp_path / "supervisor.log").read_text()
    assert code == 0, text
    events_logged = [
        json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")
    ]
    assert "child_died" in events_logged
    assert "supervisor_stopped" in events_logged
