"""Resuming paused backlogs: the deliveries of an enabled endpoint queued again.

Enabling an endpoint (producer/pausing.py) puts it in ``LAYOUT["resuming"]``; every
worker looks there and re-enqueues such a backlog in publish order, a chunk per script
call (producer/backlog.lua), each delivery with its remaining attempts. A chunk moves
atomically, so a worker killed between chunks loses nothing and moves nothing twice:
another worker takes the rest. New deliveries join the backlog's end until it is
empty, so they do not overtake it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import cast

import structlog

from producer.keys import Keys
from producer.pausing import BACKLOG_CHUNK
from producer.redis.clients import RedisClient
from producer.scripts import Script, load_script
from producer.settings import DELIVERY_RETENTION, POLL_MAX_PER_ENDPOINT

log = structlog.get_logger("cliq.worker.resume")

# Seconds between looks at the resuming set when it was empty.
RESUME_POLL_S = 0.5
# Endpoints one look takes on.
RESUME_ENDPOINTS_PER_LOOK = 20


@dataclass(frozen=True)
class FeedLimits:
    """What a poll endpoint's resumed deliveries join its feed with (producer/feed.lua)."""

    poll_max: int = POLL_MAX_PER_ENDPOINT.value
    retention_s: int = DELIVERY_RETENTION.value
    # Whether DATABASE_URL keeps the delivery log (a full feed's dead are logged there).
    logged: bool = False


async def resume_endpoint(
    backlog: Script, endpoint_id: str, feed: FeedLimits, chunk: int = BACKLOG_CHUNK
) -> int:
    """Re-enqueue an endpoint's paused backlog in publish order; returns how many.

    The one place a backlog resumes: a FIFO endpoint's go back to its line, a poll
    endpoint's to its feed (backlog.lua). Stops as soon as the endpoint is disabled again.
    """
    total = 0
    logged = "1" if feed.logged else "0"
    while True:
        now_ms = int(time.time() * 1000)
        moved, left = await backlog(
            "resume", endpoint_id, chunk, now_ms, feed.poll_max, feed.retention_s, logged
        )
        total += int(moved)
        if int(left) == 0 or int(moved) == 0:
            return total


class Resumer:
    """The loop that resumes every backlog in ``resuming``."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        poll_s: float = RESUME_POLL_S,
        feed: FeedLimits = FeedLimits(),
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._poll_s = poll_s
        self._feed = feed
        self._backlog = load_script(redis, keys, "producer", "backlog.lua")

    async def run_once(self) -> int:
        """Resume the backlogs of (some of) the endpoints waiting; returns how many
        deliveries were queued again."""
        members = await self._redis.srandmember(self._keys.resuming, RESUME_ENDPOINTS_PER_LOOK)
        total = 0
        for endpoint_id in cast(list[str], members or []):
            moved = await resume_endpoint(self._backlog, endpoint_id, self._feed)
            if moved:
                log.info("backlog_resumed", endpoint_id=endpoint_id, deliveries=moved)
            total += moved
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Resume backlogs until ``stop`` is set; Redis errors are reported and retried."""
        while not stop.is_set():
            try:
                if await self.run_once():
                    continue
            except Exception as exc:  # Redis down: report and keep trying
                log.warning("resume_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._poll_s)
