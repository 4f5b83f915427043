"""Disable means pause (docs/endpoint-states.md), through real workers and receivers.

Deliveries for a disabled endpoint (queued, retrying, new) are kept as ``paused``, spend
no attempt, and resume in publish order on enable with their remaining attempts, even
when the worker resuming them is killed; ``drop`` ends them dead with the reason; the
backlog is capped (``PAUSED_MAX_PER_ENDPOINT``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from producer.context import Producer
from producer.deliveries import AttemptOutcome, Delivery, DeliveryState
from producer.endpoint import Endpoint
from producer.pausing import BACKLOG_FULL, DROPPED_BY_DISABLE
from producer.settings import ProducerSettings
from worker.resume import Resumer

from harness import Receiver, ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import PROJECT, WorkerProcess, make_event, worker_env

# One delivery per claim, as many requests as claims at once (none deferred, which would
# send it later): deliveries go out in the ready list's order, give or take the few
# claims a worker holds at once (no FIFO guarantee without FIFO endpoints).
CLAIMS_AT_ONCE = 4
IN_ORDER = {
    "WORKER_CONCURRENCY": str(CLAIMS_AT_ONCE),
    "STALLED_CONCURRENCY_SHARE": "1",
    "BATCH_SIZE": "1",
}


async def _endpoint(producer: Producer, receiver: Receiver) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )


async def _publish(producer: Producer, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        result = await producer.publisher.publish(make_event(producer))
        assert result.deliveries == 1  # a disabled endpoint still gets its delivery
        ids.append(result.event_id)
    return ids


async def _deliveries(producer: Producer, event_ids: list[str]) -> list[Delivery]:
    found = []
    for event_id in event_ids:
        found += await producer.deliveries.for_event(event_id)
    return found


async def _stats(producer: Producer) -> dict[str, int]:
    stats = await producer.redis.hgetall(producer.keys.stats)
    return {str(k): int(v) for k, v in stats.items()}


def _displacement(arrived: list[str], published: list[str]) -> int:
    """How far from its publish position the furthest event arrived."""
    assert sorted(arrived) == sorted(published)
    return max(abs(k - published.index(event_id)) for k, event_id in enumerate(arrived))


def _first_arrivals(receiver: Receiver) -> list[str]:
    seen: list[str] = []
    for request in receiver.received:
        event_id = request.json()["id"]
        if event_id not in seen:
            seen.append(event_id)
    return seen


async def test_disable_pauses_queued_retrying_and_new_deliveries_and_enable_resumes_in_order(
    producer: Producer, receiver: Receiver, worker_factory: Callable[..., Any]
) -> None:
    ep = await _endpoint(producer, receiver)
    await worker_factory(**IN_ORDER)
    # A delivery that is retrying when the endpoint is disabled.
    receiver.respond(500)
    (retrying,) = await _publish(producer, 1)
    await receiver.wait_for(1)
    await producer.pausing.disable(ep.id)
    new = await _publish(producer, 6)

    async def all_paused() -> bool:
        states = [d.state for d in await _deliveries(producer, [retrying, *new])]
        return states == [DeliveryState.PAUSED] * 7

    await wait_until(all_paused, 10, message="deliveries of a disabled endpoint not paused")
    assert len(receiver.received) == 1  # no attempt spent while paused
    (first,) = await producer.deliveries.for_event(retrying)
    assert first.attempts_made == 1
    assert all(d.attempts_made == 0 for d in await _deliveries(producer, new))
    assert await producer.pausing.paused(ep.id) == 7
    stats = await _stats(producer)
    assert stats["paused"] == 7
    assert stats.get("queued", 0) == stats.get("scheduled", 0) == 0

    await producer.pausing.enable(ep.id)
    await receiver.wait_for(8, timeout=15)
    # In publish order, the retrying one first, each with its remaining attempts.
    resumed = [r.json()["id"] for r in receiver.received[1:]]
    assert _displacement(resumed, [retrying, *new]) <= CLAIMS_AT_ONCE
    attempts = {r.json()["id"]: r.headers["X-Cliq-Attempt"] for r in receiver.received[1:]}
    assert attempts == {retrying: "2", **dict.fromkeys(new, "1")}

    async def delivered() -> bool:
        states = {d.state for d in await _deliveries(producer, [retrying, *new])}
        return states == {DeliveryState.DELIVERED}

    await wait_until(delivered, 10, message="resumed deliveries not recorded")
    stats = await _stats(producer)
    assert stats["paused"] == 0
    assert stats["delivered"] == 7
    assert await producer.pausing.paused(ep.id) == 0
    assert not await producer.redis.sismember(producer.keys.resuming, ep.id)


async def test_resume_queues_the_backlog_in_publish_order_in_chunks(
    producer: Producer, receiver: Receiver, redis: aioredis.Redis
) -> None:
    ep = await _endpoint(producer, receiver)
    await producer.pausing.disable(ep.id)
    published = await _publish(producer, 30)
    # Disabled: a resume queues nothing, and the endpoint leaves the resuming set.
    await redis.sadd(producer.keys.resuming, ep.id)
    assert await Resumer(producer.redis, producer.keys).run_once() == 0
    assert await redis.llen(producer.keys.ready) == 0
    await producer.pausing.enable(ep.id)
    # New deliveries published while the backlog waits join its end.
    published += await _publish(producer, 2)
    assert await producer.pausing.paused(ep.id) == 32
    assert await Resumer(producer.redis, producer.keys).run_once() == 32
    entries = [json.loads(e) for e in await redis.lrange(producer.keys.ready, 0, -1)]
    by_delivery = {d.id: d.event_id for d in await _deliveries(producer, published)}
    assert [by_delivery[delivery_id] for delivery_id, _ in entries] == published
    assert {attempt for _, attempt in entries} == {1}


async def test_a_worker_killed_mid_resume_loses_nothing_sends_nothing_twice_keeps_order(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    spawn_worker: Callable[..., WorkerProcess],
) -> None:
    receiver = await receiver_factory(ScriptedResponse(delay_s=0.02))
    ep = await _endpoint(producer, receiver)
    await producer.pausing.disable(ep.id)
    published = await _publish(producer, 120)
    first = spawn_worker(**IN_ORDER)
    await producer.pausing.enable(ep.id)
    await receiver.wait_for(30, timeout=15)
    first.process.kill()  # SIGKILL, mid-resume
    first.process.wait()
    # What it held goes back to the head of the ready list once its lock expires: those
    # few arrive late (at least once), the rest keep their order.
    held: set[str] = set()
    for claim_id in await redis.hkeys(producer.keys.claims):
        entries = await redis.lrange(producer.keys.claimed(str(claim_id)), 0, -1)
        held.update(json.loads(entry)[0] for entry in entries)
    assert len(held) <= CLAIMS_AT_ONCE + 1  # its claims and its inbox
    spawn_worker(**IN_ORDER)

    async def all_delivered() -> bool:
        states = {d.state for d in await _deliveries(producer, published)}
        return states == {DeliveryState.DELIVERED}

    await wait_until(all_delivered, 20, message="the resumed backlog was not delivered")
    deliveries = await _deliveries(producer, published)
    # Also late: what it had sent when it died (answered, not recorded), sent again.
    counts = Counter(request.json()["id"] for request in receiver.received)
    late = {d.event_id for d in deliveries if d.id in held} | {
        event_id for event_id, n in counts.items() if n > 1
    }
    # Nothing lost; the order kept (the resume order itself is exact: the test above).
    on_time = [e for e in published if e not in late]
    arrived = [e for e in _first_arrivals(receiver) if e not in late]
    # Nothing lost. The order is kept up to the crash; after it, the endpoint's slots
    # that the dead worker leased stay taken until their leases expire, and what the
    # other worker defers meanwhile comes back in its own order (docs/endpoint-states.md:
    # only a FIFO endpoint keeps a strict order across a crash).
    assert sorted(arrived) == sorted(on_time)
    before_the_kill = arrived[:25]  # 30 had arrived
    assert all(abs(k - on_time.index(e)) <= CLAIMS_AT_ONCE for k, e in enumerate(before_the_kill))
    # Nothing twice: each delivery is recorded once, by its first attempt; only what the
    # killed worker held can have reached the receiver twice.
    assert len(receiver.received) - len(published) <= len(held)
    for delivery in deliveries:
        assert [a.number for a in delivery.attempts] == [1], delivery
        assert delivery.attempts[0].outcome == AttemptOutcome.DELIVERED
    stats = await _stats(producer)
    assert stats["delivered"] == 120
    assert stats["paused"] == stats["queued"] == 0


async def test_disable_with_drop_ends_paused_and_new_deliveries_dead_with_the_reason(
    producer: Producer, receiver: Receiver, worker_factory: Callable[..., Any]
) -> None:
    ep = await _endpoint(producer, receiver)
    await producer.pausing.disable(ep.id)
    paused = await _publish(producer, 3)
    await worker_factory()
    await producer.pausing.disable(ep.id, drop=True)
    assert await producer.pausing.drops(ep.id)
    later = await _publish(producer, 2)

    async def dead() -> bool:
        states = {d.state for d in await _deliveries(producer, paused + later)}
        return states == {DeliveryState.DEAD}

    await wait_until(dead, 10, message="dropped deliveries did not end dead")
    errors = [d.attempts[-1].error for d in await _deliveries(producer, paused + later)]
    assert errors == [f"not sent: {DROPPED_BY_DISABLE}"] * 3 + ["not sent: endpoint disabled"] * 2
    assert receiver.received == []
    assert await producer.deliveries.dead_total(ep.id) == 5
    # Dead, so replayable: once enabled, a replay delivers them.
    await producer.pausing.enable(ep.id)
    assert not await producer.pausing.drops(ep.id)
    await producer.deliveries.replay(await producer.deliveries.dead_ids(ep.id))
    await receiver.wait_for(5, timeout=10)


async def test_the_paused_backlog_is_capped_and_the_oldest_end_dead_counted(
    redis_url: str, receiver: Receiver, worker_factory: Callable[..., Any]
) -> None:
    settings = {"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1"}
    capped = {**settings, "PAUSED_MAX_PER_ENDPOINT": "3"}
    async with Producer(ProducerSettings.from_env(capped)) as producer:
        ep = await _endpoint(producer, receiver)
        await producer.pausing.disable(ep.id)
        published = await _publish(producer, 5)
        worker = await worker_factory(PAUSED_MAX_PER_ENDPOINT="3", **IN_ORDER)
        assert await producer.pausing.paused(ep.id) == 3

        async def dropped() -> bool:
            oldest = await _deliveries(producer, published[:2])
            return {d.state for d in oldest} == {DeliveryState.DEAD}

        await wait_until(dropped, 10, message="the oldest paused deliveries did not end dead")
        for delivery in await _deliveries(producer, published[:2]):
            assert delivery.attempts[-1].error == f"not sent: {BACKLOG_FULL}"
        newest = await _deliveries(producer, published[2:])
        assert {d.state for d in newest} == {DeliveryState.PAUSED}
        metric = worker.metrics.paused_dropped.labels("backlog_full")._value.get()
        assert metric == 2
        stats = await _stats(producer)
        assert stats["paused"] == 3
        assert stats["dead"] == 2
        await producer.pausing.enable(ep.id)
        await receiver.wait_for(3, timeout=10)
        assert _displacement(_first_arrivals(receiver), published[2:]) <= CLAIMS_AT_ONCE


async def test_deleting_a_paused_endpoint_ends_its_backlog_dead(
    producer: Producer, receiver: Receiver, worker_factory: Callable[..., Any]
) -> None:
    ep = await _endpoint(producer, receiver)
    await producer.pausing.disable(ep.id)
    published = await _publish(producer, 3)
    await worker_factory()
    await producer.endpoints.delete(ep.id)

    async def dead() -> bool:
        states = {d.state for d in await _deliveries(producer, published)}
        return states == {DeliveryState.DEAD}

    await wait_until(dead, 10, message="a deleted endpoint's paused deliveries not ended")
    errors = {d.attempts[-1].error for d in await _deliveries(producer, published)}
    assert errors == {"not sent: endpoint deleted"}
    assert (await _stats(producer))["paused"] == 0


def _cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **worker_env(redis_url)},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_cli_pauses_drops_and_shows_the_paused_count(
    redis_url: str, producer: Producer, receiver: Receiver
) -> None:
    ep = await _endpoint(producer, receiver)
    helped = await asyncio.to_thread(_cli, redis_url, "endpoint", "disable", "--help")
    assert "kept as paused and spend no attempt" in " ".join(helped.stdout.split())
    assert "--drop" in helped.stdout
    # `endpoint --help` says what each state does to the deliveries.
    states = await asyncio.to_thread(_cli, redis_url, "endpoint", "--help")
    text = " ".join(states.stdout.split())
    for said in (
        "Deliveries go on as for active; the next success makes it active again",
        "queued, retrying and new deliveries are kept as paused and spend no attempt",
        "enable resumes them in publish order",
        "its paused deliveries end dead at once ('endpoint disabled (drop)')",
        "queued, retrying and paused deliveries end dead ('endpoint deleted')",
    ):
        assert said in text, said
    disabled = await asyncio.to_thread(_cli, redis_url, "endpoint", "disable", ep.id)
    assert disabled.returncode == 0, disabled.stderr
    assert "0 deliveries paused, nothing is lost" in disabled.stdout
    await _publish(producer, 2)
    shown = await asyncio.to_thread(_cli, redis_url, "endpoint", "show", ep.id, "--json")
    assert json.loads(shown.stdout)["paused"] == 2
    status = await asyncio.to_thread(_cli, redis_url, "status", "--json")
    assert json.loads(status.stdout)["deliveries"]["paused"] == 2
    dropped = await asyncio.to_thread(
        _cli, redis_url, "endpoint", "disable", "--drop", ep.id, "--json"
    )
    assert json.loads(dropped.stdout)["drop"] is True
    assert await producer.pausing.paused(ep.id) == 0
    enabled = await asyncio.to_thread(_cli, redis_url, "endpoint", "enable", ep.id)
    assert "is now active" in enabled.stdout
    assert not await producer.pausing.drops(ep.id)
