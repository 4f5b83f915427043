"""Redis outages with endpoints at their in-flight cap: every acknowledged event is
delivered and every lease comes back (issue 13, point 1).

Both tests run a real worker against a private ``redis-server`` of their own while two
or three endpoints, on a receiver taking 100 ms per answer, are at their cap of 10. An
outcome that cannot be written used to cancel the rest of its batch, and a delivery
cancelled while waiting in its endpoint's line kept the next freed slot for good: the
endpoints stalled with all their leases held and nothing in flight.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import cast

import redis.asyncio as aioredis

from producer.context import Producer
from producer.endpoint import Endpoint
from producer.events import Event
from producer.keys import LAYOUT, Keys

from harness import Receiver, ReceiverFactory, RedisServerFactory, ScriptedResponse
from harness.polling import wait_until
from support import RunningWorker, make_event, producer_for, start_worker, worker_env

ANSWER = ScriptedResponse(status=200, delay_s=0.1)
DELIVERY_DEADLINE_S = 40.0


async def endpoints_on(producer: Producer, receiver: Receiver, count: int) -> list[Endpoint]:
    return [
        await producer.endpoints.create(
            workspace_id="ws_1",
            url=receiver.url(f"/hook/{n}"),
            events=["*"],
            owner_email="o@example.com",
        )
        for n in range(count)
    ]


def in_flight_at(receiver: Receiver) -> int:
    """Requests the receiver has read and not answered yet."""
    return len(receiver.received) - len(receiver.statuses)


async def leases_held(client: aioredis.Redis, endpoints: list[Endpoint]) -> int:
    """Leases on the endpoints, over every worker (fields with a ``:`` are not counts)."""
    total = 0
    for endpoint in endpoints:
        key = f"{Keys().prefix}:{LAYOUT['endpoint_leases'].format(endpoint.id)}"
        fields = cast(dict[bytes, bytes], await client.hgetall(key))
        total += sum(int(value) for name, value in fields.items() if b":" not in name)
    return total


async def expect_all_delivered_and_leases_back(
    url: str,
    receiver: Receiver,
    endpoints: list[Endpoint],
    events: list[Event],
    worker: RunningWorker,
) -> None:
    wanted = {(f"/hook/{n}", event.id) for n in range(len(endpoints)) for event in events}

    def missing() -> set[tuple[str, str]]:
        return wanted - {(r.path, r.json()["id"]) for r in receiver.received}

    await wait_until(
        lambda: not missing(),
        DELIVERY_DEADLINE_S,
        interval=0.1,
        message=f"acknowledged deliveries never arrived (of {len(wanted)})",
    )
    client = aioredis.Redis.from_url(url)
    try:

        async def recorded() -> bool:
            return int(await client.hget(Keys().stats, "delivered") or 0) >= len(wanted)

        await wait_until(recorded, 20, interval=0.1, message="outcomes not all recorded")

        async def settled() -> bool:
            return await leases_held(client, endpoints) == 0

        await wait_until(settled, 10, interval=0.1, message="leases not handed back")
        delivered = int(await client.hget(Keys().stats, "delivered") or 0)
    finally:
        await client.aclose()
    assert delivered == len(wanted)
    # The books were right all along: the self-check found nothing to repair.
    assert worker.metrics.lease_repairs._value.get() == 0


async def test_a_redis_restart_with_endpoints_at_their_cap_loses_and_stalls_nothing(
    redis_server_factory: RedisServerFactory, receiver_factory: ReceiverFactory, tmp_path: Path
) -> None:
    server = redis_server_factory("--appendonly", "yes")
    receiver = await receiver_factory(default=ANSWER)
    worker = await start_worker(worker_env(server.url, NOTIFY_OUTBOX=str(tmp_path)))
    try:
        async with producer_for(server.url) as producer:
            endpoints = await endpoints_on(producer, receiver, 2)
            events = [make_event(producer, data={"n": n}) for n in range(250)]
            await producer.publisher.publish_many(events)  # acknowledged: on disk (AOF)
        # Both endpoints at their cap, the rest of the batches waiting in their lines.
        await wait_until(lambda: in_flight_at(receiver) >= 20, 20, message="never at the cap")
        # SIGTERM, then the same port and folder: the AOF is read back. In a thread: the
        # worker and the receiver run on while Redis restarts, as they would.
        await asyncio.to_thread(server.restart)
        await expect_all_delivered_and_leases_back(server.url, receiver, endpoints, events, worker)
        assert not worker.task.done()
    finally:
        assert await worker.stop() == 0


async def test_a_full_redis_with_endpoints_at_their_cap_loses_and_stalls_nothing(
    redis_server_factory: RedisServerFactory, receiver_factory: ReceiverFactory, tmp_path: Path
) -> None:
    server = redis_server_factory("--maxmemory-policy", "noeviction")
    receiver = await receiver_factory(default=ANSWER)
    worker = await start_worker(worker_env(server.url, NOTIFY_OUTBOX=str(tmp_path)))
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    accepted: list[Event] = []
    refused = 0
    try:
        async with producer_for(server.url) as producer:
            endpoints = await endpoints_on(producer, receiver, 3)

            async def publish(count: int) -> None:
                nonlocal refused
                for start in range(0, count, 5):  # bounded: `count` events, 5 a batch
                    chunk = [make_event(producer, data={"n": n}) for n in range(start, start + 5)]
                    try:
                        await producer.publisher.publish_many(chunk)
                    except Exception:  # refused (OOM): not acknowledged
                        refused += 1
                    else:
                        accepted.extend(chunk)
                    await asyncio.sleep(0.02)  # pacing: a steady flow, not a wait

            await publish(150)
            await wait_until(lambda: in_flight_at(receiver) >= 30, 20, message="never at the cap")
            used = int((await admin.info("memory"))["used_memory"])
            await admin.config_set("maxmemory", used)  # every write refused from now on
            full_until = time.monotonic() + 3
            await publish(50)
            # The outage lasts 3 s (longer than one outcome write's first retries).
            await asyncio.sleep(max(0.0, full_until - time.monotonic()))
            oom = (await admin.info("errorstats")).get("errorstat_OOM", {})
            await admin.config_set("maxmemory", 0)
            await publish(50)
        assert refused > 0, "no publish was refused: Redis was never full"
        assert int(oom.get("count", 0)) > refused, "the worker's writes were never refused"
        await expect_all_delivered_and_leases_back(
            server.url, receiver, endpoints, accepted, worker
        )
        assert not worker.task.done()
    finally:
        await admin.aclose()
        assert await worker.stop() == 0
