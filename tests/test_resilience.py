"""Crashes, signals, outages: nothing accepted is lost, and workers recover by themselves."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.endpoint import EndpointStatus

from harness import ReceiverFactory, RedisServer, ScriptedResponse, SmtpServer
from harness.polling import wait_until
from support import (
    PROJECT,
    WorkerProcess,
    delivery_job_counts,
    make_event,
    producer_for,
    start_worker,
    worker_env,
)

SpawnWorker = Callable[..., WorkerProcess]


async def publish_one(producer: Producer, event_type: str = "issue.created") -> str:
    return (await producer.publisher.publish(make_event(producer, event_type))).event_id


async def delivery_state(producer: Producer, event_id: str) -> DeliveryState:
    (delivery,) = await producer.deliveries.for_event(event_id)
    return delivery.state


async def test_sigkill_mid_delivery_another_worker_finishes_the_job(
    producer: Producer, receiver_factory: ReceiverFactory, spawn_worker: SpawnWorker
) -> None:
    receiver = await receiver_factory(hang_cap_s=30)
    receiver.script(ScriptedResponse(hang=True))  # the first request never gets an answer
    await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    doomed = spawn_worker(DELIVERY_TIMEOUT="20")
    event_id = await publish_one(producer)
    (first,) = await receiver.wait_for(1, 15)
    doomed.signal(signal.SIGKILL)
    assert await doomed.wait(10) == -signal.SIGKILL

    spawn_worker()  # JOB_LOCK_TIMEOUT=2: it takes over the dead worker's job
    requests = await receiver.wait_for(2, 20)
    assert requests[1].headers["X-Cliq-Delivery"] == first.headers["X-Cliq-Delivery"]

    async def delivered() -> bool:
        return await delivery_state(producer, event_id) == DeliveryState.DELIVERED

    await wait_until(delivered, 10, message="delivery not finished by the second worker")
    (delivery,) = await producer.deliveries.for_event(event_id)
    # The killed attempt was never recorded: the survivor's attempt is number 1.
    assert [a.number for a in delivery.attempts] == [1]
    failed = await delivery_job_counts(producer, "failed")
    assert failed["failed"] == 0


async def test_sigterm_drains_in_flight_attempts_and_exits_zero(
    producer: Producer, receiver_factory: ReceiverFactory, spawn_worker: SpawnWorker
) -> None:
    receiver = await receiver_factory()
    receiver.script(ScriptedResponse(status=200, delay_s=1.5))
    endpoint = await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    worker = spawn_worker(SHUTDOWN_GRACE="10")
    event_id = await publish_one(producer)
    await receiver.wait_for(1, 15)
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert await worker.wait(15) == 0, worker.log_text()
    drain_s = time.monotonic() - started
    # It waited for the slow answer (1.5 s) and not much longer.
    assert 0.5 < drain_s < 8, drain_s
    assert await delivery_state(producer, event_id) == DeliveryState.DELIVERED
    log = worker.log_text()
    assert "drained" in worker.log_events()
    assert "delivery_attempt" in worker.log_events()
    assert endpoint.secret not in log
    assert endpoint.secret.removeprefix("whsec_") not in log


async def test_sigterm_past_the_grace_period_loses_nothing(
    producer: Producer, receiver_factory: ReceiverFactory, spawn_worker: SpawnWorker
) -> None:
    receiver = await receiver_factory(hang_cap_s=30)
    receiver.script(ScriptedResponse(hang=True))
    await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    worker = spawn_worker(SHUTDOWN_GRACE="1", DELIVERY_TIMEOUT="20")
    event_id = await publish_one(producer)
    await receiver.wait_for(1, 15)
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert await worker.wait(15) == 0, worker.log_text()
    assert time.monotonic() - started < 6
    assert "drain_timeout" in worker.log_events()

    spawn_worker()  # the cancelled attempt was not recorded: this worker makes it

    async def delivered() -> bool:
        return await delivery_state(producer, event_id) == DeliveryState.DELIVERED

    await wait_until(delivered, 20, message="cancelled delivery was not picked up again")


async def test_worker_rides_out_a_redis_restart(
    redis_server: RedisServer, redis_url: str, receiver_factory: ReceiverFactory, tmp_path: Path
) -> None:
    receiver = await receiver_factory()
    worker = await start_worker(worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path)))
    try:
        redis_server.stop()
        redis_server.restart()  # empty again: this server keeps nothing on disk
        async with producer_for(redis_url) as producer:
            await producer.endpoints.create(
                workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
            )
            event_id = await publish_one(producer)
            (request,) = await receiver.wait_for(1, 30)
            assert request.json()["id"] == event_id
        assert not worker.task.done()
    finally:
        assert await worker.stop() == 0


async def test_failure_email_is_retried_while_smtp_is_down(
    producer: Producer,
    receiver_factory: ReceiverFactory,
    smtp_server: SmtpServer,
    tmp_path: Path,
    redis_url: str,
) -> None:
    receiver = await receiver_factory(default=ScriptedResponse(status=500))
    endpoint = await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    await smtp_server.stop()  # SMTP is down when the endpoint turns failing
    worker = await start_worker(
        worker_env(redis_url, RETRY_SCHEDULE="0", SMTP_URL=smtp_server.url, NOTIFY_RETRY_BASE="0.2")
    )
    try:
        await publish_one(producer)
        failed = worker.metrics.notifications.labels("failed")
        await wait_until(lambda: failed._value.get() >= 1, 15, message="email was never tried")
        assert (await producer.endpoints.get(endpoint.id)).status == EndpointStatus.FAILING
        await smtp_server.start()  # same port: the retried job gets through
        (message,) = await smtp_server.wait_for(1, 30)
        assert endpoint.id in message.subject
    finally:
        await worker.stop()


async def test_without_smtp_the_email_lands_in_the_outbox_folder(
    producer: Producer, receiver_factory: ReceiverFactory, tmp_path: Path, redis_url: str
) -> None:
    receiver = await receiver_factory(default=ScriptedResponse(status=500))
    endpoint = await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    outbox = tmp_path / "mail"
    worker = await start_worker(
        worker_env(redis_url, RETRY_SCHEDULE="0", NOTIFY_OUTBOX=str(outbox))
    )
    try:
        await publish_one(producer)
        await wait_until(lambda: len(list(outbox.glob("*.eml"))) == 1, 15, message="no email file")
        (email,) = outbox.glob("*.eml")
        text = email.read_text()
        assert "To: o@example.com" in text
        assert endpoint.id in text
        assert worker.metrics.notifications.labels("outbox")._value.get() == 1
    finally:
        await worker.stop()


async def test_a_worker_whose_log_reader_went_away_delivers_and_stops_on_sigterm(
    producer: Producer, receiver_factory: ReceiverFactory, redis_url: str, tmp_path: Path
) -> None:
    # As under a supervisor that was killed: every write to stderr fails (broken pipe).
    receiver = await receiver_factory()
    await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    env = {**os.environ, **worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox"))}
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the worker's first line
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", env=env, cwd=PROJECT, stdout=writer, stderr=writer
    )
    os.close(writer)
    try:
        await publish_one(producer)
        await receiver.wait_for(1, 20)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 15) == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
