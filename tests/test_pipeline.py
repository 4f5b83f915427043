"""End to end through a real Redis, real workers and real HTTP receivers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from standardwebhooks.webhooks import Webhook

from producer.context import Producer
from producer.deliveries import Delivery, DeliveryState
from producer.endpoint import Endpoint, EndpointStatus
from producer.keys import DELIVERY_QUEUE, RETRY_QUEUE
from producer.settings import ProducerSettings

from harness import Receiver, ReceiverFactory, ScriptedResponse, SmtpServer
from harness.polling import wait_until
from support import RunningWorker, make_event, start_worker, worker_env

StartWorker = Callable[..., Awaitable[RunningWorker]]


@pytest.fixture
async def producer(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[Producer]:
    """A producer on the private Redis, reading the delivery log from ``log_env``'s store."""
    env = {"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1", **log_env}
    async with Producer(ProducerSettings.from_env(env)) as p:
        await p.open_log_store()
        yield p


@pytest.fixture
async def worker_factory(
    redis_url: str, tmp_path: Any, log_env: dict[str, str]
) -> AsyncIterator[StartWorker]:
    running: list[RunningWorker] = []

    async def factory(**overrides: str) -> RunningWorker:
        overrides.setdefault("NOTIFY_OUTBOX", str(tmp_path / "outbox"))
        worker = await start_worker(worker_env(redis_url, **log_env, **overrides))
        running.append(worker)
        return worker

    yield factory
    for worker in running:
        if not worker.task.done():
            await worker.stop()


async def endpoint(
    producer: Producer, receiver: Receiver, events: str = "*", workspace: str = "ws_1"
) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id=workspace,
        url=receiver.url(),
        events=events.split(","),
        owner_email="owner@example.com",
    )


async def recorded(
    producer: Producer,
    event_id: str,
    state: DeliveryState,
    attempts: int,
    timeout: float = 10,  # noqa: ASYNC109  # a deadline for the poll
) -> Delivery:
    """The event's (only) delivery once the log shows it in ``state`` with ``attempts``
    attempts: the receiver answers before the worker records, and the PostgreSQL log
    is written after Redis (worker/logwriter.py)."""

    async def there() -> bool:
        found = await producer.deliveries.for_event(event_id)
        return len(found) == 1 and (found[0].state, len(found[0].attempts)) == (state, attempts)

    try:
        await wait_until(there, timeout, message=f"{event_id}: not {state.value} after {attempts}")
    except AssertionError as exc:
        found = await producer.deliveries.for_event(event_id)
        seen = [(d.state.value, [a.number for a in d.attempts]) for d in found]
        raise AssertionError(f"{exc}; the log shows {seen}") from None
    (delivery,) = await producer.deliveries.for_event(event_id)
    return delivery


@pytest.mark.both_stores
async def test_fan_out_follows_workspace_and_filters(
    producer: Producer, receiver_factory: ReceiverFactory, worker_factory: StartWorker
) -> None:
    issues, comments, everything, other_ws = [await receiver_factory() for _ in range(4)]
    await endpoint(producer, issues, "issue.*")
    await endpoint(producer, comments, "comment.created")
    await endpoint(producer, everything, "*")
    await endpoint(producer, other_ws, "*", workspace="ws_2")
    await worker_factory()

    published = [
        make_event(producer, "issue.created"),
        make_event(producer, "issue.assigned"),
        make_event(producer, "comment.created"),
        make_event(producer, "comment.deleted"),
        make_event(producer, "member.joined"),
    ]
    results = await producer.publisher.publish_many(published)
    assert [r.deliveries for r in results] == [2, 2, 2, 1, 1]

    await everything.wait_for(5, 10)
    await issues.wait_for(2, 10)
    await comments.wait_for(1, 10)

    def ids(receiver: Receiver) -> set[str]:
        return {r.json()["id"] for r in receiver.received}

    assert ids(issues) == {published[0].id, published[1].id}
    assert ids(comments) == {published[2].id}
    assert ids(everything) == {e.id for e in published}
    assert other_ws.received == []


@pytest.mark.both_stores
async def test_publishing_an_event_id_twice_creates_no_second_delivery(
    producer: Producer, receiver: Receiver, redis: aioredis.Redis
) -> None:
    await endpoint(producer, receiver)
    first = await producer.publisher.publish(make_event(producer, "issue.created", id="evt_same"))
    again = await producer.publisher.publish(make_event(producer, "issue.created", id="evt_same"))
    assert (first.deliveries, first.duplicate) == (1, False)
    assert (again.deliveries, again.duplicate) == (0, True)
    assert len(await producer.deliveries.for_event("evt_same")) == 1
    assert await redis.hget(producer.keys.stats, "queued") == "1"


