"""Publishing: fan an event out to its subscribers and enqueue the deliveries."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
import redis.exceptions
from redis.typing import EncodableT

from producer.endpoint import Subscribers
from producer.endpoint_kind import EndpointKind
from producer.endpoints import EndpointRegistry
from producer.events import Event
from producer.fifo import Ordering
from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.pausing import BACKLOG_FULL, LoggedPauseEvents, PauseEvents
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from producer.settings import ProducerSettings

# Bounds the size of one script call (Redis blocks while a script runs). Up to this
# many events are stored all-or-nothing: the API's batch limit is the same.
EVENTS_PER_SCRIPT = 1000
# Workspaces whose endpoints a publisher keeps in memory (oldest dropped first).
MAX_CACHED_WORKSPACES = 10_000
# publish.lua's answer when a cached endpoint list is out of date: reload and try again,
# this many times in all.
STALE = "stale"
STALE_TRIES = 5


def new_delivery_id() -> str:
    """A fresh delivery id (``dlv_`` + 20 hex characters)."""
    return "dlv_" + secrets.token_hex(10)


class SubscribersChanging(redis.exceptions.TryAgainError):
    """A workspace's endpoints changed during every try of a publish; nothing was stored.

    A ``TryAgainError``: like Redis's own, it asks the caller to retry (the API's 503).
    """

    def __init__(self, workspaces: Sequence[str]) -> None:
        super().__init__(f"the endpoints of {', '.join(workspaces)} kept changing; try again")


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
    outbox at least or it waits on the ready list for a worker (see outbox.lua):
    nothing acknowledged can be lost.
    """

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        registry: EndpointRegistry,
        dispatcher: JobDispatcher,
        settings: ProducerSettings,
        pause_events: PauseEvents | None = None,
    ) -> None:
        """``pause_events``: told when a paused backlog overflows (default: logged)."""
        self.pause_events: PauseEvents = pause_events or LoggedPauseEvents()
        self._redis = redis
        self._keys = keys
        self._registry = registry
        self._dispatcher = dispatcher
        self._settings = settings
        # Whether the delivery log is the database's (a full poll feed logs its dead).
        self._script = load_script(redis, keys, "producer", "publish.lua")
        # Endpoints by workspace, each list tagged with the version it was read at: the
        # publish script checks the version, so a single event costs one round trip.
        self._cache: dict[str, Subscribers] = {}

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
        workspaces = {event.workspace_id for event in events}
        for _ in range(STALE_TRIES):
            subscribers = await self._subscribers(workspaces)
            versions = [[workspace, current.version] for workspace, current in subscribers.items()]
            fifo = [
                endpoint.id
                for current in subscribers.values()
                for endpoint in current.endpoints
                if endpoint.ordering == Ordering.FIFO
            ]
            polled = sorted(
                endpoint.id
                for current in subscribers.values()
                for endpoint in current.endpoints
                if endpoint.kind == EndpointKind.POLL
            )
            rows = []
            for event in events:
                deliveries = []
                for endpoint_id in subscribers[event.workspace_id].for_event(event):
                    deliveries += [new_delivery_id(), endpoint_id]
                rows.append(
                    [event.id, event.type, event.workspace_id, str(event.created_ms), deliveries]
                )
            # Bodies go as arguments of their own, the rest as one JSON object: redis-py
            # packs each argument in Python, which cost more than the script for 8 per event.
            header = {
                "now": int(time.time() * 1000),
                "batch_size": self._settings.batch_size,
                "retention": self._settings.delivery_retention,
                # With a database the delivery log reads its own index, not Redis's.
                "indexed": not self._settings.database_url,
                "paused_max": self._settings.paused_max_per_endpoint,
                "versions": versions,
                "fifo": fifo,
                "poll": polled,
                "poll_max": self._settings.poll_max_per_endpoint,
                "events": rows,
            }
            args: list[EncodableT] = [orjson.dumps(header), *(event.body for event in events)]
            first, second, *rest = await self._script(*args)
            if first != STALE:
                await self._dispatcher.dispatch(second)
                overflowed = rest[0]
                for k in range(0, len(overflowed), 2):
                    await self.pause_events.paused_backlog_full(
                        overflowed[k], overflowed[k + 1], BACKLOG_FULL
                    )
                return [
                    PublishResult(event.id, max(count, 0), count < 0)
                    for event, count in zip(events, first, strict=True)
                ]
            for workspace in second:
                self._cache.pop(workspace, None)
        raise SubscribersChanging(sorted(workspaces))

    async def _subscribers(self, workspaces: set[str]) -> dict[str, Subscribers]:
        """Each workspace's endpoints, from the cache or (missing ones) from Redis."""
        missing = workspaces - self._cache.keys()
        if missing:
            for workspace, loaded in (await self._registry.workspace_endpoints(missing)).items():
                if len(self._cache) >= MAX_CACHED_WORKSPACES:
                    del self._cache[next(iter(self._cache))]  # the oldest entry
                self._cache[workspace] = loaded
        return {workspace: self._cache[workspace] for workspace in sorted(workspaces)}
