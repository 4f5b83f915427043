"""The producer's parts wired together, with one Redis connection set and a clean close."""

from __future__ import annotations

import asyncio
from types import TracebackType

import structlog
from aiohttp.abc import AbstractResolver
from redis import exceptions as redis_errors

from producer.claims import EventClaims
from producer.deliveries import DeliveryLog
from producer.destinations import RegistrationCheck
from producer.endpoint import Endpoint
from producer.endpoint_index import EndpointIndex
from producer.endpoints import EndpointRegistry
from producer.events import Catalogue
from producer.feeds import PollFeeds
from producer.fields import EVENT_FIELDS
from producer.jobs import JobDispatcher, QueueOptions
from producer.keys import Keys
from producer.partitioning import Partitions, check_partitions
from producer.pausing import OperationalPauseEvents, Pausing
from producer.publisher import Publisher
from producer.redis.clients import redis_client
from producer.redis_guard import CHECK_TIMEOUT_S
from producer.routed import RoutedDeliveryLog, RoutedFeeds, RoutedPausing, RoutedPublisher
from producer.routing import RoutedRegistry
from producer.secretbox import SecretBox
from producer.settings import DELIVERY_TIMEOUT, ProducerSettings
from producer.store.postgres import PostgresLogStore
from producer.store.reads import StoredDeliveryLog
from producer.store.startup import open_log_store

log = structlog.get_logger("cliq.producer.context")


