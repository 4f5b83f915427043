"""What every scenario runs against, and the timeouts they share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis

from bench.plan import Plan
from bench.results import Run
from bench.sink import Sink
from producer.keys import Keys
from producer.settings import ProducerSettings

# A worker process needs a second or two to import and connect before its first delivery.
WORKER_START_TIMEOUT_S = 60.0
# Lower bound of the drain deadline; it grows with the backlog (at 100 deliveries/s).
DRAIN_TIMEOUT_S = 60.0


def drain_timeout_s(deliveries: int) -> float:
    """How long ``deliveries`` may take to drain before the run is declared failed."""
    return DRAIN_TIMEOUT_S + deliveries / 100


@dataclass(frozen=True)
class Context:
    """What every scenario runs against."""

    plan: Plan
    redis: aioredis.Redis
    redis_url: str
    settings: ProducerSettings
    sink: Sink
    recorder: Sink
    workdir: Path

    @property
    def keys(self) -> Keys:
        """The key layout of the producer and the workers under test."""
        return Keys(self.settings.key_prefix)

    async def reset(self) -> None:
        """Empty the bench's own Redis, so runs do not see each other's data."""
        await self.redis.flushall()

    async def used_memory(self) -> int:
        """Bytes Redis has allocated for data: INFO memory ``used_memory`` without the
        clients' buffers (the query buffer that held a large publish is kept for a while
        after it, and is not what the deliveries cost)."""
        memory = await self.redis.info("memory")
        return int(memory["used_memory"]) - int(memory["mem_clients_normal"])

    async def stats(self) -> dict[str, int]:
        """The ``<prefix>:stats`` hash: queued / scheduled gauges, delivered / dead totals."""
        # The client decodes replies (producer.redis.clients.redis_client): fields are str.
        raw = cast(dict[str, str], await self.redis.hgetall(self.keys.stats))
        return {name: int(value) for name, value in raw.items()}


def cpu_metrics(cpu: dict[str, float], prefix: str = "") -> Run:
    """Shares of a core by name, as ``<prefix>cpu_<name>`` metrics."""
    return {f"{prefix}cpu_{name}": share for name, share in cpu.items()}
