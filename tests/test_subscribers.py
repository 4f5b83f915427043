"""Endpoint changes: a publisher's cached lists never outlive one, whoever made it,
and an edit never undoes what a worker changed meanwhile.

Each publisher keeps its workspaces' endpoints in memory, tagged with the workspace's
version; the publish script refuses a stale version. Here a second producer on the
same private Redis plays another API process making the changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import TryAgainError

from producer.context import Producer
from producer.endpoint import Endpoint, EndpointStatus, Subscribers
from producer.endpoints import EndpointRegistry
from producer.publisher import STALE_TRIES, Publisher, SubscribersChanging

from harness import Receiver
from support import make_event, producer_for

WS = "ws_1"


@pytest.fixture
async def other(redis_url: str) -> AsyncIterator[Producer]:
    """Another process's producer: its changes reach ``producer`` only through Redis."""
    async with producer_for(redis_url) as p:
        yield p


async def create(producer: Producer, receiver: Receiver, events: str = "*") -> Endpoint:
    return await producer.endpoints.create(
        workspace_id=WS, url=receiver.url(), events=events.split(","), owner_email="o@example.com"
    )


async def delivered_to(producer: Producer, event_type: str = "issue.created") -> set[str]:
    """Publish one event; the endpoint ids it got a delivery for."""
    result = await producer.publisher.publish(make_event(producer, event_type))
    return {d.endpoint_id for d in await producer.deliveries.for_event(result.event_id)}


async def test_every_kind_of_change_elsewhere_reaches_the_next_publish(
    producer: Producer, other: Producer, receiver: Receiver
) -> None:
    first = await create(other, receiver)
    assert await delivered_to(producer) == {first.id}  # the list is now cached

    second = await create(other, receiver)
    assert await delivered_to(producer) == {first.id, second.id}

    await other.endpoints.update(second.id, events=["comment.*"])
    assert await delivered_to(producer) == {first.id}
    assert await delivered_to(producer, "comment.created") == {first.id, second.id}

    await other.endpoints.set_status(first.id, EndpointStatus.DISABLED)
    # A disabled endpoint's deliveries wait, paused (docs/endpoint-states.md).
    assert await delivered_to(producer, "comment.created") == {first.id, second.id}
    assert await producer.pausing.paused(first.id) == 1

    await other.endpoints.delete(second.id)
    assert await delivered_to(producer, "comment.created") == {first.id}
    assert await producer.pausing.paused(first.id) == 2

    await other.endpoints.set_status(first.id, EndpointStatus.ACTIVE)
    assert await delivered_to(producer) == {first.id}


async def test_a_change_in_one_workspace_leaves_the_others_cached(
    producer: Producer, other: Producer, receiver: Receiver, redis: aioredis.Redis
) -> None:
    await create(other, receiver)
    await other.endpoints.create(
        workspace_id="ws_2", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    await delivered_to(producer)
    before = await redis.get(producer.keys.workspace_version("ws_2"))
    await create(other, receiver)
    assert await redis.get(producer.keys.workspace_version("ws_2")) == before
    assert len(await delivered_to(producer)) == 2


class RacingRegistry(EndpointRegistry):
    """Changes the workspace right after reading it, ``races`` times."""

    def __init__(self, producer: Producer, races: int) -> None:
        super().__init__(producer.redis, producer.keys, producer.catalogue, producer.secret_box)
        self.producer = producer
        self.races = races
        self.reads = 0

    async def workspace_endpoints(self, workspace_ids: Iterable[str]) -> dict[str, Subscribers]:
        listed = await super().workspace_endpoints(workspace_ids)
        self.reads += 1
        if self.races > 0:
            self.races -= 1
            for workspace in listed:
                await self.producer.redis.incr(self.producer.keys.workspace_version(workspace))
        return listed


def racing_publisher(producer: Producer, races: int) -> tuple[Publisher, RacingRegistry]:
    registry = RacingRegistry(producer, races)
    publisher = Publisher(
        producer.redis, producer.keys, registry, producer.dispatcher, producer.settings
    )
    return publisher, registry


async def test_a_change_between_reading_and_publishing_is_caught_and_read_again(
    producer: Producer, receiver: Receiver
) -> None:
    endpoint = await create(producer, receiver)
    publisher, registry = racing_publisher(producer, races=1)
    result = await publisher.publish(make_event(producer, "issue.created"))
    assert registry.reads == 2
    (delivery,) = await producer.deliveries.for_event(result.event_id)
    assert delivery.endpoint_id == endpoint.id


async def test_endpoints_that_never_hold_still_fail_the_publish_with_nothing_stored(
    producer: Producer, receiver: Receiver, redis: aioredis.Redis
) -> None:
    await create(producer, receiver)
    publisher, registry = racing_publisher(producer, races=STALE_TRIES)
    event = make_event(producer, "issue.created")
    with pytest.raises(SubscribersChanging, match="kept changing") as caught:
        await publisher.publish(event)
    # A TryAgainError: the API answers 503, and the same event id can be sent again.
    assert isinstance(caught.value, TryAgainError)
    assert registry.reads == STALE_TRIES
    assert not await redis.exists(producer.keys.event(event.id))
    assert (await publisher.publish(event)).deliveries == 1


class StaleReads(EndpointRegistry):
    """Reads an endpoint as it was before a worker changed its status (a race, made sure)."""

    def __init__(self, producer: Producer, stale: Endpoint) -> None:
        super().__init__(producer.redis, producer.keys, producer.catalogue, producer.secret_box)
        self.stale = stale

    async def get(self, endpoint_id: str) -> Endpoint:
        return self.stale


async def test_an_edit_racing_a_worker_keeps_the_status_the_worker_set(
    producer: Producer, receiver: Receiver, redis: aioredis.Redis
) -> None:
    endpoint = await create(producer, receiver)
    await redis.hset(producer.keys.endpoint(endpoint.id), "status", "failing")  # the worker
    registry = StaleReads(producer, endpoint)

    await registry.update(endpoint.id, url="https://example.com/new")
    await registry.rotate_secret(endpoint.id)

    now = await producer.endpoints.get(endpoint.id)
    assert now.status == EndpointStatus.FAILING
    assert now.url == "https://example.com/new"
    assert now.previous_secret == endpoint.secret != now.secret
