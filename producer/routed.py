"""Publishing, the delivery log, poll feeds and pausing over every partition (PARTITIONS > 1).

Partition ``k`` has its own of each, over its keys; these send a call to the partition
it concerns: an endpoint's through :meth:`producer.routing.RoutedRegistry.partition_of_endpoint`,
an event batch split by workspace (one script call per partition touched), a delivery
looked up by id alone in each partition in turn (a delivery id says nothing of its
partition; such lookups are an operator's, not the hot path's). With one partition none
of this is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from producer.activity import OutcomeCounts, SentEvent
from producer.claims import EventClaims
from producer.deliveries import AttemptFilter, Delivery, DeliveryLog, LogPosition, RecentSummary
from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoint_rules import EndpointNotFound
from producer.events import Event
from producer.feeds import FeedEntry, PollFeeds
from producer.partitioning import partition_of
from producer.pausing import PauseEvents, Pausing
from producer.publisher import Publisher, PublishResult
from producer.routing import RoutedRegistry
from producer.store.reads import StoredDeliveryLog

Lane = TypeVar("Lane")


async def _lane_of(registry: RoutedRegistry, lanes: Sequence[Lane], endpoint_id: str) -> Lane:
    return lanes[await registry.partition_of_endpoint(endpoint_id)]


class RoutedPublisher(Publisher):
    """Publishes each event through its workspace's partition, once its id is claimed
    for its workspace (:mod:`producer.claims`)."""

    def __init__(
        self, lanes: Sequence[Publisher], pause_events: PauseEvents, claims: EventClaims
    ) -> None:
        self.lanes = tuple(lanes)
        self.pause_events = pause_events
        self._claims = claims

    async def publish_many(self, events: Sequence[Event]) -> list[PublishResult]:
        """Publish events: one batch (as few script calls as its size allows) per
        partition touched; results in the order of ``events``. An id another workspace
        holds is a duplicate, as with one partition."""
        results: list[PublishResult | None] = [None] * len(events)
        by_lane: dict[int, list[int]] = {}
        owned = await self._claims.claim(events)
        for position, event in enumerate(events):
            if not owned[position]:
                results[position] = PublishResult(event.id, 0, True)
                continue
            by_lane.setdefault(partition_of(event.workspace_id, len(self.lanes)), []).append(
                position
            )
        for lane, positions in sorted(by_lane.items()):
            done = await self.lanes[lane].publish_many([events[p] for p in positions])
            for position, result in zip(positions, done, strict=True):
                results[position] = result
        return [r for r in results if r is not None]


class RoutedFeeds(PollFeeds):
    """Each poll endpoint's feed, in its partition."""

    def __init__(self, lanes: Sequence[PollFeeds], registry: RoutedRegistry) -> None:
        self.lanes = tuple(lanes)
        self._routing = registry

    async def entries(self, endpoint_id: str, after: int, limit: int) -> list[FeedEntry]:
        """See the base class."""
        lane = await _lane_of(self._routing, self.lanes, endpoint_id)
        return await lane.entries(endpoint_id, after, limit)

    async def ack(self, endpoint_id: str, until: int) -> int:
        """See the base class."""
        return await (await _lane_of(self._routing, self.lanes, endpoint_id)).ack(
            endpoint_id, until
        )

    async def close(self, endpoint_id: str) -> int:
        """See the base class."""
        return await (await _lane_of(self._routing, self.lanes, endpoint_id)).close(endpoint_id)

    async def backlog(self, endpoint_id: str) -> int:
        """See the base class."""
        lane = await _lane_of(self._routing, self.lanes, endpoint_id)
        return await lane.backlog(endpoint_id)


class RoutedPausing(Pausing):
    """Each endpoint's pausing, in its partition."""

    def __init__(self, lanes: Sequence[Pausing], registry: RoutedRegistry) -> None:
        self.lanes = tuple(lanes)
        self._routing = registry

    async def _lane(self, endpoint_id: str) -> Pausing:
        return await _lane_of(self._routing, self.lanes, endpoint_id)

    async def disable(self, endpoint_id: str, *, drop: bool = False) -> Endpoint:
        """See the base class."""
        return await (await self._lane(endpoint_id)).disable(endpoint_id, drop=drop)

    async def enable(self, endpoint_id: str) -> Endpoint:
        """See the base class."""
        return await (await self._lane(endpoint_id)).enable(endpoint_id)

    async def set_status(self, endpoint_id: str, status: EndpointStatus, drop: bool) -> Endpoint:
        """See the base class."""
        return await (await self._lane(endpoint_id)).set_status(endpoint_id, status, drop)

    async def drop_backlog(self, endpoint_id: str, reason: str) -> int:
        """See the base class."""
        return await (await self._lane(endpoint_id)).drop_backlog(endpoint_id, reason)

    async def paused(self, endpoint_id: str) -> int:
        """See the base class."""
        return await (await self._lane(endpoint_id)).paused(endpoint_id)

    async def drops(self, endpoint_id: str) -> bool:
        """See the base class."""
        return await (await self._lane(endpoint_id)).drops(endpoint_id)


