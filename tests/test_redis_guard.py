"""A Redis that may lose acknowledged data is refused or noticed (producer/redis_guard.py).

Every server here is a private ``redis-server`` of the test session: one started with
``--maxmemory-policy allkeys-lru`` (or switched to it with ``CONFIG SET``), one whose
``CONFIG`` command is renamed away (as managed services do), and non-persistent ones
that are restarted or flushed while the API and a worker run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from producer.context import Producer
from producer.http.app import create_app
from producer.http.problems import PROBLEM_BASE
from producer.http.state import GUARD, ApiSettings
from producer.keys import Keys
from producer.redis_guard import (
    EVICTING_LOG_INTERVAL_S,
    GuardMetrics,
    RedisEvictingError,
    RedisGuard,
)
from producer.settings import ProducerSettings
from worker.localredis import LocalRedis, free_port
from worker.service import WorkerService
from worker.settings import WorkerSettings

from harness import Receiver, RedisServerFactory
from harness.polling import wait_until
from support import PROJECT, RunningWorker, make_event, producer_for, start_worker, worker_env

Client = TestClient[web.Request, web.Application]
LRU = ("--maxmemory-policy", "allkeys-lru")
# Deadline of a change noticed by the periodic check (every 2 s, see CHECK_INTERVAL_S).
NOTICE_S = 10


class ApiFactory(Protocol):
    async def __call__(self, redis_url: str, **env: str) -> Client: ...


@pytest.fixture
async def api_factory() -> AsyncIterator[ApiFactory]:
    """Started APIs on 127.0.0.1 (closed at the end)."""
    clients: list[Client] = []

    async def factory(redis_url: str, **env: str) -> Client:
        settings = ApiSettings.from_env({"REDIS_URL": redis_url, **env})
        client: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
        clients.append(client)
        await client.start_server()
        return client

    yield factory
    for client in clients:
        await client.close()


def guard_of(api: Client) -> RedisGuard:
    """The API's Redis guard."""
    app = api.app
    assert app is not None
    return app[GUARD]


async def policy(url: str, value: str) -> None:
    """``CONFIG SET maxmemory-policy value`` on the private server at ``url``."""
    client = aioredis.Redis.from_url(url)
    try:
        await client.config_set("maxmemory-policy", value)
    finally:
        await client.aclose()


async def marker(url: str) -> str | None:
    """The generation marker stored in Redis, if any."""
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        value = await client.get(Keys().generation)
        return None if value is None else str(value)
    finally:
        await client.aclose()


