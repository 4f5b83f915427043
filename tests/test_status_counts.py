"""``status`` agrees with the per-endpoint counts after any sequence of failures, replays,
pauses and resumes.

A property test through the real parts: random (seeded) sequences of publishes to
endpoints whose receivers fail or answer, replays of an endpoint's dead deliveries
or of one delivery, disabling an endpoint (pausing its deliveries, or dropping them) and
enabling it (resuming them), run by a real worker against real receivers; after every
step the totals ``status`` shows equal what the endpoints' own counts add up to, and the
paused total what their paused backlogs hold.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.endpoint import Endpoint

from harness import Receiver, ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import PROJECT, make_event, start_worker, worker_env

STEPS = 10
STATES = ("queued", "scheduled", "paused", "delivered", "dead")


async def _per_endpoint(producer: Producer, endpoints: list[Endpoint]) -> dict[str, int]:
    """What the endpoints' own records add up to, state by state."""
    counts = {state.value: 0 for state in DeliveryState}
    for ep in endpoints:
        for delivery in await producer.deliveries.for_endpoint(ep.id, limit=1000):
            counts[delivery.state.value] += 1
    return counts


async def _totals(producer: Producer) -> dict[str, int]:
    """The totals as ``status`` reads them."""
    stats = await producer.redis.hgetall(producer.keys.stats)
    return {k: int(stats.get(k, 0)) for k in STATES}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_status_totals_equal_per_endpoint_counts_after_failures_and_replays(
    seed: int,
    redis_url: str,
    producer: Producer,
    receiver_factory: ReceiverFactory,
    tmp_path: Path,
) -> None:
    rng = random.Random(seed)
    receivers: list[Receiver] = [await receiver_factory() for _ in range(2)]
    endpoints = [
        await producer.endpoints.create(
            workspace_id="ws_1", url=r.url(), events=["*"], owner_email="o@example.com"
        )
        for r in receivers
    ]
    # One attempt each: a failure is dead at once, so every step settles quickly.
    worker = await start_worker(
        worker_env(redis_url, RETRY_SCHEDULE="0", NOTIFY_OUTBOX=str(tmp_path / "outbox"))
    )
    history: list[str] = []
    try:
        for _ in range(STEPS):
            for r in receivers:
                r.default = ScriptedResponse(status=rng.choice((200, 500, 500)))
            action = rng.choice(
                ("publish", "publish", "replay endpoint", "replay one", "disable", "drop", "enable")
            )
            index = rng.randrange(len(endpoints))
            if action in ("disable", "drop"):
                await producer.pausing.disable(endpoints[index].id, drop=action == "drop")
            elif action == "enable":
                await producer.pausing.enable(endpoints[index].id)
            elif action == "publish":
                for _ in range(rng.randint(1, 4)):
                    await producer.publisher.publish(make_event(producer))
            elif action == "replay endpoint":
                ids = await producer.deliveries.dead_ids(endpoints[index].id)
                await producer.deliveries.replay(ids)
            else:
                ids = await producer.deliveries.dead_ids(endpoints[index].id)
                # Replaying one twice must count it once.
                await producer.deliveries.replay(ids[:1] * 2)
            history.append(f"{action} {index} {[r.default.status for r in receivers]}")

            async def settled() -> bool:
                counts = await _per_endpoint(producer, endpoints)
                resuming = await producer.redis.scard(producer.keys.resuming)
                return counts["queued"] == counts["scheduled"] == resuming == 0

            await wait_until(settled, 20, message=f"deliveries did not settle: {history}")
            per_endpoint = await _per_endpoint(producer, endpoints)
            totals = await _totals(producer)
            assert totals == {k: per_endpoint[k] for k in totals}, history
            dead_sets = [await producer.deliveries.dead_total(ep.id) for ep in endpoints]
            assert totals["dead"] == sum(dead_sets), history
            backlogs = [await producer.pausing.paused(ep.id) for ep in endpoints]
            assert totals["paused"] == sum(backlogs), history
    finally:
        await worker.stop()
    shown = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli", "status", "--json"],
        env={**os.environ, **worker_env(redis_url)},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout)["deliveries"] == await _totals(producer)
