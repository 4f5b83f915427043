"""Failure modes at the edges: bad DNS, broken or endless answers, silence, a Redis restart,
a queue loop that dies.

Each case runs a real worker against real servers on 127.0.0.1 and ends in a recorded
attempt (never a stuck worker): the attempt's ``error``/``status`` is checked, the
delivery has moved on (scheduled, dead or delivered), and the same worker still
delivers a normal event afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from producer.context import Producer
from producer.deliveries import AttemptOutcome, Delivery, DeliveryState
from producer.endpoint import Endpoint, EndpointStatus
from producer.events import Event, parse_event
from worker.http_parser import DRAIN_LIMIT_BYTES
from worker.localredis import free_port

from harness import Receiver, ReceiverFactory, RedisServerFactory, ScriptedResponse
from harness.polling import wait_until
from harness.raw_http import (
    Behaviour,
    RawHttpServer,
    endless_chunked,
    endless_header,
    head_only,
    huge_body,
    short_body,
    silent,
    trickle,
)
from support import RunningWorker, delivery_job_counts, producer_for, start_worker, worker_env

StartWorker = Callable[..., Awaitable[RunningWorker]]
RawServerFactory = Callable[[Behaviour], Awaitable[RawHttpServer]]

EXCERPT_BYTES = 1024
HEALTHY_WORKSPACE = "ws_ok"


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
async def producer(redis_url: str) -> AsyncIterator[Producer]:
    async with producer_for(redis_url) as p:
        yield p


@pytest.fixture
async def raw_server_factory() -> AsyncIterator[RawServerFactory]:
    servers: list[RawHttpServer] = []

    async def factory(behaviour: Behaviour) -> RawHttpServer:
        server = RawHttpServer(behaviour)
        await server.start()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop()


# -- helpers -------------------------------------------------------------------------


def make_event(producer: Producer, workspace: str = "ws_1", n: int = 1) -> Event:
    raw = {"type": "issue.created", "workspace_id": workspace, "data": {"n": n}}
    return parse_event(raw, producer.catalogue, max_payload_bytes=256 * 1024)


async def make_endpoint(
    producer: Producer, url: str, workspace: str = "ws_1", **options: Any
) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id=workspace,
        url=url,
        events=["*"],
        owner_email="owner@example.com",
        **options,
    )


async def first_attempt(producer: Producer, endpoint_id: str, timeout: float) -> Delivery:  # noqa: ASYNC109
    """Wait until the endpoint's (only) delivery has an attempt recorded; return it."""

    async def attempted() -> bool:
        deliveries = await producer.deliveries.for_endpoint(endpoint_id)
        return bool(deliveries and deliveries[0].attempts)

    await wait_until(attempted, timeout, message=f"no attempt recorded for {endpoint_id}")
    (delivery,) = await producer.deliveries.for_endpoint(endpoint_id)
    return delivery


async def assert_still_delivers(
    producer: Producer, receiver: Receiver, worker: RunningWorker
) -> None:
    """The worker that just went through the failure delivers a normal event."""
    assert not worker.task.done(), "the worker stopped"
    assert worker.service._alive(), "a queue loop of the worker died"
    ep = await make_endpoint(producer, receiver.url(), workspace=HEALTHY_WORKSPACE)
    before = len(receiver.received)
    result = await producer.publisher.publish(make_event(producer, HEALTHY_WORKSPACE))
    requests = await receiver.wait_for(before + 1, 10)
    assert requests[-1].json()["id"] == result.event_id
    delivery = await first_attempt(producer, ep.id, 5)

    async def delivered() -> bool:
        (d,) = await producer.deliveries.for_endpoint(ep.id)
        return d.state == DeliveryState.DELIVERED

    await wait_until(delivered, 5, message=f"healthy delivery stuck in {delivery.state}")
    assert not worker.task.done()


