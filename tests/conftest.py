"""Fixtures for the integration tests: a private Redis and PostgreSQL, real receivers, a
real SMTP server.

Every server here is started by the test session itself on a free 127.0.0.1 port and
stopped by its own PID. No test ever talks to any other Redis (a system one may run on
6379) or PostgreSQL (5432).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.store.migrate import migrate
from producer.store.postgres import PostgresLogStore

from harness import (
    NodeReceiver,
    NodeReceiverFactory,
    NodeReceiverUnavailable,
    PostgresServer,
    PostgresServerError,
    Receiver,
    ReceiverFactory,
    RedisServer,
    RedisServerError,
    RedisServerFactory,
    ScriptedResponse,
    SmtpServer,
)
from harness.node_receiver import RECEIVER_JS, find_node
from harness.receiver import HANG_CAP_S
from support import (
    LOG_STORES,
    RunningWorker,
    WorkerProcess,
    producer_for,
    start_worker,
    worker_env,
)


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """Fails the teardown of a test that left a worker (or log-writer) process running,
    after ending it: on the session's Redis it would take later tests' jobs."""
    yield
    left = [p for p in WorkerProcess.started if p.process.poll() is None]
    for process in left:
        process.kill()
    WorkerProcess.started.clear()
    if left:
        pytest.fail(f"the test left {len(left)} process(es) running: {[p.pid for p in left]}")


def _start_redis(
    extra_args: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> RedisServer:
    try:
        server = RedisServer(extra_args, directory=tmp_path_factory.mktemp("redis"))
        server.start()
    except RedisServerError as exc:
        problem = str(exc)
    else:
        return server
    pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's private ``redis-server`` (no persistence), stopped at the end."""
    server = _start_redis((), tmp_path_factory)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RedisServerFactory]:
    """More private servers with extra arguments (e.g. ``"--appendonly", "yes"``).

    Each one has its own port and folder; all are stopped when the test ends.
    """
    servers: list[RedisServer] = []

    def factory(*extra_args: str) -> RedisServer:
        server = _start_redis(extra_args, tmp_path_factory)
        servers.append(server)
        return server

    try:
        yield factory
    finally:
        for server in servers:
            server.close()


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> str:
    """The private server's URL, emptied with FLUSHALL before the test.

    FLUSHALL is safe: it only ever goes to the server this session started. A server
    that an earlier test left stopped is started again first, on the same port.
    """
    if not redis_server.running:
        redis_server.restart()
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return redis_server.url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the (flushed) private server: ``decode_responses=True``, no timeout."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=None)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def receiver_factory() -> AsyncIterator[ReceiverFactory]:
    """Starts as many HTTP receivers as the test wants; all are stopped at teardown."""
    receivers: list[Receiver] = []

    async def factory(
        default: ScriptedResponse | None = None, hang_cap_s: float = HANG_CAP_S
    ) -> Receiver:
        receiver = Receiver(default=default, hang_cap_s=hang_cap_s)
        await receiver.start()
        receivers.append(receiver)
        return receiver

    try:
        yield factory
    finally:
        for receiver in receivers:
            await receiver.stop()


@pytest.fixture
async def receiver(receiver_factory: ReceiverFactory) -> Receiver:
    """One started HTTP receiver answering 200 ``ok`` unless scripted otherwise."""
    return await receiver_factory()


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpServer]:
    """A real SMTP server capturing every message; ``.url`` is ``smtp://127.0.0.1:PORT``."""
    server = SmtpServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def node_receiver_factory() -> AsyncIterator[NodeReceiverFactory]:
    """Starts ``node tests/node/receiver.js`` with the given ``CLIQ_WEBHOOK_SECRET``.

    Fails (does not skip) when Node.js or the receiver's ``node_modules`` is missing.
    """
    problem = None
    try:
        find_node()
    except NodeReceiverUnavailable as exc:
        problem = str(exc)
    if problem is not None:
        pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback
    receivers: list[NodeReceiver] = []

    async def factory(
        secret: str, script: Path | None = None, env: Mapping[str, str] | None = None
    ) -> NodeReceiver:
        receiver = NodeReceiver(secret, script=script or RECEIVER_JS, env=env)
        receivers.append(receiver)
        await receiver.start()
        return receiver

    try:
        yield factory
    finally:
        for receiver in receivers:
            await receiver.stop()
            receiver.close()