@pytest.mark.both_stores
async def test_deliveries_carry_both_signatures_and_the_documented_headers(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker
) -> None:
    ep = await endpoint(producer, receiver)
    await worker_factory()
    data = {"title": "Grüße 🎉", "nested": {"list": [1, 2.5, {"deep": None}]}, "big": 2**53 - 1}
    published = make_event(producer, "issue.created", data)
    await producer.publisher.publish(published)
    (request,) = await receiver.wait_for(1, 10)

    assert request.body == published.body
    expected = hmac.new(ep.secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Cliq-Signature"] == expected
    assert Webhook(ep.secret).verify(request.body, dict(request.headers))["data"] == data
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Cliq-Event"] == "issue.created"
    assert request.headers["X-Cliq-Delivery"].startswith("dlv_")
    assert request.headers["X-Cliq-Attempt"] == "1"
    assert request.headers["webhook-id"] == published.id
    assert request.headers["User-Agent"].startswith("cliq-webhooks/")


@pytest.mark.both_stores
async def test_success_is_recorded_with_status_latency_and_response(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker
) -> None:
    receiver.script(ScriptedResponse(status=202, body="accepted ✓" + "x" * 5000))
    ep = await endpoint(producer, receiver)
    worker = await worker_factory()
    await producer.publisher.publish(make_event(producer, "issue.created"))

    async def delivered() -> bool:
        # By endpoint, as the API lists them: with PostgreSQL, once written.
        found = await producer.deliveries.for_endpoint(ep.id)
        return [d.state for d in found] == [DeliveryState.DELIVERED]

    await wait_until(delivered, 10, message="delivery not recorded")
    (delivery,) = await producer.deliveries.for_endpoint(ep.id)
    (attempt,) = delivery.attempts
    assert (attempt.number, attempt.status, attempt.error) == (1, 202, None)
    # The first 1 KiB of the answer is kept (here: 1024 bytes of UTF-8).
    assert attempt.response.startswith("accepted ✓x")
    assert len(attempt.response.encode()) == 1024
    assert attempt.latency_ms > 0
    assert worker.metrics.deliveries.labels("delivered")._value.get() == 1
    assert worker.metrics.attempts.labels("2xx")._value.get() == 1


@pytest.mark.parametrize(
    ("response", "status", "error"),
    [
        (ScriptedResponse(status=404, body="no such hook"), 404, None),
        (ScriptedResponse(status=503, body="down"), 503, None),
        (ScriptedResponse(status=302, headers={"Location": "http://127.0.0.1:1/x"}), 302, None),
        (ScriptedResponse(hang=True), None, "timeout"),
    ],
    ids=["4xx", "5xx", "redirect-not-followed", "timeout"],
)
@pytest.mark.both_stores
async def test_failed_attempts_are_recorded_and_retried(
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker_factory: StartWorker,
    response: ScriptedResponse,
    status: int | None,
    error: str | None,
) -> None:
    receiver = await receiver_factory(default=response, hang_cap_s=5)
    ep = await endpoint(producer, receiver)
    await worker_factory(DELIVERY_TIMEOUT="0.5", RETRY_SCHEDULE="0,30")
    await producer.publisher.publish(make_event(producer, "issue.created"))

    async def attempted() -> bool:
        deliveries = await producer.deliveries.for_endpoint(ep.id)
        return bool(deliveries and deliveries[0].attempts)

    await wait_until(attempted, 10, message="no attempt recorded")
    (delivery,) = await producer.deliveries.for_endpoint(ep.id)
    (attempt,) = delivery.attempts
    assert delivery.state == DeliveryState.SCHEDULED
    assert attempt.status == status
    assert (attempt.error or "").startswith(error or "")
    assert attempt.outcome.value == "retry"
    assert attempt.next_attempt_ms is not None
    assert attempt.next_attempt_ms - attempt.at_ms >= 30_000

    # The retry waits on its own queue, so a backlog of new deliveries cannot delay it.
    async def retry_waiting() -> bool:
        counts = await producer.dispatcher.queues[RETRY_QUEUE].getJobCounts("delayed")
        return bool(counts["delayed"] == 1)

    await wait_until(retry_waiting, 10, message="retry job not on the retries queue")
    new_deliveries = producer.dispatcher.queues[DELIVERY_QUEUE]
    assert (await new_deliveries.getJobCounts("delayed"))["delayed"] == 0


@pytest.mark.both_stores
async def test_refused_connection_is_a_failed_attempt(
    producer: Producer, worker_factory: StartWorker
) -> None:
    from worker.localredis import free_port

    ep = await producer.endpoints.create(
        workspace_id="ws_1",
        url=f"http://127.0.0.1:{free_port()}/nobody-listens",
        events=["*"],
        owner_email="owner@example.com",
    )
    await worker_factory(RETRY_SCHEDULE="0,30")
    await producer.publisher.publish(make_event(producer, "issue.created"))

    async def attempted() -> bool:
        deliveries = await producer.deliveries.for_endpoint(ep.id)
        return bool(deliveries and deliveries[0].attempts)

    await wait_until(attempted, 10, message="no attempt recorded")
    (delivery,) = await producer.deliveries.for_endpoint(ep.id)
    assert delivery.attempts[0].status is None
    assert (delivery.attempts[0].error or "").startswith("connect:")


@pytest.mark.both_stores
async def test_exact_attempts_and_delays_then_failing_with_exactly_one_email(
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker_factory: StartWorker,
    smtp_server: SmtpServer,
) -> None:
    receiver = await receiver_factory(default=ScriptedResponse(status=500, body="boom"))
    ep = await endpoint(producer, receiver)
    await worker_factory(SMTP_URL=smtp_server.url)
    first = await producer.publisher.publish(make_event(producer, "issue.created"))

    requests = await receiver.wait_for(5, 20)
    assert [r.headers["X-Cliq-Attempt"] for r in requests] == ["1", "2", "3", "4", "5"]
    # Each gap is at least the compressed schedule's delay (bullmq rounds up to ~1 s).
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(requests)]
    for gap, delay in zip(gaps, [0.2, 0.5, 1, 2], strict=True):
        assert gap >= delay - 0.05, gaps
    await smtp_server.wait_for(1, 10)

    async def failing() -> bool:
        return (await producer.endpoints.get(ep.id)).status == EndpointStatus.FAILING

    await wait_until(failing, 5, message="endpoint not failing")
    delivery = await recorded(producer, first.event_id, DeliveryState.DEAD, 5)
    assert sorted(a.number for a in delivery.attempts) == [1, 2, 3, 4, 5]
    message = smtp_server.messages[0]
    assert message.rcpt_tos == ("owner@example.com",)
    assert ep.id in message.subject
    assert first.event_id in message.text
    assert "HTTP 500" in message.text
    assert f"cliq-webhooks replay --endpoint {ep.id}" in message.text

    # A second delivery dying on the already-failing endpoint sends no second email.
    second = await producer.publisher.publish(make_event(producer, "issue.created"))

    async def second_dead() -> bool:
        (d,) = await producer.deliveries.for_event(second.event_id)
        return d.state == DeliveryState.DEAD

    await wait_until(second_dead, 20, message="second delivery not dead")
    notifications = producer.dispatcher.queues["notifications"]
    counts = await notifications.getJobCounts("wait", "active", "delayed")
    assert sum(counts.values()) == 0
    assert len(smtp_server.messages) == 1
    assert await producer.redis.zcard(producer.keys.outbox) == 0


