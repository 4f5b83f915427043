"""The delivery log written by a process of its own (``cliq-webhooks log-writer``) for
workers started with ``LOG_WRITER=separate``, all as real processes: every attempt
reaches PostgreSQL once and the records leave Redis, a log-writer killed and started
again loses nothing, and without any log-writer the workers stop at ``LOG_OUTBOX_MAX``."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from producer.context import Producer
from producer.settings import SettingsError
from producer.store.migrate import migrate
from producer.store.postgres import PostgresLogStore
from worker.localredis import free_port
from worker.logwatch import LIVE_S
from worker.logwriter import GROUP
from worker.settings import WorkerSettings

from harness import ReceiverFactory, ScriptedResponse
from harness.logbatches import assert_each_attempt_once, logged
from harness.polling import wait_until
from harness.postgres import PostgresServer
from support import (
    LOG_WRITER_COMMAND,
    WorkerProcess,
    endpoint_for,
    outbox_empty,
    publish_numbered,
)

FIVE_ATTEMPTS = 5  # support.TEST_SCHEDULE
Spawn = Callable[..., WorkerProcess]


async def probe(process: WorkerProcess, path: str) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of one of the process's probes (0 while it does not listen)."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{process.metrics_port}{path}") as response,
        ):
            body: dict[str, Any] = await response.json()
            return response.status, body
    except aiohttp.ClientConnectionError:
        return 0, {}


async def healthy(process: WorkerProcess) -> None:
    async def answers() -> bool:
        assert process.process.poll() is None, process.log_text()
        return (await probe(process, "/healthz"))[0] == 200

    await wait_until(answers, 20, interval=0.1, message="it did not start")


async def ready_says(
    process: WorkerProcess, timeout_s: float = 20, **expected: object
) -> dict[str, Any]:
    """Poll ``/readyz`` until its body holds ``expected``; returns the body."""
    seen: dict[str, Any] = {}

    async def holds() -> bool:
        nonlocal seen
        _status, seen = await probe(process, "/readyz")
        return all(seen.get(key) == value for key, value in expected.items())

    await wait_until(holds, timeout_s, interval=0.1, message=f"/readyz did not say {expected}")
    return seen


async def metric(process: WorkerProcess, name: str) -> float:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{process.metrics_port}/metrics") as response,
    ):
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} is not exported")


async def pending(redis: aioredis.Redis, producer: Producer) -> int:
    return int((await redis.xpending(producer.keys.log_outbox, GROUP))["pending"])


async def records_left(redis: aioredis.Redis, producer: Producer) -> list[str]:
    prefix = producer.keys.prefix
    return [k async for k in redis.scan_iter(f"{prefix}:dlv:*")] + [
        k async for k in redis.scan_iter(f"{prefix}:evt:*")
    ]


def test_log_writer_takes_worker_or_separate_only() -> None:
    assert WorkerSettings.from_env({}).writes_log
    assert not WorkerSettings.from_env({"LOG_WRITER": "Separate"}).writes_log
    with pytest.raises(SettingsError, match="LOG_WRITER='elsewhere': must be worker or separate"):
        WorkerSettings.from_env({"LOG_WRITER": "elsewhere"})


async def test_a_separate_log_writer_logs_every_attempt_once_and_the_worker_writes_none(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    postgres_url: str,
    store: PostgresLogStore,
    spawn_worker: Spawn,
) -> None:
    good = await receiver_factory()
    bad = await receiver_factory(default=ScriptedResponse(status=500, body=b"nope"))
    await endpoint_for(producer, good)
    bad_id = await endpoint_for(producer, bad)
    worker = spawn_worker(DATABASE_URL=postgres_url, LOG_WRITER="separate")
    writer = spawn_worker(LOG_WRITER_COMMAND, DATABASE_URL=postgres_url)
    await healthy(worker)
    await healthy(writer)

    await publish_numbered(producer, 6)
    await wait_until(lambda: logged(store, 6, 6), 40, message="not all in the log")
    await wait_until(lambda: outbox_empty(redis, producer), 20, message="not drained")
    total = 6 * 1 + 6 * FIVE_ATTEMPTS
    await assert_each_attempt_once(store, total)
    # What is final left Redis as it was written (the dead are replayed from the log).
    assert await records_left(redis, producer) == []
    assert len(await store.dead_delivery_ids(bad_id)) == 6
    # The log-writer process wrote every outcome, the worker none.
    assert await metric(writer, "cliq_log_outcomes_written_total") == total
    assert await metric(worker, "cliq_log_outcomes_written_total") == 0
    # Each says how the log is written: the worker from the log-writer's heartbeat.
    assert await ready_says(worker, log_store="ok", log_writers=1, log_outbox=0)
    assert await ready_says(writer, status="ready", log_store="ok", log_outbox=0)

    writer.signal(signal.SIGTERM)
    assert await writer.wait(30) == 0
    assert await redis.hgetall(producer.keys.log_writers) == {}
    assert await ready_says(worker, log_store="no_writer", log_writers=0)
    worker.signal(signal.SIGTERM)
    assert await worker.wait(30) == 0


async def test_a_log_writer_killed_and_started_again_loses_nothing(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    own_postgres: PostgresServer,
    spawn_worker: Spawn,
) -> None:
    url = own_postgres.url()
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    await migrate(pool)
    await pool.close()
    good = await receiver_factory()
    await endpoint_for(producer, good)
    worker = spawn_worker(DATABASE_URL=url, LOG_WRITER="separate")
    first = spawn_worker(LOG_WRITER_COMMAND, DATABASE_URL=url)
    await healthy(worker)
    await healthy(first)
    await publish_numbered(producer, 5)
    # Written to the log, not only received (an outbox still empty then may fill later).
    store = await PostgresLogStore.open(url)
    try:
        await wait_until(lambda: logged(store, 5, 0), 20, message="not in the log")
    finally:
        await store.close()
    await wait_until(lambda: outbox_empty(redis, producer), 20, message="not drained")

    # The database goes away: the log-writer reads the next outcomes and cannot write
    # them, so they are pending under it when it is killed.
    own_postgres.stop()
    await publish_numbered(producer, 5)
    await good.wait_for(10, 15)

    async def read_not_written() -> bool:
        return await pending(redis, producer) == 5

    await wait_until(read_not_written, 15, message="not read")
    assert await ready_says(worker, log_store="failing", log_writers=1)
    first.signal(signal.SIGKILL)
    assert await first.wait(10) == -signal.SIGKILL
    # Its heartbeat goes stale: the worker sees that no log-writer runs.
    assert await ready_says(worker, LIVE_S + 10, log_store="no_writer", log_writers=0)
    assert await pending(redis, producer) == 5

    own_postgres.restart()
    second = spawn_worker(LOG_WRITER_COMMAND, DATABASE_URL=url)
    await publish_numbered(producer, 5)
    await good.wait_for(15, 15)
    # The new one takes over what the dead one held (idle past JOB_LOCK_TIMEOUT).
    await wait_until(lambda: outbox_empty(redis, producer), 30, message="not drained")
    assert await pending(redis, producer) == 0
    store = await PostgresLogStore.open(url)
    try:
        await wait_until(lambda: logged(store, 15, 0), 10, message="not all in the log")
        await assert_each_attempt_once(store, 15)
    finally:
        await store.close()
    assert await records_left(redis, producer) == []
    assert await ready_says(worker, log_store="ok", log_writers=1, log_outbox=0)
    for process in (second, worker):
        process.signal(signal.SIGTERM)
        assert await process.wait(30) == 0


async def test_without_a_log_writer_a_separate_worker_stops_at_log_outbox_max(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    postgres_url: str,
    store: PostgresLogStore,
    spawn_worker: Spawn,
) -> None:
    good = await receiver_factory()
    await endpoint_for(producer, good)
    worker = spawn_worker(DATABASE_URL=postgres_url, LOG_WRITER="separate", LOG_OUTBOX_MAX="3")
    await healthy(worker)
    await publish_numbered(producer, 3)
    await good.wait_for(3, 15)
    await wait_until(lambda: "intake_stopped" in worker.log_events(), 15, message="went on")
    status, body = await probe(worker, "/readyz")
    assert status == 503
    assert (body["log_store"], body["log_outbox"], body["log_writers"]) == ("no_writer", 3, 0)
    # A full batch is a queue job, which a worker that stopped its intake leaves alone.
    later = await publish_numbered(producer, producer.settings.batch_size)
    total = 3 + len(later)
    with pytest.raises(AssertionError):
        await good.wait_for(4, 5)  # two housekeeping rounds and more
    assert len(good.received) == 3

    writer = spawn_worker(LOG_WRITER_COMMAND, DATABASE_URL=postgres_url)
    await good.wait_for(total, 30)
    await wait_until(lambda: outbox_empty(redis, producer), 30, message="not drained")
    await wait_until(lambda: "intake_resumed" in worker.log_events(), 15, message="not resumed")
    await wait_until(lambda: logged(store, total, 0), 10, message="not all in the log")
    await assert_each_attempt_once(store, total)
    for process in (writer, worker):
        process.signal(signal.SIGTERM)
        assert await process.wait(30) == 0


async def test_without_a_database_the_log_writer_idles_not_ready_until_stopped(
    spawn_worker: Spawn,
) -> None:
    writer = spawn_worker(LOG_WRITER_COMMAND)
    await healthy(writer)
    status, body = await probe(writer, "/readyz")
    assert (status, body) == (503, {"status": "not_ready", "redis": True, "log_store": "none"})
    assert "log_writer_idle" in writer.log_events()
    writer.signal(signal.SIGTERM)
    assert await writer.wait(15) == 0


async def test_the_log_writer_refuses_an_older_schema_and_an_unreachable_database(
    postgres_empty_url: str, spawn_worker: Spawn
) -> None:
    unmigrated = spawn_worker(LOG_WRITER_COMMAND, DATABASE_URL=postgres_empty_url)
    assert await unmigrated.wait(30) == 2
    assert "cliq-webhooks migrate" in unmigrated.log_text()
    gone = f"postgresql://cliq:secret@127.0.0.1:{free_port()}/cliq"
    unreachable = spawn_worker(LOG_WRITER_COMMAND, DATABASE_URL=gone)
    assert await unreachable.wait(30) == 1
    assert "cannot reach the database" in unreachable.log_text()
    assert "secret" not in unreachable.log_text()