def run(module: str, redis_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m module`` with these settings, until it exits (it should, at once)."""
    return subprocess.run(
        [sys.executable, "-m", module],
        # ALLOW_NO_AUTH: the API would refuse to start without API_KEYS first (issue 19).
        env={
            **os.environ,
            **worker_env(redis_url),
            "PORT": str(free_port()),
            "ALLOW_NO_AUTH": "1",
            **env,
        },
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refusal_message(text: str) -> None:
    assert "maxmemory-policy allkeys-lru" in text
    assert "CONFIG SET maxmemory-policy noeviction" in text
    assert "ALLOW_EVICTING_REDIS" in text


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status, json.loads(await response.text())


async def scrape(port: int) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as response,
    ):
        return await response.text()


async def accepted(api: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST until it is not refused for Redis being unavailable (after a restart, each
    pooled connection fails once, as callers retrying with the same ids ride out)."""
    answers: list[tuple[int, dict[str, Any]]] = []

    async def answered() -> bool:
        response = await api.post(path, json=body)
        answers.append((response.status, await response.json()))
        return response.status != 503

    await wait_until(answered, NOTICE_S, message=f"POST {path} kept failing")
    status, document = answers[-1]
    assert status in (201, 202), document
    return document


def sample(metrics_text: str, name: str) -> float | None:
    for line in metrics_text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# ---------------------------------------------------------------- the servers used here


async def test_the_test_servers_and_the_demo_redis_never_evict(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        await client.aclose()
    async with LocalRedis() as local:
        client = aioredis.Redis.from_url(local.url, decode_responses=True)
        try:
            assert await client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        finally:
            await client.aclose()


# ---------------------------------------------------------------- refused at start


async def test_the_api_refuses_to_start_on_an_evicting_redis(
    redis_server_factory: RedisServerFactory, api_factory: ApiFactory
) -> None:
    server = redis_server_factory(*LRU)
    with structlog.testing.capture_logs() as logs, pytest.raises(RedisEvictingError) as refused:
        await api_factory(server.url)
    assert_refusal_message(str(refused.value))
    assert any(
        e["event"] == "redis_evicting"
        and e["log_level"] == "error"
        and e["policy"] == "allkeys-lru"
        for e in logs
    )
    assert await marker(server.url) is None  # nothing written


def test_python_m_producer_exits_2_naming_the_policy_the_setting_and_the_fix(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(*LRU)
    done = run("producer", server.url)
    assert done.returncode == 2, done.stderr
    (message,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert_refusal_message(message)
    # Also in the JSON log, where operators look.
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(e["event"] == "redis_evicting" and e["level"] == "error" for e in logged)


async def test_a_worker_refuses_to_start_on_an_evicting_redis(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(*LRU)
    service = WorkerService(WorkerSettings.from_env(worker_env(server.url)))
    with pytest.raises(RedisEvictingError) as refused:
        await service.run()
    assert_refusal_message(str(refused.value))
    assert service.metrics.worker_up._value.get() == 0


@pytest.mark.parametrize(
    "command", [["worker"], ["cli", "worker"], ["cli", "worker", "--processes", "2"]]
)
def test_the_worker_command_exits_2_on_an_evicting_redis(
    redis_server_factory: RedisServerFactory, command: list[str]
) -> None:
    server = redis_server_factory(*LRU)
    done = subprocess.run(
        [sys.executable, "-m", *command],
        env={**os.environ, **worker_env(server.url)},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    # One line per process that refused (under --processes, the children that got so far).
    messages = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert messages
    for message in messages:
        assert_refusal_message(message)


# ---------------------------------------------------------------- the override


async def test_with_the_override_the_api_runs_and_says_so(
    redis_server_factory: RedisServerFactory, api_factory: ApiFactory
) -> None:
    server = redis_server_factory(*LRU)
    with structlog.testing.capture_logs() as logs:
        api = await api_factory(server.url, ALLOW_EVICTING_REDIS="1")
    (line,) = [e for e in logs if e["event"] == "redis_evicting"]
    assert (line["log_level"], line["policy"], line["allowed"]) == ("error", "allkeys-lru", True)
    response = await api.get("/readyz")
    body = await response.json()
    assert response.status == 200
    assert any(
        "allkeys-lru" in note and "ALLOW_EVICTING_REDIS" in note for note in body["warnings"]
    )
    published = await api.post(
        "/v1/events", json={"type": "issue.created", "workspace_id": "ws_1", "data": {}}
    )
    assert published.status == 202
    assert "cliq_redis_evicting 1.0" in await (await api.get("/metrics")).text()


async def test_with_the_override_a_worker_runs_and_reports_it(
    redis_server_factory: RedisServerFactory, receiver: Receiver
) -> None:
    server = redis_server_factory(*LRU)
    port = free_port()
    worker = await start_worker(
        worker_env(
            server.url, ALLOW_EVICTING_REDIS="1", METRICS_PORT=str(port), METRICS_HOST="127.0.0.1"
        )
    )
    try:
        status, body = await readyz(port)
        assert status == 200
        assert any("allkeys-lru" in note for note in body["warnings"])
        assert sample(await scrape(port), "cliq_redis_evicting") == 1.0
        async with producer_for(server.url) as producer:
            await producer.endpoints.create(
                workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@x.example"
            )
            await producer.publisher.publish(make_event(producer))
        await receiver.wait_for(1, 10)
    finally:
        assert await worker.stop() == 0


async def test_the_override_logs_an_error_every_minute(
    redis_server_factory: RedisServerFactory,
) -> None:
    server = redis_server_factory(*LRU)
    now = [1000.0]
    client = aioredis.Redis.from_url(server.url, decode_responses=True)
    guard = RedisGuard(
        client,
        [Keys()],
        GuardMetrics(CollectorRegistry()),
        allow_evicting=True,
        clock=lambda: now[0],
    )
    try:
        with structlog.testing.capture_logs() as logs:
            await guard.start()
            for step in (1.0, EVICTING_LOG_INTERVAL_S - 2, 1.0, 1.0, 30.0):
                now[0] += step
                await guard.check()
        logged_at = [e["policy"] for e in logs if e["event"] == "redis_evicting"]
        # At 0 s, then once the minute has passed (at 60 s), not in between.
        assert logged_at == ["allkeys-lru", "allkeys-lru"]
        assert all(e["log_level"] == "error" for e in logs if e["event"] == "redis_evicting")
    finally:
        await client.aclose()


# ---------------------------------------------------------------- changed while running


async def test_the_api_stops_acknowledging_when_redis_turns_evicting(
    redis_server_factory: RedisServerFactory, api_factory: ApiFactory
) -> None:
    server = redis_server_factory()
    api = await api_factory(server.url)
    event = {"type": "issue.created", "workspace_id": "ws_1", "data": {}}
    assert (await api.post("/v1/events", json=event)).status == 202

    await policy(server.url, "allkeys-lru")

    async def refused() -> bool:
        return (await api.get("/readyz")).status == 503

    await wait_until(refused, NOTICE_S, message="/readyz did not turn 503")
    ready = await (await api.get("/readyz")).json()
    assert ready["type"] == PROBLEM_BASE + "redis-evicting"
    assert "allkeys-lru" in ready["detail"]
    response = await api.post("/v1/events", json=event)
    body = await response.json()
    assert response.status == 503
    assert body["type"] == PROBLEM_BASE + "redis-evicting"
    assert_refusal_message(body["detail"])
    assert "Nothing was stored" in body["detail"]
    assert (await api.get("/v1/event-types")).status == 200  # reads still answered

    await policy(server.url, "noeviction")

    async def ready_again() -> bool:
        return (await api.get("/readyz")).status == 200

    await wait_until(ready_again, NOTICE_S, message="/readyz did not recover")
    assert (await api.post("/v1/events", json=event)).status == 202


async def test_a_worker_stops_taking_jobs_while_redis_evicts_and_resumes_after(
    redis_server_factory: RedisServerFactory, receiver: Receiver
) -> None:
    server = redis_server_factory()
    port = free_port()
    # A batch of 2 is one bullmq job: it waits in the queue, visibly, while intake is off.
    env = worker_env(server.url, METRICS_PORT=str(port), METRICS_HOST="127.0.0.1", BATCH_SIZE="2")
    worker = await start_worker(env)
    settings = ProducerSettings.from_env({"REDIS_URL": server.url, "BATCH_SIZE": "2"})
    try:
        async with producer_for(server.url) as setup:
            await setup.endpoints.create(
                workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="o@x.example"
            )
        with structlog.testing.capture_logs() as logs:
            await policy(server.url, "volatile-lru")

            async def refusing() -> bool:
                status, _body = await readyz(port)
                return status == 503

            await wait_until(refusing, NOTICE_S, message="the worker's /readyz did not turn 503")
            status, body = await readyz(port)
            assert body["redis"] is True
            assert body["status"] == "not_ready"
            assert any("volatile-lru" in note for note in body["warnings"])
            await wait_until(
                lambda: any(e["event"] == "intake_stopped" for e in logs),
                NOTICE_S,
                message="intake_stopped was not logged",
            )
            async with Producer(settings) as producer:
                await producer.publisher.publish_many([make_event(producer) for _ in range(2)])

            async def job_waits_untaken() -> bool:
                text = await scrape(port)
                return sample(text, 'cliq_queue_jobs{queue="deliveries",state="wait"}') == 1.0

            # The worker's own gauges, refreshed after the job was added: it was not taken.
            await wait_until(job_waits_untaken, NOTICE_S, message="the job was not seen waiting")
            assert receiver.received == []
            assert sample(await scrape(port), "cliq_redis_evicting") == 1.0

            await policy(server.url, "noeviction")
            requests = await receiver.wait_for(2, 15)
            assert len(requests) == 2
            assert any(e["event"] == "intake_resumed" for e in logs)
        status, body = await readyz(port)
        assert (status, body) == (200, {"status": "ready", "redis": True})
    finally:
        assert await worker.stop() == 0


# ---------------------------------------------------------------- CONFIG refused


async def test_a_redis_that_refuses_config_get_is_used_with_a_warning(
    redis_server_factory: RedisServerFactory, api_factory: ApiFactory
) -> None:
    server = redis_server_factory("--rename-command", "CONFIG", "")
    with structlog.testing.capture_logs() as logs:
        api = await api_factory(server.url)
    (line,) = [e for e in logs if e["event"] == "redis_policy_unknown"]
    assert line["log_level"] == "warning"
    response = await api.get("/readyz")
    assert response.status == 200
    (note,) = (await response.json())["warnings"]
    assert "maxmemory-policy unknown" in note
    published = await api.post(
        "/v1/events", json={"type": "issue.created", "workspace_id": "ws_1", "data": {}}
    )
    assert published.status == 202


# ---------------------------------------------------------------- data lost


@pytest.mark.parametrize("how", ["restart", "flushall"])
async def test_a_redis_that_lost_its_data_is_noticed_by_the_api_and_a_worker(
    redis_server_factory: RedisServerFactory, api_factory: ApiFactory, receiver: Receiver, how: str
) -> None:
    server = redis_server_factory()  # no persistence (the harness's default)
    port = free_port()
    env = worker_env(server.url, METRICS_PORT=str(port), METRICS_HOST="127.0.0.1")
    # The receiver is on loopback: the destination policy must allow it at registration.
    api = await api_factory(server.url, ALLOW_PRIVATE_DESTINATIONS="1")
    worker: RunningWorker = await start_worker(env)
    try:
        created = await api.post(
            "/v1/endpoints",
            json={
                "workspace_id": "ws_1",
                "url": receiver.url(),
                "events": ["*"],
                "owner_email": "o@x.example",
            },
        )
        assert created.status == 201
        first = await marker(server.url)
        assert first is not None
        api_guard = guard_of(api)
        worker_guard = worker.service.guard
        assert worker_guard is not None
        await wait_until(
            lambda: api_guard.generation == first and worker_guard.generation == first,
            NOTICE_S,
            message="the processes did not see the first endpoint's generation",
        )
        # Nothing amiss so far: the probes' bodies are as they always were.
        assert await (await api.get("/readyz")).json() == {"status": "ready"}
        assert await readyz(port) == (200, {"status": "ready", "redis": True})

        with structlog.testing.capture_logs() as logs:
            if how == "restart":
                server.restart()  # a real restart: this server keeps nothing on disk
            else:
                client = aioredis.Redis.from_url(server.url)
                await client.flushall()
                await client.aclose()

            def both_noticed() -> bool:
                return api_guard.data_lost is not None and worker_guard.data_lost is not None

            await wait_until(both_noticed, NOTICE_S, message="the loss was not noticed")
        lost = [e for e in logs if e["event"] == "redis_data_lost"]
        assert len(lost) == 2  # the API and the worker, once each
        second = await marker(server.url)
        assert second is not None
        assert second != first
        for entry in lost:
            assert entry["log_level"] == "error"
            assert (entry["previous_generation"], entry["generation"]) == (first, second)

        async def api_reports() -> bool:
            response = await api.get("/readyz")
            body = await response.json()
            return response.status == 200 and any(
                "Redis lost its data" in note and first in note for note in body.get("warnings", [])
            )

        await wait_until(api_reports, NOTICE_S, message="the API's /readyz did not say so")

        async def worker_reports() -> bool:
            status, body = await readyz(port)
            return status == 200 and any(
                "Redis lost its data" in note for note in body.get("warnings", [])
            )

        await wait_until(worker_reports, NOTICE_S, message="the worker's /readyz did not say so")
        assert "cliq_redis_data_lost_total 1.0" in await (await api.get("/metrics")).text()
        assert sample(await scrape(port), "cliq_redis_data_lost_total") == 1.0

        # Both adopted the new generation and go on working: nothing counted twice.
        assert (api_guard.generation, worker_guard.generation) == (second, second)
        endpoint = {
            "workspace_id": "ws_1",
            "url": receiver.url(),
            "events": ["*"],
            "owner_email": "o@x.example",
        }
        await accepted(api, "/v1/endpoints", endpoint)
        event = {"type": "issue.created", "workspace_id": "ws_1", "data": {}}
        assert (await accepted(api, "/v1/events", event))["deliveries"] == 1
        await receiver.wait_for(1, 15)
        assert await marker(server.url) == second
        assert sample(await scrape(port), "cliq_redis_data_lost_total") == 1.0
    finally:
        assert await worker.stop() == 0


async def test_a_process_starting_on_endpoints_without_a_marker_writes_one(
    redis_url: str, api_factory: ApiFactory
) -> None:
    """Endpoints stored before markers existed: the first process to start marks them."""
    async with producer_for(redis_url) as producer:
        await producer.endpoints.create(
            workspace_id="ws_1",
            url="https://example.com/h",
            events=["*"],
            owner_email="o@x.example",
        )
        await producer.redis.delete(producer.keys.generation)
    api = await api_factory(redis_url)
    stored = await marker(redis_url)
    assert stored is not None
    assert guard_of(api).generation == stored
    assert guard_of(api).data_lost is None


async def test_an_empty_redis_gets_no_marker_until_the_first_endpoint(
    redis_url: str, api_factory: ApiFactory
) -> None:
    api = await api_factory(redis_url)
    assert await marker(redis_url) is None
    assert guard_of(api).generation is None
