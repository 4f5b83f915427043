"""The delivery log read from its database: :class:`StoredDeliveryLog`.

With ``DATABASE_URL`` set, :class:`producer.context.Producer` replaces its
:class:`producer.deliveries.DeliveryLog` by this one at start, so the API, the CLI and
the dashboard read the record of what happened (deliveries, attempts, summaries, dead
deliveries) from the :class:`producer.store.logstore.LogStore`, through the methods they
already call. The database holds an outcome once its worker's log writer has written it
(:mod:`worker.logwriter`), normally within a second; a delivery not written yet (queued,
its first attempt under way) is read from Redis by id and by event. A dead delivery
leaves Redis once written, like a delivered one; until then Redis has it and the store
may not, so which are dead and how many is the union of the two, each counted once. A
replay queues again those still in Redis (``replay.lua``) and re-creates in Redis those
only the store holds (:class:`producer.store.revival.Reviver`), then marks them replayed
in the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

from producer.activity import OutcomeCounts, SentEvent
from producer.deliveries import (
    RECENT_WINDOW,
    AttemptFilter,
    Delivery,
    DeliveryLog,
    DeliveryState,
    LogPosition,
    RecentSummary,
    attempt_entry,
)
from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.settings import DELIVERY_RETENTION, POLL_MAX_PER_ENDPOINT
from producer.store.logstore import AttemptQuery, LoggedAttempt, LogStore
from producer.store.logstore import RecentSummary as StoredSummary
from producer.store.revival import Reviver


def logged_entry(logged: LoggedAttempt) -> dict[str, Any]:
    """A stored attempt as the delivery log shows it (:func:`attempt_entry`)."""
    delivery = Delivery(
        id=logged.delivery_id,
        event_id=logged.event_id,
        endpoint_id=logged.endpoint_id,
        state=DeliveryState.QUEUED,  # not shown: an entry names the attempt, not the state
        attempts_made=logged.attempt.number,
        created_ms=logged.delivery_created_ms,
        attempts=(logged.attempt,),
    )
    return attempt_entry(logged.attempt, delivery)


def summary_of(stored: StoredSummary | None) -> RecentSummary:
    """The store's summary of an endpoint as the API shows it (none: no deliveries)."""
    if stored is None:
        return RecentSummary.of([])
    return RecentSummary(
        deliveries=stored.deliveries,
        delivered=stored.delivered,
        dead=stored.dead,
        pending=stored.pending,
        last_attempt_ms=stored.last_attempt_ms,
        last_delivered_ms=stored.last_delivered_ms,
        last_error=logged_entry(stored.last_error) if stored.last_error else None,
    )