@pytest.mark.both_stores
async def test_recovery_returns_a_failing_endpoint_to_active_and_replay_delivers_the_dead(
    producer: Producer, receiver_factory: ReceiverFactory, worker_factory: StartWorker
) -> None:
    receiver = await receiver_factory(default=ScriptedResponse(status=500))
    ep = await endpoint(producer, receiver)
    await worker_factory(RETRY_SCHEDULE="0,0.1")
    dead = await producer.publisher.publish(make_event(producer, "issue.created"))

    async def failing() -> bool:
        return (await producer.endpoints.get(ep.id)).status == EndpointStatus.FAILING

    await wait_until(failing, 15, message="endpoint not failing")
    receiver.default = ScriptedResponse(status=200)
    later = await producer.publisher.publish(make_event(producer, "issue.updated"))

    async def active() -> bool:
        return (await producer.endpoints.get(ep.id)).status == EndpointStatus.ACTIVE

    await wait_until(active, 10, message="endpoint did not recover")
    assert later.event_id in {r.json()["id"] for r in receiver.received}

    dead_ids = await producer.deliveries.dead_ids(ep.id)
    assert len(dead_ids) == 1
    assert await producer.deliveries.replay(dead_ids) == dead_ids
    assert await producer.deliveries.replay(dead_ids) == []  # idempotent

    delivery = await recorded(producer, dead.event_id, DeliveryState.DELIVERED, 3)
    assert [a.number for a in delivery.attempts] == [1, 2, 3]
    assert delivery.attempts[-1].status == 200