class Producer:
    """Registry, publisher and delivery log over one Redis, in every partition: each
    partition's own with one, routed ones (:mod:`producer.routing`) with more.

    Use as ``async with Producer(settings) as producer: ...``; nothing connects
    before the first command.
    """

    def __init__(
        self,
        settings: ProducerSettings,
        queue_options: QueueOptions | None = None,
        resolver: AbstractResolver | None = None,
        max_endpoint_timeout_s: float = DELIVERY_TIMEOUT.value,
    ) -> None:
        """``resolver``: what registration resolves endpoint hosts with (default:
        aiohttp's, the workers' own); ``max_endpoint_timeout_s``: the workers'
        DELIVERY_TIMEOUT, the longest timeout an endpoint may ask for."""
        self.settings = settings
        # Partition 0's keys are the ones of a single-partition layout (KEY_PREFIX).
        self.partitions = Partitions(settings.key_prefix, settings.partition_count)
        self.keys: Keys = self.partitions.home
        self.catalogue = Catalogue.with_extras(settings.event_types_extra)
        self.redis = redis_client(settings.effective_redis_url)
        self.secret_box = SecretBox(settings.secret_encryption_key)
        self.destinations = RegistrationCheck(settings.destination_policy, resolver)
        self._queue_options = queue_options
        self._max_endpoint_timeout_s = max_endpoint_timeout_s
        # With more than one partition, where each endpoint is (producer.endpoint_index).
        self.index = (
            EndpointIndex(self.redis, self.partitions) if self.partitions.count > 1 else None
        )
        # Partition k's dispatcher, feeds, registry, publisher, log and pausing: lane k.
        self.dispatchers = [self._dispatcher(k) for k in range(self.partitions.count)]
        self.dispatcher = self.dispatchers[0]
        feeds = [self._feeds(k) for k in range(self.partitions.count)]
        registries = [self._registry(k, feeds[k]) for k in range(self.partitions.count)]
        pause_events = OperationalPauseEvents(
            self.redis, self.keys, self.dispatcher, settings.paused_max_per_endpoint
        )
        publishers = [
            Publisher(
                self.redis,
                self.partitions.of(k),
                registries[k],
                self.dispatchers[k],
                settings,
                pause_events=pause_events,
            )
            for k in range(self.partitions.count)
        ]
        pausings = [
            Pausing(self.redis, self.partitions.of(k), registries[k])
            for k in range(self.partitions.count)
        ]
        self.registries = registries
        if self.index is None:
            self.endpoints: EndpointRegistry = registries[0]
            self.feeds: PollFeeds = feeds[0]
            self.publisher: Publisher = publishers[0]
            self.pausing: Pausing = pausings[0]
        else:
            routed = RoutedRegistry(registries, self.index)
            self.endpoints = routed
            self.feeds = RoutedFeeds(feeds, routed)
            claims = EventClaims(self.redis, self.partitions, settings.idempotency_window)
            self.publisher = RoutedPublisher(publishers, pause_events, claims)
            self.pausing = RoutedPausing(pausings, routed)
        self.deliveries = self._log([self._lane_log(k, None) for k in range(self.partitions.count)])
        # The delivery log's database (DATABASE_URL), once open_log_store() has opened it.
        self.log_store: PostgresLogStore | None = None

    async def check_partitions(self) -> None:
        """Refuse a Redis written with another PARTITIONS, and a cluster with more primaries
        than partitions (:mod:`producer.partitioning`). A Redis that does not answer is
        not checked (logged): the process starts as with the guard, and the next start
        checks it."""
        s = self.settings
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await check_partitions(
                    self.redis,
                    self.partitions,
                    below_primaries=s.partitions is None or s.partitions_below_primaries,
                )
        # A cluster none of whose nodes answer raises RedisClusterException, no RedisError.
        except (TimeoutError, redis_errors.RedisError, redis_errors.RedisClusterException) as exc:
            log.warning("partitions_check_skipped", error=repr(exc))

    async def open_log_store(self) -> None:
        """Open the PostgreSQL store when ``DATABASE_URL`` is set (the delivery log is
        then read from it: :class:`producer.store.reads.StoredDeliveryLog`), refusing a schema
        older than this build's (:class:`producer.store.startup.SchemaTooOld`) and an
        unreachable database (:class:`producer.store.startup.DatabaseUnreachable`)."""
        if self.settings.database_url and self.log_store is None:
            self.log_store = await open_log_store(self.settings.database_url)
            store = self.log_store
            self.deliveries = self._log(
                [self._lane_log(k, store) for k in range(self.partitions.count)]
            )

    def keys_of(self, endpoint: Endpoint) -> Keys:
        """The keys of the partition an endpoint lives in: its workspace's."""
        return self.partitions.for_workspace(endpoint.workspace_id)

    async def event_workspace(self, event_id: str) -> str | None:
        """The workspace of a stored event with this id, from the first partition that
        has one (an event id is unique within its workspace, which is in one partition)."""
        for keys in self.partitions.all:
            found = await self.redis.hget(keys.event(event_id), EVENT_FIELDS.workspace)
            if isinstance(found, str):
                return found
        return None

    def _dispatcher(self, k: int) -> JobDispatcher:
        url = self.settings.effective_redis_url
        options = self._queue_options
        return JobDispatcher(self.redis, self.partitions.of(k), url, options, self.keys)

    def _feeds(self, k: int) -> PollFeeds:
        s = self.settings
        return PollFeeds(
            self.redis,
            self.partitions.of(k),
            s.delivery_retention,
            bool(s.database_url),
            s.log_keep_per_endpoint,
        )

    def _registry(self, k: int, feeds: PollFeeds) -> EndpointRegistry:
        return EndpointRegistry(
            self.redis,
            self.partitions.of(k),
            self.catalogue,
            self.secret_box,
            self.destinations,
            self._max_endpoint_timeout_s,
            self.dispatchers[k],
            feeds,
            self.index,
            k,
        )

    def _lane_log(self, k: int, store: PostgresLogStore | None) -> DeliveryLog:
        s = self.settings
        keys, dispatcher = self.partitions.of(k), self.dispatchers[k]
        if store is None:
            return DeliveryLog(
                self.redis,
                keys,
                dispatcher,
                s.batch_size,
                s.poll_max_per_endpoint,
                s.delivery_retention,
            )
        return StoredDeliveryLog(
            self.redis,
            keys,
            dispatcher,
            s.batch_size,
            store,
            s.poll_max_per_endpoint,
            s.delivery_retention,
        )

    def _log(self, lanes: list[DeliveryLog]) -> DeliveryLog:
        if isinstance(self.endpoints, RoutedRegistry):
            return RoutedDeliveryLog(lanes, self.endpoints)
        return lanes[0]

    async def close(self) -> None:
        """Close every connection this producer opened."""
        for dispatcher in self.dispatchers:
            await dispatcher.close()
        await self.destinations.close()
        await self.redis.aclose()
        if self.log_store is not None:
            await self.log_store.close()

    async def __aenter__(self) -> Producer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
