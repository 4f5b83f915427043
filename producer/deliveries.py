"""Deliveries (one event to one endpoint) and their attempts: reading them and replaying.

The worker writes attempts (``worker/record.lua``); the field names of the
delivery hash are defined here, once, and documented in :mod:`producer.keys`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import orjson

from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script

RESPONSE_EXCERPT_BYTES = 1024


class DeliveryState(StrEnum):
    """Where a delivery stands. ``dead`` deliveries are kept for replay."""

    QUEUED = "queued"
    SCHEDULED = "scheduled"
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
                if k.startswith("a") and k[1:].isdigit()
            ),
            key=lambda a: a.number,
        )
        return cls(
            id=delivery_id,
            event_id=fields["e"],
            endpoint_id=fields["p"],
            state=DeliveryState(fields["s"]),
            attempts_made=int(fields["n"]),
            created_ms=int(fields["c"]),
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


class DeliveryLog:
    """Reads deliveries and attempts; re-enqueues dead deliveries."""

    def __init__(
        self, redis: RedisClient, keys: Keys, dispatcher: JobDispatcher, batch_size: int
    ) -> None:
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
        ids = cast(
            list[str], await self._redis.lrange(self._keys.event_deliveries(event_id), 0, -1)
        )
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
                len(chunk),
                *chunk,
            ]
            ids, members = await self._replay(*args)
            await self._dispatcher.dispatch(members)
            replayed.extend(ids)
        return replayed

    async def event_types(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The type of each of these events still stored, in one round trip."""
        unique = sorted(set(event_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for event_id in unique:
                pipe.hget(self._keys.event(event_id), "t")
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
