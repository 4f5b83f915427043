"""FIFO endpoints: an endpoint's ``ordering`` and the line its FIFO deliveries wait in.

An endpoint with ``ordering: fifo`` gets its deliveries started in publish order, one at a
time: the next waits until the previous is delivered or dead, and retries keep the order.
The line itself is Lua (producer/fifo.lua), run by the scripts that start deliveries
(publish.lua, replay.lua) and end them (worker/record.lua), so a turn passes in the same
script as the outcome that ends it; nothing else waits on a FIFO endpoint. This module
holds the field's values and the two operations other callers need.
"""

from __future__ import annotations

from enum import StrEnum

from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script


class Ordering(StrEnum):
    """How an endpoint's deliveries start: all at once (the default), or in line."""

    PARALLEL = "parallel"
    FIFO = "fifo"


def validate_ordering(value: object) -> Ordering:
    """The ordering named by ``value`` (``parallel`` or ``fifo``); ``ValueError`` if not."""
    if isinstance(value, str) and value in {o.value for o in Ordering}:
        return Ordering(value)
    raise ValueError(f"must be 'parallel' (the default) or 'fifo', not {value!r}")


class FifoLines:
    """The lines of FIFO endpoints, for callers outside the scripts of fifo.lua."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        self._next = load_script(redis, keys, "producer", "fifo_next.lua")
        self._release = load_script(redis, keys, "producer", "fifo_release.lua")

    async def enqueue_next(self, endpoint_id: str, *, again: bool = False) -> str | None:
        """Enqueue this endpoint's next ready delivery, unless one holds its turn already.

        ``again``: a delivery holding the turn that has not ended is enqueued once more
        (a resume: its attempt is numbered after those made, so a job of it that is still
        pending is skipped as a duplicate). Returns the delivery id enqueued, if any.
        """
        enqueued = await self._next(endpoint_id, "1" if again else "0")
        return str(enqueued) if enqueued else None

    async def release(self, endpoint_id: str) -> int:
        """The endpoint is FIFO no more (parallel again, or deleted): every delivery in
        its line is enqueued at once. Returns how many were."""
        return int(await self._release(endpoint_id))
