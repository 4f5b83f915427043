"""The hot state's counts over every partition: what ``cliq-webhooks status`` and the
workers' gauges show, each partition's counters summed (one place for the sum)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from producer.jobs import JobDispatcher
from producer.keys import DELIVERY_QUEUES
from producer.partitioning import Partitions
from producer.redis.clients import RedisClient


@dataclass
class HotTotals:
    """Sums over the partitions."""

    # LAYOUT["stats"]'s fields, summed.
    stats: dict[str, int] = field(default_factory=dict)
    # bullmq job counts per queue and state: each partition's delivery queues summed;
    # the notification and operations queues are partition 0's alone.
    jobs: dict[str, dict[str, int]] = field(default_factory=dict)
    outbox: int = 0
    ready: int = 0
    log_outbox: int = 0
    failing: int = 0


async def hot_totals(
    redis: RedisClient,
    partitions: Partitions,
    dispatchers: Sequence[JobDispatcher],
    states: Sequence[str] = ("wait", "active", "delayed", "failed"),
) -> HotTotals:
    """Read and sum every partition's counters; ``dispatchers[k]`` is partition k's."""
    totals = HotTotals()
    for k, keys in enumerate(partitions.all):
        stats = cast(dict[str, str], await redis.hgetall(keys.stats))
        for name, value in stats.items():
            totals.stats[name] = totals.stats.get(name, 0) + int(value)
        totals.outbox += int(await redis.zcard(keys.outbox))
        totals.ready += int(await redis.llen(keys.ready))
        totals.log_outbox += int(await redis.xlen(keys.log_outbox))
        totals.failing += int(await redis.scard(keys.failing))
        for name, queue in dispatchers[k].queues.items():
            if k > 0 and name not in DELIVERY_QUEUES:
                continue  # partition 0's queue, counted already
            counts = await queue.getJobCounts(*states)
            summed = totals.jobs.setdefault(name, dict.fromkeys(states, 0))
            for state, value in counts.items():
                summed[state] = summed.get(state, 0) + int(value)
    return totals
