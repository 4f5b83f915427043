"""Deliveries (one event to one endpoint) and their attempts: reading them and replaying.

The worker writes attempts (``worker/record.lua``); the field names of the
delivery hash are defined here, once, and documented in :mod:`producer.keys`. The
delivery log's queries (an endpoint's attempts, filtered; a summary of its latest
deliveries) are here too, for the API and the dashboard alike.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import orjson

from producer import scans
from producer.activity import OutcomeCounts, SentEvent, count_outcomes
from producer.events import iso_time
from producer.fields import DELIVERY_FIELDS as F
from producer.fields import EVENT_FIELDS
from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from producer.settings import DELIVERY_RETENTION, POLL_MAX_PER_ENDPOINT

RESPONSE_EXCERPT_BYTES = 1024
# How many of an endpoint's latest deliveries its summary looks at (one read).
RECENT_WINDOW = 100


class DeliveryState(StrEnum):
    """Where a delivery stands. ``dead`` deliveries are kept for replay; ``paused`` ones
    wait for their disabled endpoint to be enabled (producer/pausing.py)."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
    PAUSED = "paused"
    DELIVERED = "delivered"
    DEAD = "dead"


class AttemptOutcome(StrEnum):
    """What one attempt led to."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DEAD = "dead"


class DeliveryNotFound(LookupError):
    """No delivery has this id (it never existed or its retention ran out)."""


@dataclass(frozen=True)
class Attempt:
    """One HTTP attempt: when, what came back, how long it took, what happened next."""

    number: int
    at_ms: int
    status: int | None
    error: str | None
    latency_ms: float
    response: str
    outcome: AttemptOutcome
    next_attempt_ms: int | None = None

    def to_json(self) -> str:
        """The stored form (field ``a<number>`` of the delivery hash)."""
        return orjson.dumps(self.to_dict()).decode()

    def to_dict(self) -> dict[str, Any]:
        """The attempt as a JSON-ready dict (written out: ``asdict`` is slow on a hot path)."""
        return {
            "number": self.number,
            "at_ms": self.at_ms,
            "status": self.status,
            "error": self.error,
            "latency_ms": self.latency_ms,
            "response": self.response,
            "outcome": self.outcome.value,
            "next_attempt_ms": self.next_attempt_ms,
        }

    @classmethod
    def from_json(cls, text: str) -> Attempt:
        """Parse the stored form."""
        raw = orjson.loads(text)
        raw["outcome"] = AttemptOutcome(raw["outcome"])
        return cls(**raw)


@dataclass(frozen=True)
class Delivery:
    """A delivery with its attempts, oldest first."""

    id: str
    event_id: str
    endpoint_id: str
    state: DeliveryState
    attempts_made: int
    created_ms: int
    attempts: tuple[Attempt, ...]

    @classmethod
    def from_hash(cls, delivery_id: str, fields: dict[str, str]) -> Delivery:
        """Parse the delivery hash."""
        attempts = sorted(
            (
                Attempt.from_json(v)
                for k, v in fields.items()
                if k.startswith(F.attempt) and k[len(F.attempt) :].isdigit()
            ),
            key=lambda a: a.number,
        )
        return cls(
            id=delivery_id,
            event_id=fields[F.event],
            endpoint_id=fields[F.endpoint],
            state=DeliveryState(fields[F.state]),
            attempts_made=int(fields[F.attempts]),
            created_ms=int(fields[F.created]),
            attempts=tuple(attempts),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the CLI and API."""
        return {
            "id": self.id,
            "event_id": self.event_id,
            "endpoint_id": self.endpoint_id,
            "state": self.state.value,
            "attempts_made": self.attempts_made,
            "created_ms": self.created_ms,
            "attempts": [a.to_dict() for a in self.attempts],
        }


@dataclass(frozen=True)
class AttemptFilter:
    """The delivery log's query: an outcome and a time window (ms, inclusive)."""

    outcome: AttemptOutcome | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, attempt: Attempt) -> bool:
        """Whether ``attempt`` is selected."""
        return (
            (self.outcome is None or attempt.outcome == self.outcome)
            and (self.since_ms is None or attempt.at_ms >= self.since_ms)
            and (self.until_ms is None or attempt.at_ms <= self.until_ms)
        )


def attempt_entry(attempt: Attempt, delivery: Delivery) -> dict[str, Any]:
    """One attempt as the delivery log shows it: with its delivery, event and endpoint."""
    return {
        "delivery_id": delivery.id,
        "event_id": delivery.event_id,
        "endpoint_id": delivery.endpoint_id,
        "at": iso_time(attempt.at_ms),
        **attempt.to_dict(),
    }


