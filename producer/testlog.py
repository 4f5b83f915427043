"""Test sends in the delivery log: the latest :data:`KEPT` test events sent to each
endpoint, so that the dashboard's log shows them, marked as tests.

A test send is no delivery (it is not queued, retried or counted: it cannot turn an
endpoint failing, see :mod:`worker.testsend`), so it is kept apart from the log's
stores, in Redis whatever the store: a list per endpoint
(:meth:`producer.keys.Keys.endpoint_tests`), newest first, capped and expiring with
``DELIVERY_RETENTION``. A worker writes each one as it was sent (:func:`record`); the
dashboard reads them (:func:`recent`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson

from producer.activity import SentEvent
from producer.deliveries import Attempt, AttemptOutcome, Delivery, DeliveryState
from producer.keys import Keys
from producer.redis.clients import RedisClient

KEPT = 50


@dataclass(frozen=True)
class TestSend:
    """One test event as sent to an endpoint, and what came back."""

    __test__ = False  # not a pytest test class

    endpoint_id: str
    delivery_id: str
    event_id: str
    event_type: str
    workspace_id: str
    # When it was signed and sent (ms): its headers are computed again from it.
    at_ms: int
    ok: bool
    status: int | None
    error: str | None
    latency_ms: float
    response: str
    body: str

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON)."""
        return {
            "endpoint_id": self.endpoint_id,
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "workspace_id": self.workspace_id,
            "at_ms": self.at_ms,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "latency_ms": self.latency_ms,
            "response": self.response,
            "body": self.body,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TestSend:
        """Parse the stored form."""
        return cls(**raw)

    @property
    def attempt(self) -> Attempt:
        """The test as the log's one attempt."""
        return Attempt(
            number=1,
            at_ms=self.at_ms,
            status=self.status,
            error=self.error,
            latency_ms=self.latency_ms,
            response=self.response,
            outcome=AttemptOutcome.DELIVERED if self.ok else AttemptOutcome.DEAD,
        )

    @property
    def delivery(self) -> Delivery:
        """The test as a delivery of one attempt (for the delivery page)."""
        return Delivery(
            id=self.delivery_id,
            event_id=self.event_id,
            endpoint_id=self.endpoint_id,
            state=DeliveryState.DELIVERED if self.ok else DeliveryState.DEAD,
            attempts_made=1,
            created_ms=self.at_ms,
            attempts=(self.attempt,),
        )

    @property
    def event(self) -> SentEvent:
        """The test event as sent."""
        return SentEvent(
            self.event_id, self.event_type, self.workspace_id, self.at_ms, self.body.encode()
        )

    def log_entry(self) -> dict[str, Any]:
        """A line of the delivery log (as :func:`producer.deliveries.attempt_entry`)."""
        return {
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "endpoint_id": self.endpoint_id,
            "test": True,
            **self.attempt.to_dict(),
        }


async def record(redis: RedisClient, keys: Keys, sent: TestSend, retention_s: int) -> None:
    """Keep a test send at the head of its endpoint's list (the newest :data:`KEPT`)."""
    key = keys.endpoint_tests(sent.endpoint_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(key, orjson.dumps(sent.to_dict()))
        pipe.ltrim(key, 0, KEPT - 1)
        pipe.expire(key, retention_s)
        await pipe.execute()


async def recent(redis: RedisClient, keys: Keys, endpoint_id: str) -> list[TestSend]:
    """An endpoint's kept test sends, newest first."""
    rows = cast(list[str], await redis.lrange(keys.endpoint_tests(endpoint_id), 0, -1))
    return [TestSend.from_dict(orjson.loads(row)) for row in rows]