# -- 1. DNS ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy",
    [
        {"ALLOW_PRIVATE_DESTINATIONS": "1"},
        # The SSRF guard's resolver wraps the default one: same error, same record.
        {"ALLOW_PRIVATE_DESTINATIONS": "0", "ALLOWED_PRIVATE_NETWORKS": "127.0.0.1/32"},
    ],
    ids=["default-resolver", "guarded-resolver"],
)
async def test_unresolvable_host_is_a_dns_failure_then_scheduled(
    producer: Producer,
    receiver: Receiver,
    worker_factory: StartWorker,
    policy: dict[str, str],
) -> None:
    ep = await make_endpoint(producer, "http://no-such-host.invalid/hook")
    worker = await worker_factory(RETRY_SCHEDULE="0,30", DELIVERY_TIMEOUT="5", **policy)
    await producer.publisher.publish(make_event(producer))

    delivery = await first_attempt(producer, ep.id, 10)
    (attempt,) = delivery.attempts
    assert attempt.status is None
    assert attempt.error == "dns: cannot resolve no-such-host.invalid"
    assert attempt.outcome == AttemptOutcome.RETRY
    assert delivery.state == DeliveryState.SCHEDULED
    assert attempt.next_attempt_ms is not None
    assert attempt.next_attempt_ms - attempt.at_ms >= 29_000
    assert worker.metrics.attempts.labels("error")._value.get() == 1
    await assert_still_delivers(producer, receiver, worker)


# -- 2. connection closed mid-response, or an answer that is not HTTP --------------------


