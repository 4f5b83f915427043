"""Replaying dead deliveries that only the delivery log's database holds.

With ``DATABASE_URL`` a dead delivery leaves Redis once its record is written
(``worker/logdone.lua``), as a delivered one does, so Redis holds only the hot path. It
stays replayable: :class:`Reviver` creates it again in Redis from its stored record,
with its event from the stored body when that left Redis too (``revive.lua``), queued
for a new round as ``replay.lua`` queues one still in Redis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson
from redis.typing import EncodableT

from producer.deliveries import Delivery, DeliveryState
from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from producer.settings import DELIVERY_RETENTION, POLL_MAX_PER_ENDPOINT
from producer.store.logstore import LogStore

# Deliveries revived per script call: bounds how long one call holds Redis.
REVIVE_CHUNK = 500


class Reviver:
    """Queues dead deliveries of the log store again, re-creating them in Redis."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        dispatcher: JobDispatcher,
        batch_size: int,
        store: LogStore,
        poll_max: int = POLL_MAX_PER_ENDPOINT.value,
        retention_s: int = DELIVERY_RETENTION.value,
    ) -> None:
        """``poll_max``, ``retention_s``: POLL_MAX_PER_ENDPOINT and DELIVERY_RETENTION (a
        poll endpoint's revived deliveries go back to its feed)."""
        self._poll_max = poll_max
        self._retention_s = retention_s
        self._store = store
        self._dispatcher = dispatcher
        self._batch_size = batch_size
        self._revive = load_script(redis, keys, "producer", "revive.lua")

    async def revive(self, delivery_ids: Sequence[str]) -> list[str]:
        """Queue those of ``delivery_ids`` the store has dead and Redis does not hold;
        returns the ones queued. One whose event's body is past the retention is left."""
        revived: list[str] = []
        for start in range(0, len(delivery_ids), REVIVE_CHUNK):
            loaded = await self._store.load_deliveries(delivery_ids[start : start + REVIVE_CHUNK])
            dead = [d for d in loaded if d is not None and d.state == DeliveryState.DEAD]
            if dead:
                revived += await self._revive_dead(dead)
        return revived

    async def _revive_dead(self, dead: Sequence[Delivery]) -> list[str]:
        events = await self._store.load_events([d.event_id for d in dead])
        rows = [(d.id, d.event_id, d.endpoint_id, d.created_ms, d.attempts_made) for d in dead]
        heads = [(e.id, e.type, e.workspace_id, e.created_ms) for e in events]
        args: list[EncodableT] = [
            int(time.time() * 1000),
            self._batch_size,
            self._poll_max,
            self._retention_s,
            orjson.dumps(rows),
            orjson.dumps(heads),
            *(e.body for e in events),
        ]
        ids, members = await self._revive(*args)
        await self._dispatcher.dispatch(members)
        return list(ids)
