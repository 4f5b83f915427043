"""Operational webhooks: OPERATIONS_WEBHOOK_URL receives signed events about endpoints
and deliveries, once per transition, through real workers and real receivers."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoint_rules import EndpointError
from producer.events import EVENT_FIELDS, OPERATIONS_WORKSPACE, EventError
from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.keys import OPERATIONS_QUEUE
from producer.operations import (
    OPERATIONS_ENDPOINT_ID,
    OperationalJob,
    emit,
    endpoint_paused_backlog_full,
)
from producer.settings import ProducerSettings, SettingsError
from producer.signing import verify_cliq, verify_standard
from worker.settings import WorkerSettings

from harness import Receiver, ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from harness.receiver import ReceivedRequest
from support import PROJECT, RunningWorker, make_event, start_worker, worker_env

OPS_SECRET = "whsec_" + base64.b64encode(b"operations-secret-of-32-bytes!!!").decode()
PUBLIC_URL = "https://hooks.example.com"
StartWorker = Callable[..., Awaitable[RunningWorker]]


@pytest.fixture
async def worker_factory(redis_url: str, tmp_path: Path) -> AsyncIterator[StartWorker]:
    """Starts in-process workers sending operational events to ``ops`` (a receiver)."""
    running: list[RunningWorker] = []

    async def factory(ops: Receiver, **overrides: str) -> RunningWorker:
        env = {
            "OPERATIONS_WEBHOOK_URL": ops.url("/ops"),
            "OPERATIONS_WEBHOOK_SECRET": OPS_SECRET,
            "NOTIFY_OUTBOX": str(tmp_path / "outbox"),
            "PUBLIC_URL": PUBLIC_URL,
            **overrides,
        }
        worker = await start_worker(worker_env(redis_url, **env))
        running.append(worker)
        return worker

    yield factory
    for worker in running:
        if not worker.task.done():
            await worker.stop()


async def subscriber(producer: Producer, receiver: Receiver) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="owner@example.com"
    )


def verified(request: ReceivedRequest) -> dict[str, Any]:
    """The operational event of ``request``, after checking both of its signatures with
    OPERATIONS_WEBHOOK_SECRET (the project's receiver-side helpers)."""
    verify_standard(OPS_SECRET, request.headers, request.body, now_s=request.received_at_wall)
    verify_cliq(OPS_SECRET, request.body, request.headers["X-Cliq-Signature"])
    event: dict[str, Any] = request.json()
    assert list(event) == list(EVENT_FIELDS)  # the seed's shape, in its order
    assert event["workspace_id"] == OPERATIONS_WORKSPACE
    assert request.headers["X-Cliq-Event"] == event["type"]
    assert request.headers["webhook-id"] == event["id"]
    return event


def arrived(ops: Receiver) -> list[dict[str, Any]]:
    """Each operational event the receiver answered 2xx to, verified, once: deliveries
    are at least once (an answer that came too late is sent again), so a receiver
    deduplicates by event id, as the seed advises."""
    events: dict[str, dict[str, Any]] = {}
    for request, status in zip(ops.received, ops.statuses, strict=False):
        if status < 300:
            event = verified(request)
            events.setdefault(event["id"], event)
    return list(events.values())


def types_of(ops: Receiver) -> Counter[str]:
    return Counter(event["type"] for event in arrived(ops))


async def settled(producer: Producer) -> bool:
    """No operational event is on its way: none in the outbox or the operations queue,
    every delivery to the operations endpoint finished."""
    if await producer.redis.zcard(producer.keys.outbox):
        return False
    queue = producer.dispatcher.queues[OPERATIONS_QUEUE]
    if sum((await queue.getJobCounts("wait", "active", "delayed")).values()):
        return False
    deliveries = await producer.deliveries.for_endpoint(OPERATIONS_ENDPOINT_ID)
    return all(d.state in (DeliveryState.DELIVERED, DeliveryState.DEAD) for d in deliveries)


async def dead(producer: Producer, event_id: str) -> bool:
    (delivery,) = await producer.deliveries.for_event(event_id)
    return delivery.state == DeliveryState.DEAD


async def test_failing_dead_and_recovered_arrive_once_each_signed_from_two_workers(
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker_factory: StartWorker,
    tmp_path: Path,
) -> None:
    ops = await receiver_factory()
    user = await receiver_factory(default=ScriptedResponse(status=500, body="boom"))
    ep = await subscriber(producer, user)
    for _ in range(2):
        await worker_factory(ops, RETRY_SCHEDULE="0,0.1")

    first = await producer.publisher.publish(make_event(producer))
    await wait_until(lambda: types_of(ops)["endpoint.failing"] == 1, 15, message="no failing")
    second = await producer.publisher.publish(make_event(producer))
    await wait_until(lambda: types_of(ops)["delivery.dead"] == 2, 15, message="no 2nd dead")
    user.default = ScriptedResponse()  # the receiver is fixed
    await producer.publisher.publish(make_event(producer))
    await wait_until(lambda: types_of(ops)["endpoint.recovered"] == 1, 15, message="no recovery")
    await wait_until(lambda: settled(producer), 10, message="operational events still moving")

    events = arrived(ops)
    assert types_of(ops) == {"delivery.dead": 2, "endpoint.failing": 1, "endpoint.recovered": 1}
    failing = next(e for e in events if e["type"] == "endpoint.failing")["data"]
    assert failing["endpoint_id"] == ep.id
    assert failing["endpoint_url"] == user.url()
    assert failing["workspace_id"] == "ws_1"
    assert failing["event_id"] == first.event_id
    assert failing["last_error"].startswith("HTTP 500: boom")
    assert failing["attempts"] == 2
    assert failing["reason"] == "failing"
    assert failing["dashboard_url"] == f"{PUBLIC_URL}/ui/webhooks/{ep.id}"
    deaths = [e["data"] for e in events if e["type"] == "delivery.dead"]
    assert {d["event_id"] for d in deaths} == {first.event_id, second.event_id}
    assert {d["reason"] for d in deaths} == {"exhausted"}
    recovered = next(e for e in events if e["type"] == "endpoint.recovered")["data"]
    assert recovered["endpoint_id"] == ep.id
    assert recovered["last_error"] is None
    # Beside the email: the owner got the one failure email as before.
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


async def test_a_failing_operations_receiver_gets_the_retry_schedule(
    producer: Producer, receiver_factory: ReceiverFactory, worker_factory: StartWorker
) -> None:
    ops = await receiver_factory()
    ops.respond(status=500, times=2)
    ep = await subscriber(producer, await receiver_factory())
    await worker_factory(ops, RETRY_SCHEDULE="0,0.3,0.6")

    await producer.endpoints.set_status(ep.id, EndpointStatus.DISABLED)
    await wait_until(lambda: ops.statuses == [500, 500, 200], 15, message="no 3 attempts")
    await wait_until(lambda: settled(producer), 10, message="operational events still moving")

    first, retry, last = ops.received
    assert [r.headers["X-Cliq-Attempt"] for r in ops.received] == ["1", "2", "3"]
    assert len({r.headers["webhook-id"] for r in ops.received}) == 1
    assert retry.received_at - first.received_at >= 0.3
    assert last.received_at - retry.received_at >= 0.6
    (event,) = arrived(ops)
    assert event["type"] == "endpoint.disabled"
    assert event["data"]["reason"] == "manual"
    assert event["data"]["event_id"] is None
    (delivery,) = await producer.deliveries.for_endpoint(OPERATIONS_ENDPOINT_ID)
    assert delivery.state == DeliveryState.DELIVERED
    assert len(delivery.attempts) == 3


async def api_client(redis_url: str) -> TestClient[Any, Any]:
    settings = ApiSettings.from_env(
        {"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1", "ALLOW_NO_AUTH": "1"}
    )
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
    await client.start_server()
    return client


async def test_disabling_by_api_cli_or_410_tells_once_per_transition(
    redis_url: str,
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker_factory: StartWorker,
) -> None:
    ops = await receiver_factory()
    by_api = await subscriber(producer, await receiver_factory())
    by_cli = await subscriber(producer, await receiver_factory())
    gone = await subscriber(producer, await receiver_factory(ScriptedResponse(status=410)))
    await producer.endpoints.update(gone.id, events=["issue.created"])
    await worker_factory(ops)

    api = await api_client(redis_url)
    try:
        for _ in range(2):  # the second finds it disabled: no transition, no event
            response = await api.post(f"/v1/endpoints/{by_api.id}/disable")
            assert response.status == 200, await response.text()
    finally:
        await api.close()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli", "endpoint", "disable", by_cli.id],
        env={**os.environ, **worker_env(redis_url)},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    published = await producer.publisher.publish(make_event(producer, "issue.created"))
    await wait_until(lambda: len(arrived(ops)) == 4, 15, message="not every event arrived")
    await wait_until(lambda: settled(producer), 10, message="operational events still moving")

    events = arrived(ops)
    assert types_of(ops) == {"endpoint.disabled": 3, "delivery.dead": 1}
    disabled = {e["data"]["endpoint_id"]: e["data"] for e in events if e["type"] != "delivery.dead"}
    assert {key: data["reason"] for key, data in disabled.items()} == {
        by_api.id: "manual",
        by_cli.id: "manual",
        gone.id: "gone",
    }
    assert disabled[gone.id]["event_id"] == published.event_id
    assert disabled[gone.id]["last_error"].startswith("HTTP 410")
    assert disabled[by_cli.id]["dashboard_url"] == f"{PUBLIC_URL}/ui/webhooks/{by_cli.id}"
    (death,) = (e["data"] for e in events if e["type"] == "delivery.dead")
    assert (death["endpoint_id"], death["reason"]) == (gone.id, "gone")


async def test_an_auto_disable_is_told_once_beside_its_email_by_two_workers(
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker_factory: StartWorker,
    tmp_path: Path,
) -> None:
    ops = await receiver_factory()
    user = await receiver_factory(default=ScriptedResponse(status=500, body="boom"))
    ep = await subscriber(producer, user)
    for _ in range(2):  # both look for endpoints failing too long: one disables it
        await worker_factory(ops, RETRY_SCHEDULE="0", DISABLE_FAILING_AFTER="1s")

    published = await producer.publisher.publish(make_event(producer))
    await wait_until(
        lambda: types_of(ops)["endpoint.disabled"] == 1, 20, message="no endpoint.disabled"
    )
    await wait_until(lambda: settled(producer), 10, message="operational events still moving")
    outbox = tmp_path / "outbox"
    await wait_until(lambda: len(list(outbox.glob("*.eml"))) == 2, 10, message="no 2nd email")

    assert types_of(ops) == {"delivery.dead": 1, "endpoint.failing": 1, "endpoint.disabled": 1}
    data = next(e for e in arrived(ops) if e["type"] == "endpoint.disabled")["data"]
    assert (data["endpoint_id"], data["workspace_id"], data["reason"]) == (ep.id, "ws_1", "auto")
    assert data["endpoint_url"] == user.url()
    assert data["last_error"].startswith("no successful delivery since ")
    assert data["dashboard_url"] == f"{PUBLIC_URL}/ui/webhooks/{ep.id}"
    failing = next(e for e in arrived(ops) if e["type"] == "endpoint.failing")["data"]
    assert failing["event_id"] == published.event_id
    assert (await producer.endpoints.get(ep.id)).status == EndpointStatus.DISABLED
    # Beside the email: one when it turned failing, one when it was disabled.
    subjects = sorted(
        str(email.message_from_bytes(path.read_bytes(), policy=email.policy.default)["Subject"])
        for path in outbox.glob("*.eml")
    )
    assert subjects == [
        f"[cliq-webhooks] Webhook endpoint {ep.id} is failing",
        f"[cliq-webhooks] Webhook endpoint {ep.id} was disabled after failing",
    ]


async def test_the_operations_endpoints_own_failures_report_nothing(
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker_factory: StartWorker,
    tmp_path: Path,
) -> None:
    ops = await receiver_factory(default=ScriptedResponse(status=500))
    user = await receiver_factory(default=ScriptedResponse(status=500))
    await subscriber(producer, user)
    await worker_factory(ops, RETRY_SCHEDULE="0,0.1")

    first = await producer.publisher.publish(make_event(producer))
    await wait_until(lambda: dead(producer, first.event_id), 15, message="not dead")

    async def operations_failing() -> bool:
        endpoint = await producer.endpoints.get(OPERATIONS_ENDPOINT_ID)
        return endpoint.status == EndpointStatus.FAILING

    await wait_until(operations_failing, 15, message="the operations endpoint is not failing")
    await wait_until(lambda: settled(producer), 10, message="operational events still moving")
    # Disabling it by hand tells nothing either.
    await producer.endpoints.set_status(OPERATIONS_ENDPOINT_ID, EndpointStatus.DISABLED)
    await wait_until(lambda: settled(producer), 10, message="operational events still moving")

    # delivery.dead and endpoint.failing of the user's endpoint, each tried twice; their
    # deaths and the operations endpoint's turn to failing caused no event of their own.
    deliveries = await producer.deliveries.for_endpoint(OPERATIONS_ENDPOINT_ID)
    assert [d.state for d in deliveries] == [DeliveryState.DEAD] * 2
    assert len(ops.received) == 4
    assert {verified(r)["type"] for r in ops.received} == {"delivery.dead", "endpoint.failing"}
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1  # the user's owner only


async def test_a_paused_backlog_full_told_twice_arrives_once(
    producer: Producer, receiver_factory: ReceiverFactory, worker_factory: StartWorker
) -> None:
    ops = await receiver_factory()
    ep = await subscriber(producer, await receiver_factory())
    await worker_factory(ops)
    job = endpoint_paused_backlog_full(
        ep.id, transition="p1700000000000", at_ms=int(time.time() * 1000), backlog=10_000
    )
    await emit(producer.dispatcher, [job])
    await wait_until(lambda: len(arrived(ops)) == 1, 15, message="nothing arrived")
    await emit(producer.dispatcher, [job])  # the same transition reported again
    await wait_until(lambda: settled(producer), 10, message="operational events still moving")

    (event,) = arrived(ops)
    assert event["type"] == "endpoint.paused_backlog_full"
    assert event["id"] == job.operational_event_id
    data = event["data"]
    assert (data["backlog"], data["reason"], data["workspace_id"]) == (
        10_000,
        "backlog_full",
        "ws_1",
    )
    assert data["endpoint_url"] == ep.url  # filled in from the registry
    assert OperationalJob.from_dict(job.to_dict()) == job


async def test_the_operations_endpoint_obeys_the_destination_policy(
    redis_url: str, receiver_factory: ReceiverFactory, worker_factory: StartWorker
) -> None:
    ops = await receiver_factory()
    with pytest.raises(SettingsError, match=r"OPERATIONS_WEBHOOK_URL=.*not a public address"):
        await worker_factory(ops, ALLOW_PRIVATE_DESTINATIONS="0")
    await worker_factory(
        ops, ALLOW_PRIVATE_DESTINATIONS="0", ALLOWED_PRIVATE_NETWORKS="127.0.0.0/8"
    )


def test_settings_need_a_secret_and_never_show_it() -> None:
    url = {"OPERATIONS_WEBHOOK_URL": "https://ops.example.com/hook"}
    with pytest.raises(SettingsError, match="OPERATIONS_WEBHOOK_SECRET is required"):
        WorkerSettings.from_env(url)
    for bad in ("not-a-secret", "whsec_%%%", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(SettingsError, match="OPERATIONS_WEBHOOK_SECRET=<hidden>") as caught:
            WorkerSettings.from_env({**url, "OPERATIONS_WEBHOOK_SECRET": bad})
        assert bad not in str(caught.value)
    with pytest.raises(SettingsError, match=r"OPERATIONS_WEBHOOK_URL=.*must use http"):
        WorkerSettings.from_env({"OPERATIONS_WEBHOOK_URL": "ftp://ops.example.com/"})
    settings = WorkerSettings.from_env({**url, "OPERATIONS_WEBHOOK_SECRET": OPS_SECRET})
    assert OPS_SECRET not in repr(settings)


async def test_the_operations_workspace_is_reserved(redis_url: str, producer: Producer) -> None:
    api = await api_client(redis_url)
    try:
        event = {"type": "issue.created", "workspace_id": OPERATIONS_WORKSPACE, "data": {}}
        published = await api.post("/v1/events", json=event)
        assert published.status == 422
        assert "workspace_id" in await published.text()
        endpoint = {
            "workspace_id": OPERATIONS_WORKSPACE,
            "url": "https://example.com/hook",
            "events": ["*"],
            "owner_email": "o@example.com",
        }
        created = await api.post("/v1/endpoints", json=endpoint)
        assert created.status == 422
        assert "reserved for operational events" in await created.text()
    finally:
        await api.close()
    with pytest.raises(EndpointError) as refused:
        await producer.endpoints.create(
            workspace_id=OPERATIONS_WORKSPACE,
            url="https://example.com/hook",
            events=["*"],
            owner_email="o@example.com",
        )
    assert refused.value.field == "workspace"
    with pytest.raises(EventError) as forged:
        make_event(producer, workspace_id=OPERATIONS_WORKSPACE)
    assert forged.value.field == "workspace_id"


async def test_a_worker_process_takes_the_flag_and_never_logs_the_secret(
    redis_url: str, producer: Producer, receiver_factory: ReceiverFactory, tmp_path: Path
) -> None:
    ops = await receiver_factory()
    ep = await subscriber(producer, await receiver_factory())
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        **worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox"), LOG_LEVEL="debug"),
        "OPERATIONS_WEBHOOK_SECRET": OPS_SECRET,
    }
    with log_path.open("wb") as log:
        process = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "worker", "--operations-webhook-url", ops.url("/ops")],
            env=env,
            cwd=PROJECT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_until(
            lambda: "worker_started" in log_path.read_text() or process.poll() is not None,
            20,
            message="the worker did not start",
        )
        assert process.poll() is None, log_path.read_text()
        await producer.endpoints.set_status(ep.id, EndpointStatus.DISABLED)
        await wait_until(lambda: len(arrived(ops)) == 1, 15, message="nothing arrived")
    finally:
        process.terminate()  # SIGTERM to this worker's own PID: it drains and exits
        assert await asyncio.to_thread(process.wait, 30) == 0
    text = log_path.read_text()
    assert "operational_event_published" in text
    assert ops.url("/ops") in text  # worker_started names where the events go
    assert OPS_SECRET not in text
    assert OPS_SECRET.removeprefix("whsec_") not in text


async def test_a_paused_backlog_overflowing_at_publish_is_told_once(
    redis_url: str, receiver_factory: ReceiverFactory, worker_factory: StartWorker
) -> None:
    ops = await receiver_factory()
    settings = ProducerSettings.from_env(
        {"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1", "PAUSED_MAX_PER_ENDPOINT": "2"}
    )
    async with Producer(settings) as producer:
        await worker_factory(ops)  # registers the operations endpoint
        ep = await subscriber(producer, await receiver_factory())
        await producer.pausing.disable(ep.id)
        for _ in range(4):  # the third and fourth overflow it: one notice
            await producer.publisher.publish(make_event(producer))

        def told() -> bool:
            return types_of(ops)["endpoint.paused_backlog_full"] == 1

        await wait_until(told, 15, message="no endpoint.paused_backlog_full arrived")
        await wait_until(lambda: settled(producer), 10, message="operational events still moving")
    assert types_of(ops) == Counter({"endpoint.disabled": 1, "endpoint.paused_backlog_full": 1})
    (full,) = [e for e in arrived(ops) if e["type"] == "endpoint.paused_backlog_full"]
    assert (full["data"]["endpoint_id"], full["data"]["backlog"]) == (ep.id, 2)
