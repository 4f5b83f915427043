"""What the delivery log tells besides its lines: an endpoint's attempts counted by
outcome per hour or per day (the dashboard's chart), and an event as it was sent.

Both stores answer through :class:`producer.deliveries.DeliveryLog` (Redis) and
:class:`producer.store.reads.StoredDeliveryLog` (PostgreSQL, one indexed query:
``migrations/0002_attempts_by_time.sql``); the types and the counting they share are here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from producer.events import iso_time
from producer.fields import EVENT_FIELDS as E

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Bucket:
    """The attempts of one hour or day (UTC) by outcome."""

    start_ms: int
    delivered: int = 0
    retried: int = 0
    dead: int = 0

    @property
    def total(self) -> int:
        """Every attempt of the bucket."""
        return self.delivered + self.retried + self.dead

    def to_dict(self) -> dict[str, Any]:
        """The API's and the chart's form."""
        return {
            "start": iso_time(self.start_ms),
            "delivered": self.delivered,
            "retried": self.retried,
            "dead": self.dead,
        }


# Counts as the stores return them: (bucket start ms, outcome) -> attempts. Outcomes
# are :class:`producer.deliveries.AttemptOutcome` values (that module reads through this one).
OutcomeCounts = Mapping[tuple[int, str], int]
DELIVERED, RETRY, DEAD = "delivered", "retry", "dead"


def bucket_start(at_ms: int, bucket_ms: int) -> int:
    """The start of the UTC hour or day (``bucket_ms``) holding ``at_ms``."""
    return at_ms - at_ms % bucket_ms


def count_outcomes(
    attempts: Iterable[tuple[int, str]], since_ms: int, bucket_ms: int
) -> dict[tuple[int, str], int]:
    """Attempts ``(at_ms, outcome)`` made at or after ``since_ms``, counted per bucket."""
    counts: dict[tuple[int, str], int] = {}
    for at_ms, outcome in attempts:
        if at_ms >= since_ms:
            key = (bucket_start(at_ms, bucket_ms), outcome)
            counts[key] = counts.get(key, 0) + 1
    return counts


def buckets(counts: OutcomeCounts, since_ms: int, until_ms: int, bucket_ms: int) -> list[Bucket]:
    """Every bucket from the one holding ``since_ms`` to the one holding ``until_ms``,
    oldest first, empty ones included (a chart shows the gaps)."""
    found: list[Bucket] = []
    start = bucket_start(since_ms, bucket_ms)
    while start <= until_ms:
        found.append(
            Bucket(
                start,
                delivered=counts.get((start, DELIVERED), 0),
                retried=counts.get((start, RETRY), 0),
                dead=counts.get((start, DEAD), 0),
            )
        )
        start += bucket_ms
    return found


@dataclass(frozen=True)
class SentEvent:
    """An event as its deliveries carried it: ``body`` is the exact bytes sent."""

    id: str
    type: str
    workspace_id: str
    created_ms: int
    body: bytes

    @classmethod
    def from_hash(cls, event_id: str, fields: Mapping[str, str]) -> SentEvent:
        """The event hash of the Redis log (:data:`producer.keys.EVENT_FIELDS`)."""
        return cls(
            id=event_id,
            type=fields[E.type],
            workspace_id=fields[E.workspace],
            created_ms=int(fields[E.created]),
            body=fields[E.body].encode(),
        )

    def to_dict(self) -> dict[str, Any]:
        """The API's ``event`` member: the fields of the payload, ``data`` parsed."""
        payload = orjson.loads(self.body)
        return {
            "id": self.id,
            "type": self.type,
            "workspace_id": self.workspace_id,
            "created_at": payload.get("created_at", iso_time(self.created_ms)),
            "data": payload.get("data"),
        }
