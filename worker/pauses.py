"""Pausing due deliveries of disabled endpoints, in the worker (producer/pausing.py).

A job or claim may carry items of an endpoint that was disabled after they were queued
(or whose retry came due while it is disabled): instead of an attempt, each joins the
endpoint's paused backlog in publish order (worker/pause.lua), to be resumed when the
endpoint is enabled.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson
import structlog

from producer.jobs import DeliveryItem
from producer.keys import Keys
from producer.pausing import BACKLOG_FULL, PauseEvents
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from worker.metrics import Metrics

log = structlog.get_logger("cliq.worker.pauses")


class Pauser:
    """Puts items of disabled endpoints into their paused backlogs."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        paused_max: int,
        metrics: Metrics,
        events: PauseEvents,
    ) -> None:
        """``paused_max``: PAUSED_MAX_PER_ENDPOINT; ``events``: told of a backlog that
        overflows."""
        self._script = load_script(redis, keys, "worker", "pause.lua")
        self._paused_max = paused_max
        self._metrics = metrics
        self._events = events

    async def pause(self, items: Sequence[DeliveryItem]) -> int:
        """Pause these items' deliveries; returns how many were paused."""
        rows = [[item.delivery_id, item.attempt] for item in items]
        paused, overflowed = await self._script(
            int(time.time() * 1000), self._paused_max, orjson.dumps(rows)
        )
        self._metrics.paused.inc(int(paused))
        log.info(
            "deliveries_paused",
            delivery_ids=[item.delivery_id for item in items][:20],
            paused=int(paused),
        )
        for k in range(0, len(overflowed), 2):
            await self._events.paused_backlog_full(overflowed[k], overflowed[k + 1], BACKLOG_FULL)
        return int(paused)