@pytest.mark.both_stores
async def test_a_disabled_endpoint_gets_nothing_and_its_deliveries_wait_paused(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker
) -> None:
    ep = await endpoint(producer, receiver)
    result = await producer.publisher.publish(make_event(producer, "issue.created"))
    await producer.pausing.disable(ep.id)
    await worker_factory()

    async def paused() -> bool:
        (d,) = await producer.deliveries.for_event(result.event_id)
        return d.state == DeliveryState.PAUSED

    await wait_until(paused, 10, message="delivery to a disabled endpoint not paused")
    (delivery,) = await producer.deliveries.for_event(result.event_id)
    assert delivery.attempts == ()  # no attempt spent
    assert receiver.received == []
    # A disabled endpoint is not "failing": no email for it.
    assert (await producer.endpoints.get(ep.id)).status == EndpointStatus.DISABLED
    # Publishing more to a disabled endpoint keeps a paused delivery for it too.
    assert (await producer.publisher.publish(make_event(producer, "issue.created"))).deliveries == 1
    assert await producer.pausing.paused(ep.id) == 2
    await producer.pausing.enable(ep.id)
    await receiver.wait_for(2, timeout=10)


@pytest.mark.both_stores
async def test_a_bad_job_is_logged_and_skipped_and_the_worker_goes_on(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker
) -> None:
    await endpoint(producer, receiver)
    worker = await worker_factory()
    queue = producer.dispatcher.queues["deliveries"]
    await queue.add("deliver", {"items": "not a list"}, {"jobId": "bad1"})
    await queue.add("deliver", {"items": [["dlv_missing", 1], ["x", "y"]]}, {"jobId": "bad2"})
    await queue.add("deliver", {"items": [["dlv_does_not_exist", 1]]}, {"jobId": "bad3"})
    await queue.add("deliver", {"bell": 1}, {"jobId": "bad4"})  # no items at all
    await wait_until(
        lambda: worker.metrics.bad_jobs._value.get() == 3, 10, message="bad jobs not seen"
    )
    await producer.publisher.publish(make_event(producer, "issue.created"))
    await receiver.wait_for(1, 10)
    assert not worker.task.done()
    assert worker.service._alive()