@dataclass(frozen=True)
class RecentSummary:
    """How an endpoint's latest deliveries went: "why is my webhook not receiving events?"."""

    deliveries: int
    delivered: int
    dead: int
    pending: int
    last_attempt_ms: int | None
    last_delivered_ms: int | None
    # The latest attempt that did not deliver, as the delivery log shows it.
    last_error: dict[str, Any] | None
    # Waiting for the endpoint to be enabled (producer/pausing.py).
    paused: int = 0

    @classmethod
    def of(cls, deliveries: Sequence[Delivery]) -> RecentSummary:
        """Counts by state and the latest attempt, success and error of these deliveries."""
        attempts = [(a, d) for d in deliveries for a in d.attempts]
        last = max(attempts, key=lambda pair: pair[0].at_ms, default=None)
        successes = [a.at_ms for a, _ in attempts if a.outcome == AttemptOutcome.DELIVERED]
        failures = [pair for pair in attempts if pair[0].outcome != AttemptOutcome.DELIVERED]
        last_failure = max(failures, key=lambda pair: pair[0].at_ms, default=None)
        states = [d.state for d in deliveries]
        return cls(
            deliveries=len(deliveries),
            delivered=states.count(DeliveryState.DELIVERED),
            dead=states.count(DeliveryState.DEAD),
            pending=states.count(DeliveryState.QUEUED) + states.count(DeliveryState.SCHEDULED),
            last_attempt_ms=last[0].at_ms if last else None,
            last_delivered_ms=max(successes) if successes else None,
            last_error=attempt_entry(*last_failure) if last_failure else None,
            paused=states.count(DeliveryState.PAUSED),
        )

    def to_dict(self) -> dict[str, Any]:
        """The API's ``recent`` member."""
        return {
            "window": RECENT_WINDOW,
            "deliveries": self.deliveries,
            "delivered": self.delivered,
            "dead": self.dead,
            "pending": self.pending,
            "paused": self.paused,
            "last_attempt_at": _iso_or_none(self.last_attempt_ms),
            "last_delivered_at": _iso_or_none(self.last_delivered_ms),
            "last_error": self.last_error,
        }


# A position in an endpoint's delivery log: (delivery created ms, delivery id, attempt
# number); number 0 means "every attempt of that delivery was seen".
LogPosition = tuple[int, str, int]


