"""Running the project's own parts in tests: producers, in-process and subprocess workers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import redis.asyncio as aioredis

from producer.context import Producer
from producer.events import Event, parse_event
from producer.fields import MARKER_BUCKET_FIELDS
from producer.keys import (
    DELIVERY_QUEUES,
    MARKER_SHARD_HEX_UNKNOWN,
    event_marker,
)
from producer.settings import ProducerSettings
from worker.localredis import free_port
from worker.metrics import Metrics
from worker.service import WorkerService
from worker.settings import WorkerSettings

from harness import Receiver
from harness.polling import wait_until

# Compressed schedule for tests: 5 attempts, like the seed's, in a few seconds.
# bullmq rounds delays up to whole seconds, so these fire at about 1 s, 1 s, 1 s, 2 s.
TEST_SCHEDULE = "0,0.2,0.5,1,2"
PROJECT = Path(__file__).resolve().parent.parent
# The delivery log's two stores, for the conftest fixture log_env: Redis's own (no
# DATABASE_URL) and PostgreSQL.
LOG_STORES = ("redis", "postgres")


def worker_env(redis_url: str, **overrides: str) -> dict[str, str]:
    """Settings for a worker under test, as environment variables."""
    env = {
        "REDIS_URL": redis_url,
        "RETRY_SCHEDULE": TEST_SCHEDULE,
        "DELIVERY_TIMEOUT": "2",
        "ALLOW_PRIVATE_DESTINATIONS": "1",
        "METRICS_PORT": "0",
        "NOTIFY_RETRY_BASE": "0.2",
        "JOB_LOCK_TIMEOUT": "2",
        "SHUTDOWN_GRACE": "5",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }
    env.update(overrides)
    return env


def make_event(
    producer: Producer,
    event_type: str = "issue.created",
    data: dict[str, Any] | None = None,
    **fields: Any,
) -> Event:
    """A valid event of workspace ``ws_1`` (fields such as ``id`` may be given)."""
    raw = {
        "type": event_type,
        "workspace_id": "ws_1",
        "data": {"n": 1} if data is None else data,
        **fields,
    }
    return parse_event(raw, producer.catalogue, max_payload_bytes=256 * 1024)


async def delivery_job_counts(producer: Producer, *states: str) -> dict[str, int]:
    """bullmq job counts by state, summed over the delivery and retry queues."""
    totals = dict.fromkeys(states, 0)
    for name in DELIVERY_QUEUES:
        counts = await producer.dispatcher.queues[name].getJobCounts(*states)
        for state, value in counts.items():
            totals[state] += int(value)
    return totals


async def endpoint_for(producer: Producer, receiver: Receiver) -> str:
    """An endpoint of ``ws_1`` on ``receiver`` for every event type; its id."""
    created = await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@example.com"
    )
    return created.id


async def publish_numbered(producer: Producer, count: int) -> list[str]:
    """``count`` ``issue.created`` events of ``ws_1`` numbered in ``data.n``; their ids."""
    events = [make_event(producer, "issue.created", {"n": n}) for n in range(count)]
    await producer.publisher.publish_many(events)
    return [e.id for e in events]


async def outbox_empty(redis: aioredis.Redis, producer: Producer) -> bool:
    """Whether the log outbox (of the delivery log's database) holds no entry."""
    return int(await redis.xlen(producer.keys.log_outbox)) == 0


async def marker_size(producer: Producer, event_id: str, window_s: int) -> int | None:
    """Bytes of the event's idempotency marker (its field and value) in this bucket of
    ``window_s`` or the one before, by Redis's clock, at its bucket's stored width; None
    when it has none."""
    now_s = int((await producer.redis.time())[0])
    for back in (0, 1):
        at_s = now_s - back * window_s
        width = await producer.redis.hget(
            producer.keys.marker_bucket(window_s, at_s // window_s), MARKER_BUCKET_FIELDS.width
        )
        marker_id, field = event_marker(
            event_id, window_s, at_s, int(width or MARKER_SHARD_HEX_UNKNOWN)
        )
        value = await producer.redis.hget(producer.keys.event_seen(marker_id), field)
        if value is not None:
            return len(field) + len(value)
    return None


async def markers_counted(producer: Producer, window_s: int) -> int:
    """The markers counted in this bucket of ``window_s`` and the one before (their
    ``Keys.marker_bucket`` hashes), by Redis's clock."""
    bucket = int((await producer.redis.time())[0]) // window_s
    total = 0
    for back in (0, 1):
        info = producer.keys.marker_bucket(window_s, bucket - back)
        total += int(await producer.redis.hget(info, MARKER_BUCKET_FIELDS.count) or 0)
    return total


def producer_for(redis_url: str) -> Producer:
    """A producer on the test's private Redis."""
    # Receivers run on 127.0.0.1: registration allows them, as worker_env's workers do.
    return Producer(
        ProducerSettings.from_env({"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1"})
    )


@dataclass
class RunningWorker:
    """A :class:`WorkerService` running as a task of the test's event loop."""

    service: WorkerService
    task: asyncio.Task[int]
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = self.service.metrics

    async def stop(self) -> int:
        """SIGTERM-equivalent: drain and return the exit code."""
        self.service.stop()
        return await asyncio.wait_for(self.task, 30)


async def start_worker(env: Mapping[str, str]) -> RunningWorker:
    """Start an in-process worker with these settings; it is ready when this returns."""
    service = WorkerService(WorkerSettings.from_env(env))
    task = asyncio.create_task(service.run())
    await wait_until(
        lambda: task.done() or service.metrics.worker_up._value.get() == 1,
        10,
        message="worker did not start",
    )
    if task.done():
        task.result()  # raise what killed it
    return RunningWorker(service, task)


# The command line of `cliq-webhooks log-writer` (worker/logproc.py), for WorkerProcess.
LOG_WRITER_COMMAND = ("-m", "cli", "log-writer")


class WorkerProcess:
    """``python -m worker`` (or another of the service's commands, such as
    :data:`LOG_WRITER_COMMAND`) in a subprocess, signalled by its own PID.

    Every one started is kept in :attr:`started` until a test's teardown has seen it end
    (conftest's ``no_process_left``): one left running on the session's Redis would take
    the jobs of the tests after it.
    """

    started: ClassVar[list[WorkerProcess]] = []

    def __init__(
        self, env: Mapping[str, str], log_path: Path, command: Sequence[str] = ("-m", "worker")
    ) -> None:
        self.metrics_port = free_port()
        self._env = {**os.environ, **env, "METRICS_PORT": str(self.metrics_port)}
        self._env.setdefault("METRICS_HOST", "127.0.0.1")
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115  # closed in wait()/kill()
        self.process = subprocess.Popen(
            [sys.executable, *command],
            env=self._env,
            cwd=PROJECT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        WorkerProcess.started.append(self)

    @property
    def pid(self) -> int:
        """The subprocess's PID."""
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to this worker only."""
        os.kill(self.process.pid, sig)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109  # a deadline, not a scope
        """Wait for the process to exit; returns its exit code. A process still running
        after ``timeout`` fails the test with its log, which says where it stood."""
        try:
            code = await asyncio.wait_for(asyncio.to_thread(self.process.wait), timeout)
        except TimeoutError:
            raise AssertionError(
                f"still running after {timeout:g} s; its log:\n{self.log_text()}"
            ) from None
        self._log.close()
        return code

    def kill(self) -> None:
        """SIGKILL it if it still runs (teardown)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def log_text(self) -> str:
        """Everything the worker logged so far."""
        return self.log_path.read_text(errors="replace")

    def log_events(self) -> list[str]:
        """The ``event`` of every JSON log line so far."""
        return [
            json.loads(line)["event"]
            for line in self.log_text().splitlines()
            if line.startswith("{")
        ]


# Custom-header refusals, with the message each must give (API and CLI):
# (headers, the message the field error must contain)
HEADER_REFUSALS: list[tuple[dict[str, str], str]] = [
    ({"Content-Type": "text/plain"}, "Content-Type is set by cliq-webhooks on every delivery"),
    ({"Host": "example.com"}, "Host is set by cliq-webhooks on every delivery"),
    ({"Content-Length": "1"}, "Content-Length is set by cliq-webhooks on every delivery"),
    ({"X-Cliq-Signature": "x"}, "X-Cliq-Signature is set by cliq-webhooks on every delivery"),
    ({"webhook-id": "x"}, "webhook-id: webhook-* headers are the Standard Webhooks signature's"),
    ({"Webhook-Signature": "x"}, "Webhook-Signature: webhook-* headers are the Standard"),
    ({"Connection": "close"}, "Connection is a hop-by-hop header: it describes a connection"),
    ({"Transfer-Encoding": "chunked"}, "Transfer-Encoding is a hop-by-hop header"),
    ({"Keep-Alive": "timeout=5"}, "Keep-Alive is a hop-by-hop header"),
    ({"TE": "trailers"}, "TE is a hop-by-hop header"),
    ({"Upgrade": "h2c"}, "Upgrade is a hop-by-hop header"),
    ({"Proxy-Authorization": "Basic x"}, "Proxy-Authorization is a hop-by-hop header"),
    ({"Proxy-Status": "x"}, "Proxy-Status is a hop-by-hop header"),
    ({"X-Cliq-Workspace": "ws_1"}, "X-Cliq-Workspace: X-Cliq-* headers are cliq-webhooks' own"),
    ({"User-Agent": "mine"}, "User-Agent is set by cliq-webhooks on every delivery"),
    ({"X-Nul": "a\0b"}, "the value of X-Nul must not contain CR, LF or NUL"),
    ({"X-Split": "a\r\nX-Injected: b"}, "the value of X-Split must not contain CR, LF or NUL"),
    ({"Bad Name": "x"}, "'Bad Name' is not a valid header name"),
    ({f"X-H{i}": "v" for i in range(21)}, "at most 20 headers, not 21"),
    ({"X-Big": "a" * 4100}, "names and values take 4105 bytes in all, more than 4096"),
]
TIMEOUT_REFUSAL = "must be a number of seconds from 0 to 10, the workers' DELIVERY_TIMEOUT"


async def wait_for_api(
    session: aiohttp.ClientSession,
    base: str,
    process: subprocess.Popen[bytes],
    log_path: Path,
    timeout_s: float,
) -> None:
    """Poll ``base``/readyz of an API process until it answers 200; fail at once with its
    log if it exits, or after ``timeout_s``."""

    async def ready() -> bool:
        if process.poll() is not None:
            log = log_path.read_text()  # noqa: ASYNC240  # a small log, once, as the test fails
            raise AssertionError(f"the API exited early:\n{log}")
        try:
            async with session.get(f"{base}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await wait_until(ready, timeout_s, interval=0.1, message="the API did not become ready")
