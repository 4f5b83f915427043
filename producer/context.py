"""The producer's parts wired together, with one Redis connection set and a clean close."""

from __future__ import annotations

import asyncio
from types import TracebackType

import structlog
from aiohttp.abc import AbstractResolver
from redis import exceptions as redis_errors

from producer.deliveries import DeliveryLog
from producer.destinations import RegistrationCheck
from producer.endpoints import EndpointRegistry
from producer.events import Catalogue
from producer.feeds import PollFeeds
from producer.jobs import JobDispatcher, QueueOptions
from producer.keys import Keys
from producer.partitioning import Partitions, check_partitions
from producer.pausing import OperationalPauseEvents, Pausing
from producer.publisher import Publisher
from producer.redis.clients import redis_client
from producer.redis_guard import CHECK_TIMEOUT_S
from producer.secretbox import SecretBox
from producer.settings import DELIVERY_TIMEOUT, ProducerSettings
from producer.store.postgres import PostgresLogStore
from producer.store.reads import StoredDeliveryLog
from producer.store.startup import open_log_store

log = structlog.get_logger("cliq.producer.context")


class Producer:
    """Registry, publisher and delivery log over one Redis.

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
        self.dispatcher = JobDispatcher(
            self.redis, self.keys, settings.effective_redis_url, queue_options
        )
        self.secret_box = SecretBox(settings.secret_encryption_key)
        self.destinations = RegistrationCheck(settings.destination_policy, resolver)
        self.feeds = PollFeeds(
            self.redis,
            self.keys,
            settings.delivery_retention,
            bool(settings.database_url),
            settings.log_keep_per_endpoint,
        )
        self.endpoints = EndpointRegistry(
            self.redis,
            self.partitions,
            self.catalogue,
            self.secret_box,
            self.destinations,
            max_endpoint_timeout_s,
            self.dispatcher,
            self.feeds,
        )
        self.publisher = Publisher(
            self.redis,
            self.keys,
            self.endpoints,
            self.dispatcher,
            settings,
            pause_events=OperationalPauseEvents(
                self.redis, self.keys, self.dispatcher, settings.paused_max_per_endpoint
            ),
        )
        self.deliveries = DeliveryLog(
            self.redis,
            self.keys,
            self.dispatcher,
            settings.batch_size,
            settings.poll_max_per_endpoint,
            settings.delivery_retention,
        )
        self.pausing = Pausing(self.redis, self.keys, self.endpoints)
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
            self.deliveries = StoredDeliveryLog(
                self.redis,
                self.keys,
                self.dispatcher,
                self.settings.batch_size,
                self.log_store,
                self.settings.poll_max_per_endpoint,
                self.settings.delivery_retention,
            )

    async def close(self) -> None:
        """Close every connection this producer opened."""
        await self.dispatcher.close()
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