class DeliveryLog:
    """Reads deliveries and attempts; re-enqueues dead deliveries."""

    # Whether the delivery log is the database's: a poll feed that a replay overfills
    # logs its dead there too (producer/feed.lua).
    LOG_FLAG = "0"

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        dispatcher: JobDispatcher,
        batch_size: int,
        poll_max: int = POLL_MAX_PER_ENDPOINT.value,
        retention_s: int = DELIVERY_RETENTION.value,
    ) -> None:
        """``poll_max``: POLL_MAX_PER_ENDPOINT, ``retention_s``: DELIVERY_RETENTION (a
        replay to a poll endpoint goes back to its feed)."""
        self._poll_max = poll_max
        self._retention_s = retention_s
        self._redis = redis
        self._keys = keys
        self._dispatcher = dispatcher
        self._batch_size = batch_size
        self._replay = load_script(redis, keys, "producer", "replay.lua")

    async def get(self, delivery_id: str) -> Delivery:
        """One delivery, or :class:`DeliveryNotFound`."""
        (delivery,) = await self.load([delivery_id])
        if delivery is None:
            raise DeliveryNotFound(f"no delivery with id {delivery_id!r}")
        return delivery

    async def for_endpoint(self, endpoint_id: str, limit: int = 100) -> list[Delivery]:
        """An endpoint's most recent deliveries, newest first."""
        key = self._keys.endpoint_deliveries(endpoint_id)
        ids = cast(list[str], await self._redis.zrevrange(key, 0, limit - 1))
        return [d for d in await self.load(ids) if d is not None]

    async def for_event(self, event_id: str) -> list[Delivery]:
        """Every delivery of an event, in fan-out order."""
        async with self._redis.pipeline(transaction=False) as pipe:
            # An event of one delivery keeps its id in its hash, not a list (keys.LAYOUT).
            pipe.hget(self._keys.event(event_id), EVENT_FIELDS.sole)
            pipe.lrange(self._keys.event_deliveries(event_id), 0, -1)
            sole, listed = await pipe.execute()
        ids = [cast(str, sole)] if sole else cast(list[str], listed)
        return [d for d in await self.load(ids) if d is not None]

    async def dead_ids(self, endpoint_id: str, since_ms: int = 0) -> list[str]:
        """Ids of an endpoint's dead deliveries that died at or after ``since_ms``."""
        return list(
            cast(
                list[str],
                await self._redis.zrangebyscore(
                    self._keys.endpoint_dead(endpoint_id), since_ms, "+inf"
                ),
            )
        )

    async def replay(self, delivery_ids: Sequence[str]) -> list[str]:
        """Re-enqueue those of ``delivery_ids`` that are dead; returns the ones enqueued."""
        replayed: list[str] = []
        for start in range(0, len(delivery_ids), 1000):
            chunk = list(delivery_ids[start : start + 1000])
            args: list[str | int] = [
                int(time.time() * 1000),
                self._batch_size,
                self._poll_max,
                self.LOG_FLAG,
                self._retention_s,
                len(chunk),
                *chunk,
            ]
            ids, members = await self._replay(*args)
            await self._dispatcher.dispatch(members)
            replayed.extend(ids)
        return replayed

    async def recent(self, endpoint_id: str) -> RecentSummary:
        """The summary of an endpoint's latest :data:`RECENT_WINDOW` deliveries."""
        return RecentSummary.of(await self.for_endpoint(endpoint_id, RECENT_WINDOW))

    async def dead_total(self, endpoint_id: str) -> int:
        """How many dead deliveries of an endpoint are kept for replay."""
        return int(await self._redis.zcard(self._keys.endpoint_dead(endpoint_id)))

    async def dead_overall(self) -> int:
        """How many dead deliveries are kept for replay, over every endpoint."""
        return int(await self._redis.hget(self._keys.stats, DeliveryState.DEAD.value) or 0)

    async def scan_attempts(
        self,
        endpoint_id: str,
        selected: AttemptFilter,
        after: LogPosition | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], LogPosition | None]:
        """A page of an endpoint's attempts (:func:`attempt_entry`) after ``after``.

        Deliveries are walked by creation time from the newest (``until`` bounds where
        the walk starts, since no attempt precedes its delivery); each one's attempts come
        newest first. A page examines at most :data:`producer.scans.SCAN_BUDGET`
        deliveries, so it may end early; it ends with the position to continue from,
        ``None`` at the end.
        """
        found: list[tuple[LogPosition, dict[str, Any]]] = []
        examined = 0
        if after is not None:
            start: float | str = after[0]
        else:
            start = selected.until_ms if selected.until_ms is not None else "+inf"
        key = self._keys.endpoint_deliveries(endpoint_id)
        async for chunk in scans.scan_index(self._redis, key, start, descending=True):
            positions = [p for p in chunk if after is None or _not_seen(p, after)]
            loaded = await self.load([member for _, member in positions])
            for position, delivery in zip(positions, loaded, strict=True):
                examined += 1
                if delivery is not None:
                    below = after[2] if after is not None and position == after[:2] else None
                    found.extend(_selected_attempts(delivery, position, selected, below))
                if len(found) > limit:
                    return [entry for _, entry in found[:limit]], found[limit - 1][0]
                if examined >= scans.SCAN_BUDGET:
                    return [entry for _, entry in found], (*position, 0)
        return [entry for _, entry in found], None

    async def outcome_counts(
        self, endpoint_id: str, since_ms: int, bucket_ms: int
    ) -> OutcomeCounts:
        """An endpoint's attempts made since ``since_ms``, counted per UTC hour or day
        (``bucket_ms``) and outcome (:mod:`producer.activity`). The Redis log is bounded
        (``LOG_KEEP_PER_ENDPOINT``), so this reads every delivery it keeps."""
        key = self._keys.endpoint_deliveries(endpoint_id)
        made: list[tuple[int, str]] = []
        async for chunk in scans.scan_index(self._redis, key, "+inf", descending=True):
            for delivery in await self.load([member for _, member in chunk]):
                if delivery is not None:
                    made.extend((a.at_ms, a.outcome.value) for a in delivery.attempts)
        return count_outcomes(made, since_ms, bucket_ms)

    async def sent_event(self, event_id: str) -> SentEvent | None:
        """The event as its deliveries carried it; ``None`` once it left the log."""
        fields = cast(dict[str, str], await self._redis.hgetall(self._keys.event(event_id)))
        return SentEvent.from_hash(event_id, fields) if EVENT_FIELDS.body in fields else None

    async def event_types(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The type of each of these events still stored, in one round trip."""
        unique = sorted(set(event_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in unique:
                pipe.hget(self._keys.event(event_id), EVENT_FIELDS.type)
            types: list[str | None] = await pipe.execute()
        return {i: t for i, t in zip(unique, types, strict=True) if t is not None}

    async def load(self, ids: Sequence[str]) -> list[Delivery | None]:
        """Deliveries by id in one round trip; ``None`` for one whose retention ran out."""
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for delivery_id in ids:
                pipe.hgetall(self._keys.delivery(delivery_id))
            rows: list[dict[str, str]] = await pipe.execute()
        return [
            Delivery.from_hash(i, row) if row else None for i, row in zip(ids, rows, strict=True)
        ]


def _iso_or_none(ms: int | None) -> str | None:
    return iso_time(ms) if ms is not None else None


def _not_seen(position: tuple[int, str], after: LogPosition) -> bool:
    """Whether a delivery at ``position`` has attempts a page ending at ``after`` did not
    show: it comes later in the walk, or it is the cursor's own, partly shown, delivery."""
    return position < after[:2] or (position == after[:2] and after[2] > 0)


def _selected_attempts(
    delivery: Delivery, position: tuple[int, str], selected: AttemptFilter, below: int | None
) -> list[tuple[LogPosition, dict[str, Any]]]:
    """A delivery's selected attempts, newest first, numbered below ``below`` if given."""
    return [
        ((*position, attempt.number), attempt_entry(attempt, delivery))
        for attempt in sorted(delivery.attempts, key=lambda attempt: -attempt.number)
        if (below is None or attempt.number < below) and selected.matches(attempt)
    ]
