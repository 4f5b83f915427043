"""Poll endpoints' feeds in Redis: what waits in them, acknowledging, closing.

A delivery to a poll endpoint is not a job: the publish (or replay) script appends it to
its endpoint's feed (``LAYOUT["endpoint_feed"]``, :file:`producer/feed.lua`) under a
cursor, a number that grows with every delivery of that endpoint, so the feed is in
publish order. The consumer fetches what follows its cursor and acknowledges up to the
cursor it has processed (:file:`producer/poll_ack.lua`): those are recorded as
delivered, through the same log path as a worker's outcomes; the others stay, and are
fetched again by a consumer that starts over (no ``after``). The signed messages built
from these entries are :mod:`producer.polling`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

from producer.fields import DELIVERY_FIELDS, EVENT_FIELDS
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script


@dataclass(frozen=True)
class FeedEntry:
    """One unacknowledged delivery of a feed, with what its message carries."""

    cursor: int
    delivery_id: str
    event_id: str
    event_type: str
    body: str
    attempt: int
    created_ms: int


class PollFeeds:
    """Reads, acknowledges and closes poll endpoints' feeds."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        retention_s: int,
        log_to_database: bool,
        keep_per_endpoint: int,
    ) -> None:
        """``log_to_database``: DATABASE_URL keeps the delivery log (else Redis keeps the
        latest ``keep_per_endpoint`` delivered deliveries of each endpoint)."""
        self._redis = redis
        self._keys = keys
        self._retention_s = retention_s
        self._log_flag = "1" if log_to_database else "0"
        self._keep = keep_per_endpoint
        self._ack = load_script(redis, keys, "producer", "poll_ack.lua")
        self._close = load_script(redis, keys, "producer", "feed_close.lua")

    async def entries(self, endpoint_id: str, after: int, limit: int) -> list[FeedEntry]:
        """Up to ``limit`` entries with a cursor greater than ``after``, oldest first."""
        rows = cast(
            list[tuple[str, float]],
            await self._redis.zrangebyscore(
                self._keys.endpoint_feed(endpoint_id),
                f"({after}",
                "+inf",
                start=0,
                num=limit,
                withscores=True,
            ),
        )
        if not rows:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id, _ in rows:
                pipe.hmget(
                    self._keys.delivery(delivery_id),
                    [DELIVERY_FIELDS.event, DELIVERY_FIELDS.attempts, DELIVERY_FIELDS.created],
                )
            deliveries: list[list[str | None]] = await pipe.execute()
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id, _, _ in deliveries:
                pipe.hmget(self._keys.event(event_id or ""), [EVENT_FIELDS.body, EVENT_FIELDS.type])
            events: list[list[str | None]] = await pipe.execute()
        entries = []
        for (delivery_id, score), delivery, event in zip(rows, deliveries, events, strict=True):
            event_id, attempts, created = delivery
            body, event_type = event
            # A delivery whose record left meanwhile (acknowledged, its feed closed) is not
            # a message any more.
            if event_id is None or body is None or event_type is None:
                continue
            entries.append(
                FeedEntry(
                    cursor=int(score),
                    delivery_id=delivery_id,
                    event_id=event_id,
                    event_type=event_type,
                    body=body,
                    attempt=int(attempts or 0) + 1,
                    created_ms=int(created or 0),
                )
            )
        return entries

    async def ack(self, endpoint_id: str, until: int) -> int:
        """Record every entry with a cursor up to ``until`` as delivered; how many were."""
        args: list[Any] = [
            int(time.time() * 1000),
            endpoint_id,
            until,
            self._retention_s,
            self._log_flag,
            self._keep,
        ]
        return int(await self._ack(*args))

    async def close(self, endpoint_id: str) -> int:
        """End what is left in a deleted endpoint's feed as dead; how many deliveries."""
        args: list[Any] = [int(time.time() * 1000), endpoint_id, self._retention_s, self._log_flag]
        return int(await self._close(*args))

    async def backlog(self, endpoint_id: str) -> int:
        """How many deliveries wait in the endpoint's feed."""
        return int(await self._redis.zcard(self._keys.endpoint_feed(endpoint_id)))