class RoutedDeliveryLog(DeliveryLog):
    """The delivery log over every partition: an endpoint's in its partition, a
    delivery or event by id alone in each partition in turn. With ``DATABASE_URL`` the
    lanes are :class:`StoredDeliveryLog`: reads of the store are the same in each."""

    def __init__(self, lanes: Sequence[DeliveryLog], registry: RoutedRegistry) -> None:
        self.lanes = tuple(lanes)
        self._routing = registry

    async def _lane(self, endpoint_id: str) -> DeliveryLog:
        """The endpoint's partition's log; partition 0's (it has nothing of the
        endpoint: empty answers) for an endpoint not found."""
        try:
            return await _lane_of(self._routing, self.lanes, endpoint_id)
        except EndpointNotFound:
            return self.lanes[0]

    async def load(self, ids: Sequence[str]) -> list[Delivery | None]:
        """Deliveries by id, each from the first partition that has it."""
        found: list[Delivery | None] = [None] * len(ids)
        for lane in self.lanes:
            missing = [k for k, delivery in enumerate(found) if delivery is None]
            if not missing:
                break
            for k, delivery in zip(
                missing, await lane.load([ids[k] for k in missing]), strict=True
            ):
                found[k] = delivery
        return found

    async def for_endpoint(self, endpoint_id: str, limit: int = 100) -> list[Delivery]:
        """See the base class."""
        return await (await self._lane(endpoint_id)).for_endpoint(endpoint_id, limit)

    async def for_event(self, event_id: str) -> list[Delivery]:
        """Every delivery of events with this id, over every partition (workspaces of
        different partitions may use the same event id; callers filter by workspace)."""
        seen: set[str] = set()
        found: list[Delivery] = []
        for lane in self.lanes:
            for delivery in await lane.for_event(event_id):
                if delivery.id not in seen:
                    seen.add(delivery.id)
                    found.append(delivery)
        return found

    async def dead_ids(self, endpoint_id: str, since_ms: int = 0) -> list[str]:
        """See the base class."""
        return await (await self._lane(endpoint_id)).dead_ids(endpoint_id, since_ms)

    async def replay(self, delivery_ids: Sequence[str]) -> list[str]:
        """Re-enqueue the dead ones, each in its endpoint's partition."""
        by_lane: dict[int, list[str]] = {}
        for delivery in await self.load(delivery_ids):
            if delivery is None:
                continue
            try:
                lane = await self._routing.partition_of_endpoint(delivery.endpoint_id)
            except EndpointNotFound:
                continue  # deleted: nothing to deliver it to
            by_lane.setdefault(lane, []).append(delivery.id)
        replayed: list[str] = []
        for lane, ids in sorted(by_lane.items()):
            replayed += await self.lanes[lane].replay(ids)
        return replayed

    async def recent(self, endpoint_id: str) -> RecentSummary:
        """See the base class."""
        return await (await self._lane(endpoint_id)).recent(endpoint_id)

    async def dead_total(self, endpoint_id: str) -> int:
        """See the base class."""
        return await (await self._lane(endpoint_id)).dead_total(endpoint_id)

    async def dead_overall(self) -> int:
        """Dead deliveries kept for replay over every partition (the store's once)."""
        first = self.lanes[0]
        if isinstance(first, StoredDeliveryLog):
            total = await first.dead_overall()
            for lane in self.lanes[1:]:
                assert isinstance(lane, StoredDeliveryLog)
                total += await lane.dead_only_in_redis()
            return total
        return sum([await lane.dead_overall() for lane in self.lanes])

    async def scan_attempts(
        self,
        endpoint_id: str,
        selected: AttemptFilter,
        after: LogPosition | None,
        limit: int,
    ) -> tuple[list[dict[str, Any]], LogPosition | None]:
        """See the base class."""
        lane = await self._lane(endpoint_id)
        return await lane.scan_attempts(endpoint_id, selected, after, limit)

    async def outcome_counts(
        self, endpoint_id: str, since_ms: int, bucket_ms: int
    ) -> OutcomeCounts:
        """See the base class."""
        lane = await self._lane(endpoint_id)
        return await lane.outcome_counts(endpoint_id, since_ms, bucket_ms)

    async def sent_event(self, event_id: str) -> SentEvent | None:
        """The event as sent, from the first partition that has it."""
        for lane in self.lanes:
            found = await lane.sent_event(event_id)
            if found is not None:
                return found
        return None

    async def event_types(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The type of each of these events still stored, over every partition."""
        found: dict[str, str] = {}
        for lane in self.lanes:
            missing = [i for i in event_ids if i not in found]
            if not missing:
                break
            found.update(await lane.event_types(missing))
        return found