async def test_metrics_endpoint_serves_prometheus_text(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker
) -> None:
    import aiohttp

    from worker.localredis import free_port

    port = free_port()
    await endpoint(producer, receiver)
    await worker_factory(METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")
    await producer.publisher.publish(make_event(producer, "issue.created"))
    await receiver.wait_for(1, 10)
    async with aiohttp.ClientSession() as session:

        async def counted() -> bool:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
            return 'cliq_deliveries_total{outcome="delivered"} 1.0' in text

        await wait_until(counted, 10, message="delivered count not exported")
        async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert response.status == 200
        async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
            assert response.status == 200
            assert json.loads(await response.text()) == {"status": "ready", "redis": True}


@pytest.mark.both_stores
async def test_crash_between_store_and_enqueue_is_repaired_by_the_outbox_sweep(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker, redis: aioredis.Redis
) -> None:
    """A producer that dies after its publish script but before bullmq got the job."""
    await endpoint(producer, receiver)

    async def no_dispatch(members: Any) -> None:
        return None

    producer.dispatcher.dispatch = no_dispatch  # type: ignore[method-assign]
    batch = producer.settings.batch_size  # a full batch: a job (a partial one needs none)
    results = await producer.publisher.publish_many(
        [make_event(producer, "issue.created") for _ in range(batch)]
    )
    assert await redis.zcard(producer.keys.outbox) == 1
    # Make the spec look old enough for the sweep (it leaves young ones to their writer).
    (member,) = cast(list[str], await redis.zrange(producer.keys.outbox, 0, -1))
    await redis.zadd(producer.keys.outbox, {member: int(time.time() * 1000) - 60_000})
    await worker_factory()
    requests = await receiver.wait_for(batch, 15)
    assert {r.json()["id"] for r in requests} == {r.event_id for r in results}

    async def outbox_empty() -> bool:
        return await redis.zcard(producer.keys.outbox) == 0

    await wait_until(outbox_empty, 5, message="swept spec not removed from the outbox")


@pytest.mark.both_stores
async def test_retry_after_on_429_pushes_the_next_attempt_later(
    producer: Producer, receiver_factory: ReceiverFactory, worker_factory: StartWorker
) -> None:
    receiver = await receiver_factory()
    receiver.script(ScriptedResponse(status=429, headers={"Retry-After": "3"}))
    await endpoint(producer, receiver)
    await worker_factory(RETRY_SCHEDULE="0,0.2,10")
    published = await producer.publisher.publish(make_event(producer, "issue.created"))
    first, second = await receiver.wait_for(2, 15)
    # Asked for 3 s instead of the schedule's 0.2 s (and capped at its 10 s step).
    assert second.received_at - first.received_at >= 3 - 0.05
    # The second attempt (200) is recorded after the receiver answered it.
    delivery = await recorded(producer, published.event_id, DeliveryState.DELIVERED, 2)
    assert delivery.attempts[0].status == 429
    assert delivery.attempts[0].next_attempt_ms is not None
    assert delivery.attempts[0].next_attempt_ms - delivery.attempts[0].at_ms >= 3000


@pytest.mark.both_stores
async def test_410_gone_disables_the_endpoint_at_once_and_tells_its_owner(
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker_factory: StartWorker,
    smtp_server: SmtpServer,
) -> None:
    receiver = await receiver_factory(default=ScriptedResponse(status=410, body="gone"))
    ep = await endpoint(producer, receiver)
    worker = await worker_factory(SMTP_URL=smtp_server.url)
    first = await producer.publisher.publish(make_event(producer, "issue.created"))
    (message,) = await smtp_server.wait_for(1, 10)
    assert "disabled (410 Gone)" in message.subject
    assert f"cliq-webhooks endpoint enable {ep.id}" in message.text
    assert (await producer.endpoints.get(ep.id)).status == EndpointStatus.DISABLED
    # The email leaves from the outbox that the record wrote; the log may be behind it.
    delivery = await recorded(producer, first.event_id, DeliveryState.DEAD, 1)
    assert delivery.attempts[0].status == 410  # and no retries after it
    assert len(receiver.received) == 1
    assert worker.metrics.endpoint_transitions.labels("disabled")._value.get() == 1
    # This producer's cached endpoint list (from the first publish) is out of date now:
    # the next event's delivery is paused, not sent.
    later = await producer.publisher.publish(make_event(producer, "issue.created"))
    (paused,) = await producer.deliveries.for_event(later.event_id)
    assert paused.state == DeliveryState.PAUSED


# ---------------------------------------------------------------- the ready list


async def ready_list_settled(producer: Producer, redis: aioredis.Redis) -> bool:
    """Nothing left on the ready list and nothing claimed (registered inboxes are empty).

    Read in one transaction: read one by one, an item moving from the ready list into a
    worker's inbox between the reads is seen in neither."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.keys(producer.keys.claimed("*"))
        pipe.hgetall(producer.keys.claims)
        pipe.llen(producer.keys.ready)
        claimed, claims, ready = await pipe.execute()
    return ready == 0 and claimed == [] and all(str(claim).endswith(".in") for claim in claims)


async def waiting_delivery_jobs(producer: Producer) -> int:
    return int(await producer.dispatcher.queues[DELIVERY_QUEUE].getWaitingCount())


async def test_single_publishes_wait_on_the_ready_list_without_jobs_and_a_worker_takes_them(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker, redis: aioredis.Redis
) -> None:
    await endpoint(producer, receiver)
    published = [
        await producer.publisher.publish(make_event(producer, "issue.created")) for _ in range(30)
    ]
    assert await waiting_delivery_jobs(producer) == 0
    assert await redis.llen(producer.keys.ready) == 30
    assert await redis.zcard(producer.keys.outbox) == 0
    assert await redis.hget(producer.keys.stats, "queued") == "30"

    worker = await worker_factory()
    requests = await receiver.wait_for(30, 15)
    assert {r.json()["id"] for r in requests} == {p.event_id for p in published}
    await wait_until(
        lambda: ready_list_settled(producer, redis), 5, message="ready or claimed items left"
    )
    assert await redis.hget(producer.keys.stats, "queued") == "0"
    # Published while the worker waits: each is taken as it arrives.
    later = [
        await producer.publisher.publish(make_event(producer, "issue.created")) for _ in range(5)
    ]
    requests = await receiver.wait_for(35, 15)
    assert {r.json()["id"] for r in requests[30:]} == {p.event_id for p in later}
    assert await waiting_delivery_jobs(producer) == 0
    await wait_until(
        lambda: worker.metrics.deliveries.labels("delivered")._value.get() == 35,
        5,
        message="not every delivery recorded",
    )


async def test_full_batches_stay_jobs_and_only_the_rest_waits_on_the_ready_list(
    producer: Producer, redis: aioredis.Redis, receiver: Receiver
) -> None:
    await endpoint(producer, receiver)
    batch = producer.settings.batch_size
    await producer.publisher.publish_many(
        [make_event(producer, "issue.created") for _ in range(batch + 3)]
    )
    jobs = await producer.dispatcher.queues[DELIVERY_QUEUE].getWaiting()
    assert [len(job.data["items"]) for job in jobs] == [batch]
    assert await redis.llen(producer.keys.ready) == 3


async def test_every_waiting_worker_gets_a_share_of_single_publishes(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker, redis: aioredis.Redis
) -> None:
    await endpoint(producer, receiver)
    workers = [await worker_factory(), await worker_factory()]
    for count in range(1, 41):
        await producer.publisher.publish(make_event(producer, "issue.created"))
        await receiver.wait_for(count, 10)  # both workers wait again before the next one

    def delivered() -> list[float]:
        return [w.metrics.deliveries.labels("delivered")._value.get() for w in workers]

    await wait_until(lambda: sum(delivered()) == 40, 5, message="not every delivery recorded")
    assert min(delivered()) > 0, delivered()


async def test_claims_given_back_go_to_the_head_of_the_ready_list_in_their_order(
    producer: Producer, receiver: Receiver, redis: aioredis.Redis
) -> None:
    from producer.scripts import load_script

    await endpoint(producer, receiver)
    claims = load_script(redis, producer.keys, "worker", "claims.lua")
    for _ in range(5):
        await producer.publisher.publish(make_event(producer, "issue.created"))
    published = await redis.lrange(producer.keys.ready, 0, -1)
    await claims("take", "w1", "w1.in", "w1.1", 2, 60)
    await claims("take", "w1", "w1.in", "w1.2", 2, 60)
    assert await redis.lrange(producer.keys.ready, 0, -1) == published[4:]
    # The first claim was finished (a done id rides on a renewal); the second is not.
    await claims("renew", "w1", 60_000, "w1.in", "w1.1")
    assert await claims("reclaim", "") == 0  # w1 is alive
    assert await claims("retire", "w1") == 2
    assert await redis.lrange(producer.keys.ready, 0, -1) == published[2:]
    assert await redis.hgetall(producer.keys.claims) == {}
    assert not await redis.exists(producer.keys.worker("w1"))


async def test_the_claims_of_a_worker_that_died_go_back_and_are_delivered_once(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker, redis: aioredis.Redis
) -> None:
    """Claims whose worker key expired go back to the ready list; a live worker's stay."""
    from producer.scripts import load_script

    await endpoint(producer, receiver)
    claims = load_script(redis, producer.keys, "worker", "claims.lua")
    first = [
        await producer.publisher.publish(make_event(producer, "issue.created")) for _ in range(3)
    ]
    # "gone" took two and died (its key is not there); "alive" took one and renews.
    await claims("renew", "alive", 60_000, "alive.in")
    entries, (rows, _, _) = await claims("take", "gone", "gone.in", "gone.1", 2, 60)
    assert len(entries) == 2
    assert [row[3] for row in rows] == [result.event_id for result in first[:2]]
    await claims("take", "alive", "alive.in", "alive.1", 1, 60)
    assert await redis.llen(producer.keys.ready) == 0
    assert await redis.llen(producer.keys.claimed("gone.1")) == 2

    await worker_factory()  # its housekeeping finds the dead worker's claim
    requests = await receiver.wait_for(2, 15)
    assert sorted(r.json()["id"] for r in requests) == sorted(r.event_id for r in first[:2])
    assert not await redis.exists(producer.keys.claimed("gone.1"))
    assert await redis.llen(producer.keys.claimed("alive.1")) == 1  # still its own
    assert await redis.hget(producer.keys.claims, "alive.1") == "alive"

    for result in first[:2]:  # delivered once each: one attempt recorded
        delivery = await recorded(producer, result.event_id, DeliveryState.DELIVERED, 1)
        assert [a.number for a in delivery.attempts] == [1]


async def test_a_claim_cut_short_by_a_redis_error_goes_back_and_is_delivered(
    producer: Producer,
    receiver: Receiver,
    worker_factory: StartWorker,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.delivery import DeliveryProcessor

    attempt_claimed = DeliveryProcessor.attempt_claimed
    failures: list[str] = []

    async def fails_once(self: DeliveryProcessor, claim_id: str, *args: Any) -> int:
        if not failures:
            failures.append(claim_id)
            raise redis_errors.ConnectionError("simulated: Redis went away mid-claim")
        return await attempt_claimed(self, claim_id, *args)

    monkeypatch.setattr(DeliveryProcessor, "attempt_claimed", fails_once)
    await endpoint(producer, receiver)
    worker = await worker_factory()
    result = await producer.publisher.publish(make_event(producer, "issue.created"))
    # Given back by the worker's next renewal (JOB_LOCK_TIMEOUT=2: every 0.67 s), then taken.
    (request,) = await receiver.wait_for(1, 10)
    assert request.json()["id"] == result.event_id
    assert len(failures) == 1
    await wait_until(
        lambda: ready_list_settled(producer, redis), 5, message="ready or claimed items left"
    )
    assert not worker.task.done()


async def test_a_stopping_worker_gives_back_what_it_could_not_finish(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker, redis: aioredis.Redis
) -> None:
    await endpoint(producer, receiver)
    receiver.hang()
    worker = await worker_factory(SHUTDOWN_GRACE="0.5", DELIVERY_TIMEOUT="30")
    result = await producer.publisher.publish(make_event(producer, "issue.created"))
    await receiver.wait_for(1, 10)
    assert await worker.stop() == 0
    # The cancelled attempt was not recorded: the item waits for the next worker.
    assert await redis.llen(producer.keys.ready) == 1
    assert await redis.hgetall(producer.keys.claims) == {}
    assert not await redis.exists(producer.keys.worker(worker.service.worker_id))

    receiver.default = ScriptedResponse()
    await worker_factory()
    await wait_until(
        lambda: ready_list_settled(producer, redis), 10, message="ready or claimed items left"
    )
    delivery = await recorded(producer, result.event_id, DeliveryState.DELIVERED, 1)
    assert [a.number for a in delivery.attempts] == [1]


async def test_a_malformed_ready_entry_is_reported_and_the_rest_of_its_batch_delivered(
    producer: Producer, receiver: Receiver, worker_factory: StartWorker, redis: aioredis.Redis
) -> None:
    await endpoint(producer, receiver)
    # Only our scripts write the ready list: these stand for a hand edit of Redis.
    await redis.rpush(producer.keys.ready, "not json", '["dlv_x", 0]')
    result = await producer.publisher.publish(make_event(producer, "issue.created"))
    assert await redis.llen(producer.keys.ready) == 3

    worker = await worker_factory()
    (request,) = await receiver.wait_for(1, 15)
    assert request.json()["id"] == result.event_id
    await wait_until(
        lambda: worker.metrics.bad_jobs._value.get() == 2, 10, message="bad entries not counted"
    )

    await wait_until(
        lambda: ready_list_settled(producer, redis), 5, message="ready or claimed items left"
    )


async def test_the_oldest_waiting_gauge_counts_the_ready_list(
    producer: Producer, receiver: Receiver, redis: aioredis.Redis, redis_url: str
) -> None:
    from worker.service import WorkerService
    from worker.settings import WorkerSettings

    await endpoint(producer, receiver)
    result = await producer.publisher.publish(make_event(producer, "issue.created"))
    (delivery,) = await producer.deliveries.for_event(result.event_id)
    created = int(time.time() * 1000) - 60_000
    await redis.hset(producer.keys.delivery(delivery.id), "c", created)
    service = WorkerService(WorkerSettings.from_env(worker_env(redis_url)))
    await service._refresh_gauges(producer)
    assert 59 < service.metrics.oldest_waiting._value.get() < 70