@pytest.fixture
async def producer(redis_url: str) -> AsyncIterator[Producer]:
    """A producer (registry, publisher, delivery log) on the private Redis."""
    async with producer_for(redis_url) as p:
        yield p


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL (initdb in a temporary folder), removed at the end."""
    try:
        server = PostgresServer()
        server.start()
    except PostgresServerError as exc:
        problem = str(exc)
    else:
        try:
            yield server
        finally:
            server.close()
        return
    pytest.fail(problem, pytrace=False)  # outside `except`: no chained traceback


@pytest.fixture(scope="session")
async def postgres_template(postgres_server: PostgresServer) -> str:
    """A database migrated once, that each test's database is copied from."""
    name = await postgres_server.create_database()
    pool = await asyncpg.create_pool(postgres_server.url(name), min_size=1, max_size=1)
    try:
        await migrate(pool)
    finally:
        await pool.close()
    return name


@pytest.fixture
async def postgres_url(
    postgres_server: PostgresServer, postgres_template: str
) -> AsyncIterator[str]:
    """A fresh migrated database of the private server (no partitions yet), dropped after."""
    name = await postgres_server.create_database(template=postgres_template)
    try:
        yield postgres_server.url(name)
    finally:
        await postgres_server.drop_database(name)


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresLogStore]:
    """The PostgreSQL log store on :func:`postgres_url`'s database (a module may define
    its own, with partitions)."""
    opened = await PostgresLogStore.open(postgres_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, stopped and started again by it."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def postgres_empty_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh empty database of the private server, dropped after the test."""
    name = await postgres_server.create_database()
    try:
        yield postgres_server.url(name)
    finally:
        await postgres_server.drop_database(name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.both_stores`` (on a test or a module): the test runs once per
    delivery log store, ``[redis]`` and ``[postgres]``, through ``log_env``, which the
    test or one of its fixtures must use."""
    if metafunc.definition.get_closest_marker("both_stores") is None:
        return
    if "log_env" not in metafunc.fixturenames:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: both_stores needs log_env")
    already = any(
        "log_env" in mark.args[0]
        for mark in metafunc.definition.iter_markers("parametrize")
        if mark.args and isinstance(mark.args[0], str)
    )
    if not already:
        metafunc.parametrize("log_env", LOG_STORES, indirect=True)


@pytest.fixture
def log_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings that choose the delivery log's store: ``{}`` (Redis) or a fresh
    migrated database of the session's private PostgreSQL as ``DATABASE_URL``. A test
    runs against both with ``@pytest.mark.both_stores`` (or ``parametrize("log_env",
    LOG_STORES, indirect=True)``, :data:`support.LOG_STORES`); without, it gets Redis's."""
    kind = getattr(request, "param", "redis")
    if kind == "redis":
        return {}
    assert kind == "postgres", kind
    # A sync fixture: it may ask for the async postgres_url (dropped after the test).
    url: str = request.getfixturevalue("postgres_url")
    return {"DATABASE_URL": url}


@pytest.fixture
async def worker_factory(
    redis_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[RunningWorker]]]:
    """Starts in-process workers on the test's Redis (settings as keyword overrides);
    those still running are stopped afterwards."""
    running: list[RunningWorker] = []

    async def factory(**overrides: str) -> RunningWorker:
        overrides.setdefault("NOTIFY_OUTBOX", str(tmp_path / "outbox"))
        worker = await start_worker(worker_env(redis_url, **overrides))
        running.append(worker)
        return worker

    yield factory
    for worker in running:
        if not worker.task.done():
            await worker.stop()


@pytest.fixture
def spawn_worker(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Starts ``python -m worker`` processes (or, with ``command``, another of the
    service's, such as ``support.LOG_WRITER_COMMAND``) on the test's Redis; kills them
    afterwards and prints their logs (shown by pytest only when the test failed)."""
    processes: list[WorkerProcess] = []

    def spawn(command: Sequence[str] = ("-m", "worker"), **overrides: str) -> WorkerProcess:
        env = worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox"), **overrides)
        process = WorkerProcess(env, tmp_path / f"worker-{len(processes)}.log", command)
        processes.append(process)
        return process

    yield spawn
    for number, process in enumerate(processes):
        process.kill()
        print(f"--- worker-{number}.log\n{process.log_text()}")