class StoredDeliveryLog(DeliveryLog):
    """A :class:`DeliveryLog` whose reads go to the log store."""

    LOG_FLAG = "1"

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
        super().__init__(redis, keys, dispatcher, batch_size, poll_max, retention_s)
        self.store = store
        self._reviver = Reviver(redis, keys, dispatcher, batch_size, store, poll_max, retention_s)

    async def load(self, ids: Sequence[str]) -> list[Delivery | None]:
        """Deliveries by id; one not written yet (queued, its first attempt under way) is
        read from Redis; ``None`` for one in neither."""
        if not ids:
            return []
        stored = await self.store.load_deliveries(ids)
        missing = [i for i, delivery in zip(ids, stored, strict=True) if delivery is None]
        if not missing:
            return stored
        live = dict(zip(missing, await super().load(missing), strict=True))
        return [d if d is not None else live[i] for i, d in zip(ids, stored, strict=True)]

    async def for_endpoint(self, endpoint_id: str, limit: int = 100) -> list[Delivery]:
        """An endpoint's most recent deliveries, newest first."""
        return list((await self.store.endpoint_deliveries(endpoint_id, limit)).items)

    async def for_event(self, event_id: str) -> list[Delivery]:
        """Every delivery of an event, by id: those written, and those not yet (Redis)."""
        stored = await self.store.event_deliveries(event_id)
        written = {d.id for d in stored}
        live = [d for d in await super().for_event(event_id) if d.id not in written]
        return sorted([*stored, *live], key=lambda d: (d.created_ms, d.id))

    async def recent(self, endpoint_id: str) -> RecentSummary:
        """The summary of an endpoint's latest :data:`RECENT_WINDOW` deliveries."""
        summaries = await self.store.recent_summaries([endpoint_id], RECENT_WINDOW)
        return summary_of(summaries.get(endpoint_id))

    async def scan_attempts(
        self,
        endpoint_id: str,
        selected: AttemptFilter,
        after: LogPosition | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], LogPosition | None]:
        """A page of an endpoint's attempts after ``after`` (the store's order, which is
        the Redis log's: delivery creation, delivery id, attempt number, descending)."""
        query = AttemptQuery(selected.outcome, selected.since_ms, selected.until_ms)
        found = await self.store.endpoint_attempts(endpoint_id, query, limit, after)
        return [logged_entry(item) for item in found.items], found.next

    async def event_types(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The type of each of these events still stored."""
        return await self.store.event_types(sorted(set(event_ids)))

    async def outcome_counts(
        self, endpoint_id: str, since_ms: int, bucket_ms: int
    ) -> OutcomeCounts:
        """An endpoint's attempts since ``since_ms`` per bucket and outcome (the store's
        count; an attempt not written yet is counted once its log writer wrote it)."""
        return await self.store.outcome_counts(endpoint_id, since_ms, bucket_ms)

    async def sent_event(self, event_id: str) -> SentEvent | None:
        """The event as sent: from the store, or from Redis while not written yet."""
        stored = await self.store.get_event(event_id)
        if stored is None:
            return await super().sent_event(event_id)
        return SentEvent(
            id=stored.id,
            type=stored.type,
            workspace_id=stored.workspace_id,
            created_ms=stored.created_ms,
            body=bytes(stored.body),
        )

    async def replay(self, delivery_ids: Sequence[str]) -> list[str]:
        """Queue the dead ones again (those in Redis there, those only in the store
        re-created in Redis), then mark them replayed in the store."""
        replayed = await super().replay(delivery_ids)
        done = set(replayed)
        replayed += await self._reviver.revive([i for i in delivery_ids if i not in done])
        if replayed:
            await self.store.mark_replayed(replayed, int(time.time() * 1000))
        return replayed

    async def dead_ids(self, endpoint_id: str, since_ms: int = 0) -> list[str]:
        """Ids of an endpoint's dead deliveries that died at or after ``since_ms``: those
        written to the store (oldest death first), then those only Redis has yet."""
        stored = await self.store.dead_delivery_ids(endpoint_id, since_ms)
        known = set(stored)
        return stored + [i for i in await super().dead_ids(endpoint_id, since_ms) if i not in known]

    async def dead_total(self, endpoint_id: str) -> int:
        """How many dead deliveries of an endpoint are kept for replay, in either store."""
        counts = await self.store.state_counts(endpoint_id)
        return counts[DeliveryState.DEAD] + await self._dead_only_in_redis([endpoint_id])

    async def dead_overall(self) -> int:
        """How many dead deliveries are kept for replay, over every endpoint, in either."""
        counts = await self.store.state_counts()
        return counts[DeliveryState.DEAD] + await self.dead_only_in_redis()

    async def dead_only_in_redis(self) -> int:
        """How many dead deliveries of this partition's endpoints only Redis has as dead."""
        endpoint_ids = cast(list[str], await self._redis.zrange(self._keys.endpoints, 0, -1))
        return await self._dead_only_in_redis(endpoint_ids)

    async def _dead_only_in_redis(self, endpoint_ids: Sequence[str]) -> int:
        """How many of these endpoints' dead deliveries in Redis the store does not have
        as dead yet (their dead attempt not written): few, as they leave within seconds."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for endpoint_id in endpoint_ids:
                pipe.zrange(self._keys.endpoint_dead(endpoint_id), 0, -1)
            found: list[list[str]] = await pipe.execute()
        ids = [i for chunk in found for i in chunk]
        if not ids:
            return 0
        stored = await self.store.load_deliveries(ids)
        return sum(1 for d in stored if d is None or d.state != DeliveryState.DEAD)
