"""Auto-disable (``DISABLE_FAILING_AFTER``): an endpoint failing without a success that long
is disabled (its deliveries pause), with one email and one notice; off by default."""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.durations import parse_duration
from producer.endpoint import Endpoint, EndpointStatus
from producer.fields import ENDPOINT_PAUSE_FIELDS
from producer.jobs import JobSpec
from producer.pausing import AUTO_DISABLE_REASON
from producer.settings import SettingsError
from worker.autodisable import AutoDisabler, check_interval
from worker.metrics import Metrics
from worker.service import WorkerService
from worker.settings import WorkerSettings

from harness import Receiver, ScriptedResponse
from harness.polling import wait_until
from support import make_event, worker_env


class RecordedPauseEvents:
    """A :class:`producer.pausing.PauseEvents` that remembers what it was told."""

    def __init__(self) -> None:
        self.disabled: list[tuple[str, str, str]] = []
        self.full: list[tuple[str, str, str]] = []

    async def endpoint_disabled(self, endpoint_id: str, workspace_id: str, reason: str) -> None:
        self.disabled.append((endpoint_id, workspace_id, reason))

    async def paused_backlog_full(self, endpoint_id: str, workspace_id: str, reason: str) -> None:
        self.full.append((endpoint_id, workspace_id, reason))


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("5d", 5 * 86400.0),
        ("12h", 43200.0),
        ("30m", 1800.0),
        ("90s", 90.0),
        ("90", 90.0),
        ("1.5h", 5400.0),
        ("2w", 14 * 86400.0),
        (" 5D ", 5 * 86400.0),
        ("0", 0.0),
        ("", 0.0),
    ],
)
def test_durations_parse_as_people_write_them(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["5 days", "-1d", "d", "5x", "1d2h", "five"])
def test_a_bad_duration_is_refused_naming_the_setting(raw: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(raw)
    with pytest.raises(SettingsError, match="DISABLE_FAILING_AFTER"):
        WorkerSettings.from_env({"DISABLE_FAILING_AFTER": raw})


def test_auto_disable_is_off_by_default_and_5d_is_five_days() -> None:
    assert WorkerSettings.from_env({}).disable_failing_after == 0
    assert WorkerSettings.from_env({"DISABLE_FAILING_AFTER": "5d"}).disable_failing_after == 432000
    assert check_interval(432000) == 60
    assert check_interval(1) == pytest.approx(0.1)


@pytest.fixture
async def recorded_worker(redis_url: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts workers whose pause events are recorded (one recorder for all)."""
    events = RecordedPauseEvents()
    tasks: list[tuple[WorkerService, asyncio.Task[int]]] = []

    async def start(**overrides: str) -> RecordedPauseEvents:
        env = worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox"), **overrides)
        service = WorkerService(WorkerSettings.from_env(env))
        service.pause_events = events
        task = asyncio.create_task(service.run())
        await wait_until(
            lambda: task.done() or service.metrics.worker_up._value.get() == 1,
            10,
            message="worker did not start",
        )
        tasks.append((service, task))
        return events

    yield start
    for service, task in tasks:
        service.stop()
        await asyncio.wait_for(task, 30)


async def _failing_endpoint(producer: Producer, receiver: Receiver) -> Endpoint:
    ep = await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    receiver.default = ScriptedResponse(status=500)
    await producer.publisher.publish(make_event(producer))

    async def failing() -> bool:
        return (await producer.endpoints.get(ep.id)).status == EndpointStatus.FAILING

    await wait_until(failing, 10, message="the endpoint did not turn failing")
    return ep


def _emails(outbox: Path) -> list[email.message.Message]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(outbox.glob("*.eml"))
    ]


async def test_an_endpoint_failing_that_long_is_paused_with_one_email_and_one_notice(
    producer: Producer, receiver: Receiver, recorded_worker: Callable[..., Any], tmp_path: Path
) -> None:
    # Two workers look: one of them disables it, once.
    env = {"RETRY_SCHEDULE": "0", "DISABLE_FAILING_AFTER": "1s"}
    events = await recorded_worker(**env)
    await recorded_worker(**env)
    ep = await _failing_endpoint(producer, receiver)
    since = await producer.redis.hget(
        producer.keys.endpoint(ep.id), ENDPOINT_PAUSE_FIELDS.failing_since
    )
    assert since is not None

    async def disabled() -> bool:
        return (await producer.endpoints.get(ep.id)).status == EndpointStatus.DISABLED

    await wait_until(disabled, 10, message="the failing endpoint was not disabled")
    assert int(time.time() * 1000) - int(since) >= 1000
    outbox = tmp_path / "outbox"
    await wait_until(lambda: len(_emails(outbox)) == 2, 10, message="no auto-disable email")
    subjects = sorted(str(m["Subject"]) for m in _emails(outbox))
    assert subjects == [
        f"[cliq-webhooks] Webhook endpoint {ep.id} is failing",
        f"[cliq-webhooks] Webhook endpoint {ep.id} was disabled after failing",
    ]
    assert events.disabled == [(ep.id, "ws_1", AUTO_DISABLE_REASON)]
    assert not await producer.redis.sismember(producer.keys.failing, ep.id)
    # Disabled means paused: a new event waits, spending no attempt.
    attempts = len(receiver.received)
    result = await producer.publisher.publish(make_event(producer))

    async def paused() -> bool:
        (delivery,) = await producer.deliveries.for_event(result.event_id)
        return delivery.state == DeliveryState.PAUSED

    await wait_until(paused, 10, message="a delivery of the disabled endpoint did not pause")
    assert len(receiver.received) == attempts
    assert events.disabled == [(ep.id, "ws_1", AUTO_DISABLE_REASON)]  # still once
    assert len(_emails(outbox)) == 2


async def test_auto_disable_waits_the_whole_duration_by_an_injected_clock(
    producer: Producer, receiver: Receiver, recorded_worker: Callable[..., Any]
) -> None:
    await recorded_worker(RETRY_SCHEDULE="0")  # auto-disable off: this one never disables
    ep = await _failing_endpoint(producer, receiver)
    since_ms = int(
        await producer.redis.hget(
            producer.keys.endpoint(ep.id), ENDPOINT_PAUSE_FIELDS.failing_since
        )
        or 0
    )
    now = [since_ms / 1000]
    events = RecordedPauseEvents()
    disabler = AutoDisabler(
        producer.redis,
        producer.keys,
        producer.dispatcher,
        parse_duration("5d"),
        events,
        Metrics(),
        clock=lambda: now[0],
    )
    now[0] += 5 * 86400 - 1
    assert await disabler.run_once() == []
    assert (await producer.endpoints.get(ep.id)).status == EndpointStatus.FAILING
    now[0] += 1
    assert await disabler.run_once() == [ep.id]
    assert await disabler.run_once() == []
    assert (await producer.endpoints.get(ep.id)).status == EndpointStatus.DISABLED
    assert events.disabled == [(ep.id, "ws_1", AUTO_DISABLE_REASON)]


async def test_a_worker_dying_right_after_the_disable_loses_neither_email_nor_webhook(
    producer: Producer,
    receiver: Receiver,
    recorded_worker: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await recorded_worker(RETRY_SCHEDULE="0")  # auto-disable off: this one never disables
    ep = await _failing_endpoint(producer, receiver)
    since = int(
        await producer.redis.hget(
            producer.keys.endpoint(ep.id), ENDPOINT_PAUSE_FIELDS.failing_since
        )
        or 0
    )
    await wait_until(
        lambda: _outbox_empty(producer), 10, message="the failing email's job stayed in the outbox"
    )

    async def killed(_members: Any) -> None:
        raise ConnectionError("the worker died before dispatching")

    dispatcher = producer.dispatcher
    disabler = AutoDisabler(
        producer.redis,
        producer.keys,
        dispatcher,
        1.0,
        RecordedPauseEvents(),
        Metrics(),
        clock=lambda: since / 1000 + 2,
        operations=True,
    )
    with monkeypatch.context() as dying:
        dying.setattr(dispatcher, "dispatch", killed)
        with pytest.raises(ConnectionError):
            await disabler.run_once()
    assert (await producer.endpoints.get(ep.id)).status == EndpointStatus.DISABLED
    # Both jobs were written with the disable: the next sweep of any worker sends them.
    members = await producer.redis.zrange(producer.keys.outbox, 0, -1)
    jobs = sorted(JobSpec.from_json(str(member)).job_id for member in members)
    assert jobs == [f"n-{ep.id}-auto-{since}", f"o-endpoint-disabled-{ep.id}-a{since}"]
    # Another worker looking again finds it disabled: nothing is written twice.
    again = AutoDisabler(
        producer.redis,
        producer.keys,
        dispatcher,
        1.0,
        RecordedPauseEvents(),
        Metrics(),
        clock=lambda: since / 1000 + 3,
        operations=True,
    )
    assert await again.run_once() == []
    assert await producer.redis.zcard(producer.keys.outbox) == 2


async def _outbox_empty(producer: Producer) -> bool:
    return await producer.redis.zcard(producer.keys.outbox) == 0
