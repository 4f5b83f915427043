"""Publishing: fan an event out to its subscribers and enqueue the deliveries."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

from producer.cluster import RedisClient
from producer.endpoints import EndpointRegistry
from producer.events import Event
from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.scripts import load_script
from producer.settings import ProducerSettings

# Bounds the size of one script call (Redis blocks while a script runs). Up to this
# many events are stored all-or-nothing: the API's batch limit is the same.
EVENTS_PER_SCRIPT = 1000


def new_delivery_id() -> str:
    """A fresh delivery id (``dlv_`` + 20 hex characters)."""
    return "dlv_" + secrets.token_hex(10)


@dataclass(frozen=True)
class PublishResult:
    """The outcome of publishing one event."""

    event_id: str
    deliveries: int
    duplicate: bool

    def to_dict(self) -> dict[str, object]:
        """The result as printed by ``publish --json``."""
        return {"id": self.event_id, "deliveries": self.deliveries, "duplicate": self.duplicate}


class Publisher:
    """Stores events once, creates one delivery per subscribed endpoint, enqueues them.

    Publishing the same event id twice creates no second set of deliveries. When
    :meth:`publish_many` returns, every delivery is stored, and its job is in the
    outbox at least or it waits on the ready list for a bell job (see outbox.lua):
    nothing acknowledged can be lost.
    """

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        registry: EndpointRegistry,
        dispatcher: JobDispatcher,
        settings: ProducerSettings,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._registry = registry
        self._dispatcher = dispatcher
        self._settings = settings
        self._script = load_script(redis, keys, "producer", "publish.lua")

    async def publish(self, event: Event) -> PublishResult:
        """Publish one event."""
        (result,) = await self.publish_many([event])
        return result

    async def publish_many(self, events: Sequence[Event]) -> list[PublishResult]:
        """Publish events in as few round trips as their number allows."""
        results: list[PublishResult] = []
        for start in range(0, len(events), EVENTS_PER_SCRIPT):
            results.extend(await self._publish_chunk(events[start : start + EVENTS_PER_SCRIPT]))
        return results

    async def _publish_chunk(self, events: Sequence[Event]) -> list[PublishResult]:
        endpoints = await self._registry.workspace_endpoints(e.workspace_id for e in events)
        args: list[str | int] = [
            int(time.time() * 1000),
            self._settings.batch_size,
            self._settings.delivery_retention,
            len(events),
        ]
        for event in events:
            targets = [ep.id for ep in endpoints[event.workspace_id] if ep.wants(event.type)]
            args += [
                event.id,
                event.body.decode(),
                event.type,
                event.workspace_id,
                event.created_ms,
                len(targets),
            ]
            for endpoint_id in targets:
                args += [new_delivery_id(), endpoint_id]
        counts, members = await self._script(*args)
        await self._dispatcher.dispatch(members)
        return [
            PublishResult(event.id, max(count, 0), count < 0)
            for event, count in zip(events, counts, strict=True)
        ]