@pytest.mark.parametrize(
    ("behaviour", "error_prefix"),
    [
        (head_only(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"), "disconnected:"),
        (head_only(b"HTTP/1.1 20"), "disconnected:"),
        (short_body(declared=100, sent=10), "connection: Response payload is not completed"),
        (head_only(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), "invalid response: Bad status line"),
        (endless_header(), "invalid response: more than 16384 bytes of headers"),
    ],
    ids=[
        "cut-in-headers",
        "cut-in-status-line",
        "body-shorter-than-content-length",
        "not-http",
        "endless-header-line",
    ],
)
async def test_connection_closed_mid_response_is_a_failed_attempt(
    producer: Producer,
    receiver: Receiver,
    worker_factory: StartWorker,
    raw_server_factory: RawServerFactory,
    behaviour: Behaviour,
    error_prefix: str,
) -> None:
    server = await raw_server_factory(behaviour)
    ep = await make_endpoint(producer, server.url())
    # A single-step schedule: the first failure is the last, the delivery ends dead.
    worker = await worker_factory(RETRY_SCHEDULE="0", DELIVERY_TIMEOUT="5")
    await producer.publisher.publish(make_event(producer))

    (exchange,) = await server.wait_finished(1, 10)
    assert exchange.bytes_sent > 0  # the partial answer did go out
    delivery = await first_attempt(producer, ep.id, 10)
    (attempt,) = delivery.attempts
    assert attempt.status is None, "a broken answer was taken for a response"
    assert (attempt.error or "").startswith(error_prefix), attempt.error
    # One line for logs and emails, and mapped by describe_error: not aiohttp's
    # "ClientResponseError: 400, ..." (a status the receiver never sent).
    assert "\n" not in (attempt.error or "")
    assert "ClientResponseError" not in (attempt.error or "")
    assert attempt.latency_ms < 2000
    assert attempt.outcome == AttemptOutcome.DEAD
    assert delivery.state == DeliveryState.DEAD

    async def failing() -> bool:
        return (await producer.endpoints.get(ep.id)).status == EndpointStatus.FAILING

    await wait_until(failing, 5, message="endpoint not marked failing")
    await assert_still_delivers(producer, receiver, worker)


# -- 3. huge and endless bodies --------------------------------------------------------

HUGE_BYTES = 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("behaviour", "fill"),
    [(huge_body(HUGE_BYTES, fill=b"x"), "x"), (endless_chunked(fill=b"z"), "z")],
    ids=["50MB-content-length", "endless-chunked"],
)
async def test_huge_or_endless_body_is_cut_off_quickly(
    producer: Producer,
    receiver: Receiver,
    worker_factory: StartWorker,
    raw_server_factory: RawServerFactory,
    behaviour: Behaviour,
    fill: str,
) -> None:
    server = await raw_server_factory(behaviour)
    ep = await make_endpoint(producer, server.url())
    # A long timeout: reading to the end (or to the timeout) would show in the latency.
    worker = await worker_factory(RETRY_SCHEDULE="0,30", DELIVERY_TIMEOUT="10")
    await producer.publisher.publish(make_event(producer))

    (exchange,) = await server.wait_finished(1, 15)
    server_side_s = exchange.duration_s
    delivery = await first_attempt(producer, ep.id, 15)
    (attempt,) = delivery.attempts
    # 200 with a body too big to read is still a 2xx: delivered, with a 1 KiB excerpt.
    assert (attempt.status, attempt.error) == (200, None)
    assert attempt.outcome == AttemptOutcome.DELIVERED
    assert delivery.state == DeliveryState.DELIVERED
    assert len(attempt.response.encode()) == EXCERPT_BYTES
    assert attempt.response == fill * EXCERPT_BYTES
    assert attempt.latency_ms < 2000, attempt.latency_ms
    # The worker hung up after DRAIN_LIMIT_BYTES: the server saw the peer go away fast,
    # having pushed only what the socket buffers hold, not the whole (or endless) body.
    assert exchange.peer_gone
    assert server_side_s < 2, server_side_s
    assert exchange.body_bytes_sent >= DRAIN_LIMIT_BYTES
    assert exchange.body_bytes_sent < HUGE_BYTES // 2, exchange.body_bytes_sent
    await assert_still_delivers(producer, receiver, worker)


# -- 4. silence after accepting --------------------------------------------------------


async def test_receiver_that_never_answers_times_out_within_the_delivery_timeout(
    producer: Producer,
    receiver: Receiver,
    worker_factory: StartWorker,
    raw_server_factory: RawServerFactory,
) -> None:
    server = await raw_server_factory(silent())
    ep = await make_endpoint(producer, server.url())
    worker = await worker_factory(RETRY_SCHEDULE="0,30", DELIVERY_TIMEOUT="1")
    await producer.publisher.publish(make_event(producer))

    (exchange,) = await server.wait_finished(1, 10)
    assert exchange.bytes_sent == 0
    assert exchange.peer_gone  # the worker gave up and closed the connection
    assert 0.9 <= exchange.duration_s < 2.0, exchange.duration_s
    delivery = await first_attempt(producer, ep.id, 5)
    (attempt,) = delivery.attempts
    assert attempt.status is None
    assert attempt.error == "timeout: no complete answer within 1s"
    assert 900 <= attempt.latency_ms < 2000, attempt.latency_ms
    assert attempt.outcome == AttemptOutcome.RETRY
    assert delivery.state == DeliveryState.SCHEDULED
    await assert_still_delivers(producer, receiver, worker)


@pytest.mark.parametrize(
    "behaviour",
    [
        trickle(b"HTTP/1.1 200 OK\r\nX-Slow: "),
        trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"),
    ],
    ids=["head", "body"],
)
async def test_receiver_that_trickles_its_answer_times_out_within_the_delivery_timeout(
    producer: Producer,
    receiver: Receiver,
    worker_factory: StartWorker,
    raw_server_factory: RawServerFactory,
    behaviour: Behaviour,
) -> None:
    """A byte every 0.2 s never lets a read wait long: only the total timeout ends it."""
    server = await raw_server_factory(behaviour)
    ep = await make_endpoint(producer, server.url())
    worker = await worker_factory(RETRY_SCHEDULE="0,30", DELIVERY_TIMEOUT="1")
    await producer.publisher.publish(make_event(producer))

    (exchange,) = await server.wait_finished(1, 10)
    assert exchange.peer_gone
    assert 0.9 <= exchange.duration_s < 2.0, exchange.duration_s
    delivery = await first_attempt(producer, ep.id, 5)
    (attempt,) = delivery.attempts
    assert attempt.status is None
    assert attempt.error == "timeout: no complete answer within 1s"
    assert attempt.outcome == AttemptOutcome.RETRY
    await assert_still_delivers(producer, receiver, worker)


# -- 5. Redis restart mid-run, with AOF --------------------------------------------------

RESTART_EVENTS = 300
AFTER_RESTART_EVENTS = 30
OUTAGE_S = 1.0
"""How long Redis stays down: the scenario's outage, long enough for every connection
of the worker (bullmq's blocking one included) to be refused at least once."""
HTTP_SLOTS = 10


async def publish_acknowledged(
    producer: Producer,
    events: list[Event],
    timeout: float,  # noqa: ASYNC109  # a deadline for the retries
) -> list[str]:
    """Publish until acknowledged, retrying a lost connection with the same event ids
    (what a producer is told to do). Returns the errors of the failed tries."""
    deadline = time.monotonic() + timeout
    errors: list[str] = []
    while True:
        try:
            await producer.publisher.publish_many(events)
        except (RedisConnectionError, ConnectionError, OSError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            return errors


def received_ids(receiver: Receiver) -> list[str]:
    return [str(r.json()["id"]) for r in receiver.received]


async def queue_state(producer: Producer, worker: RunningWorker) -> str:
    """Where things stand, for a failure message."""
    try:
        counts = await delivery_job_counts(
            producer, "wait", "active", "delayed", "failed", "prioritized"
        )
        stats = await producer.redis.hgetall(producer.keys.stats)
        outbox = await producer.redis.zcard(producer.keys.outbox)
    except Exception as exc:
        return f"Redis unreadable: {exc!r}"
    return (
        f"jobs={counts} stats={stats} outbox={outbox} worker_done={worker.task.done()} "
        f"loops_alive={worker.service._alive()} "
        f"deferred={worker.metrics.deferred._value.get()}"
    )


@pytest.mark.parametrize("how", ["restart", "crash"])
async def test_every_acknowledged_event_arrives_across_a_redis_restart(
    redis_server_factory: RedisServerFactory,
    receiver_factory: ReceiverFactory,
    tmp_path: Path,
    how: str,
) -> None:
    server = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    # 10 HTTP slots and 50 ms per answer: 300 deliveries take about 2 s, and the outage
    # lands in the middle. The endpoint's in-flight cap is out of the way (see below).
    receiver = await receiver_factory(default=ScriptedResponse(delay_s=0.05))
    async with producer_for(server.url) as producer:
        # max_in_flight at its limit: with the default (10), a backlog on one endpoint is
        # deferred round after round by the limiter and 300 deliveries take ~40-50 s even
        # without any outage (reported separately); this test is about the restart.
        ep = await make_endpoint(producer, receiver.url(), max_in_flight=1000)
        worker = await start_worker(
            worker_env(server.url, NOTIFY_OUTBOX=str(tmp_path), WORKER_CONCURRENCY=str(HTTP_SLOTS))
        )
        try:
            events = [make_event(producer, n=n) for n in range(RESTART_EVENTS)]
            results = await producer.publisher.publish_many(events)
            assert [r.deliveries for r in results] == [1] * RESTART_EVENTS
            acknowledged = {r.event_id for r in results}

            await receiver.wait_for(RESTART_EVENTS // 5, 15)
            outage_started = time.monotonic()
            # In a thread: the worker and the receiver keep running during the outage.
            await asyncio.to_thread(server.kill if how == "crash" else server.stop)
            received_at_outage = len(receiver.received)
            await asyncio.sleep(OUTAGE_S)
            sent_while_down = len(receiver.received) - received_at_outage
            await asyncio.to_thread(server.restart)  # same port and folder: AOF replayed
            outage_s = time.monotonic() - outage_started
            assert received_at_outage < RESTART_EVENTS, "the run finished before the outage"

            later = [make_event(producer, n=1000 + n) for n in range(AFTER_RESTART_EVENTS)]
            publish_errors = await publish_acknowledged(producer, later, 10)
            acknowledged |= {e.id for e in later}

            async def all_arrived() -> bool:
                return acknowledged <= set(received_ids(receiver))

            try:
                await wait_until(all_arrived, 45, interval=0.1, message="events lost")
            except AssertionError as exc:
                missing = acknowledged - set(received_ids(receiver))
                raise AssertionError(
                    f"{exc}: {len(missing)} of {len(acknowledged)} acknowledged events never "
                    f"arrived; {await queue_state(producer, worker)}"
                ) from None
            counts = Counter(received_ids(receiver))
            duplicates = sum(c - 1 for c in counts.values())
            print(
                f"redis {how}: outage {outage_s:.2f} s after {received_at_outage} of "
                f"{RESTART_EVENTS} requests, {sent_while_down} sent while down; "
                f"{len(acknowledged)} acknowledged events, "
                f"{len(receiver.received)} requests, {duplicates} duplicate(s); "
                f"failed publish tries after the restart: {publish_errors}"
            )
            assert set(counts) == acknowledged  # and nothing else arrived
            # Sent again: what was sent while Redis was down (the outcomes could not be
            # recorded), what was in flight when it went away or came back, and what had
            # been answered but waited for its group commit when it went away (at most one
            # request per HTTP slot each).
            assert duplicates <= sent_while_down + 3 * HTTP_SLOTS, (duplicates, sent_while_down)
            assert not worker.task.done(), "the worker stopped"
            assert worker.service._alive(), "a queue loop died during the outage"

            async def all_recorded() -> bool:
                deliveries = await producer.deliveries.for_endpoint(ep.id, limit=1000)
                return len(deliveries) == len(acknowledged) and all(
                    d.state == DeliveryState.DELIVERED for d in deliveries
                )

            try:
                await wait_until(all_recorded, 15, interval=0.1, message="not all recorded")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {await queue_state(producer, worker)}") from None
        finally:
            code = await worker.stop()
    assert code == 0


# -- 6. a queue loop that dies ----------------------------------------------------------


async def healthz(session: aiohttp.ClientSession, port: int, path: str = "/healthz") -> int:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        await response.read()
        return response.status


@pytest.mark.parametrize("how", ["cancelled", "crashed", "pickup cancelled"])
async def test_a_dead_queue_loop_turns_healthz_503_and_exits_1(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker, how: str
) -> None:
    port = free_port()
    await make_endpoint(producer, receiver.url())
    worker = await worker_factory(METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        assert await healthz(session, port) == 200
        assert await healthz(session, port, "/readyz") == 200

        loop = worker.service._loops[0]  # the delivery queue's loop
        if how == "pickup cancelled":  # the loop that takes single events (worker/pickup.py)
            loop = worker.service._pickups[0]
        if how.endswith("cancelled"):
            loop.cancel()
        else:
            # bullmq's run() catches an error of its own loop, prints it and returns.
            def broken_process_job(*_args: Any) -> Any:
                raise RuntimeError("simulated bullmq loop failure")

            worker.service._queue_workers[0].processJob = broken_process_job
            # A full batch: a job (a partial one waits on the ready list, without one).
            batch = producer.settings.batch_size
            await producer.publisher.publish_many([make_event(producer) for _ in range(batch)])
        await wait_until(loop.done, 10, message="the queue loop did not end")
        if how.endswith("cancelled"):
            assert loop.cancelled()
        else:
            assert not loop.cancelled()
            assert loop.exception() is None  # bullmq's run() returned: no error to see

        statuses: list[int] = []

        async def unhealthy() -> bool:
            assert not worker.task.done(), (
                f"the worker exited before /healthz said 503 ({statuses})"
            )
            statuses.append(await healthz(session, port))
            return statuses[-1] == 503

        await wait_until(unhealthy, 5, message="/healthz never answered 503")
        if not worker.task.done():
            assert await healthz(session, port, "/readyz") == 503
    started = time.monotonic()
    code = await asyncio.wait_for(worker.task, 15)
    assert code == 1
    # The housekeeping loop notices within its interval (2 s), the drain is prompt.
    assert time.monotonic() - started < 10
