"""DATABASE_URL at start: `cliq-webhooks migrate`, and the API and workers refusing a
schema older than theirs (exit 2, naming the command) or an unreachable database (exit 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import asyncpg
import pytest

from producer.context import Producer
from producer.settings import ProducerSettings
from producer.store.migrate import load_migrations, schema_version
from producer.store.startup import DatabaseUnreachable, SchemaTooOld, migrate_database
from worker.localpostgres import LocalPostgres, find_postgres_bindir
from worker.localredis import free_port
from worker.service import WorkerService
from worker.settings import WorkerSettings

from support import PROJECT, worker_env

PASSWORD = "hunter2-secret"


def run(*command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m COMMAND`` with these settings, until it exits (it should, at once)."""
    return subprocess.run(
        [sys.executable, "-m", *command],
        # The API refuses to start without API_KEYS unless told: not what is tested here.
        env={**os.environ, "PORT": str(free_port()), "ALLOW_NO_AUTH": "1", **env},
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def unreachable_url() -> str:
    """A database URL with a password, on a loopback port nothing listens on."""
    return f"postgresql://cliq:{PASSWORD}@127.0.0.1:{free_port()}/nothing"


async def version_of(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await schema_version(conn)
    finally:
        await conn.close()


async def test_migrate_applies_the_schema_once_and_prints_the_version(
    postgres_empty_url: str,
) -> None:
    needed = len(load_migrations())
    first = run("cli", "migrate", DATABASE_URL=postgres_empty_url)
    assert first.returncode == 0, first.stderr
    assert f"schema at version {needed} (applied" in first.stdout
    assert await version_of(postgres_empty_url) == needed
    again = run("cli", "migrate", "--json", DATABASE_URL=postgres_empty_url)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"version": needed, "applied": []}


def test_migrate_without_database_url_says_so() -> None:
    done = run("cli", "migrate", DATABASE_URL="")
    assert done.returncode == 2
    assert "DATABASE_URL is not set" in done.stderr


def test_migrate_on_an_unreachable_database_exits_1_without_the_password() -> None:
    url = unreachable_url()
    done = run("cli", "migrate", "--database-url", url)
    assert done.returncode == 1, done.stderr
    assert "cannot reach the database at postgresql://cliq:***@127.0.0.1:" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def test_a_database_url_that_is_not_postgresql_is_refused() -> None:
    done = run("cli", "migrate", DATABASE_URL="mysql://db/x")
    assert done.returncode == 2
    assert "DATABASE_URL=<hidden>: must be empty or a postgresql:// URL" in done.stderr


@pytest.mark.parametrize("command", [["producer"], ["worker"], ["cli", "worker"]])
def test_api_and_workers_refuse_an_unmigrated_database_naming_the_command(
    redis_url: str, postgres_empty_url: str, command: list[str]
) -> None:
    done = run(*command, **worker_env(redis_url, DATABASE_URL=postgres_empty_url))
    assert done.returncode == 2, done.stderr
    (message,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    needed = len(load_migrations())
    assert f"schema is at version 0, this build needs {needed}" in message
    assert "run `cliq-webhooks migrate`" in message


@pytest.mark.parametrize("command", [["producer"], ["worker"]])
def test_api_and_workers_exit_1_on_an_unreachable_database(
    redis_url: str, command: list[str]
) -> None:
    done = run(*command, **worker_env(redis_url, DATABASE_URL=unreachable_url()))
    assert done.returncode == 1, done.stderr
    assert "cannot reach the database at postgresql://cliq:***@" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


async def test_a_worker_refuses_an_unmigrated_database_before_taking_work(
    redis_url: str, postgres_empty_url: str
) -> None:
    service = WorkerService(
        WorkerSettings.from_env(worker_env(redis_url, DATABASE_URL=postgres_empty_url))
    )
    with pytest.raises(SchemaTooOld, match="cliq-webhooks migrate"):
        await service.run()
    assert service.metrics.worker_up._value.get() == 0


async def test_the_producer_opens_the_store_only_with_a_database_url(
    redis_url: str, postgres_url: str
) -> None:
    async with Producer(ProducerSettings.from_env({"REDIS_URL": redis_url})) as without:
        await without.open_log_store()
        assert without.log_store is None
    settings = ProducerSettings.from_env({"REDIS_URL": redis_url, "DATABASE_URL": postgres_url})
    async with Producer(settings) as producer:
        await producer.open_log_store()
        assert producer.log_store is not None
        assert await producer.log_store.get_event("evt_none") is None
    unreachable = ProducerSettings.from_env(
        {"REDIS_URL": redis_url, "DATABASE_URL": unreachable_url()}
    )
    async with Producer(unreachable) as producer:
        with pytest.raises(DatabaseUnreachable):
            await producer.open_log_store()


async def test_the_demos_private_postgresql_starts_answers_and_leaves_nothing() -> None:
    bindir = find_postgres_bindir()
    assert bindir is not None, "the tests need PostgreSQL's server programs (make postgres)"
    local = LocalPostgres(bindir)
    folder = local._dir
    await local.start()
    try:
        assert local.port != 5432
        assert (await migrate_database(local.url)).version == len(load_migrations())
    finally:
        await local.stop()
    assert not folder.exists()
    with pytest.raises(DatabaseUnreachable):
        await migrate_database(local.url)


def test_the_demo_keeps_its_log_in_a_private_postgresql(redis_url: str) -> None:
    done = run("cli", "demo", "--events", "4", REDIS_URL=redis_url, DATABASE_URL="")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Started a private PostgreSQL on 127.0.0.1:" in done.stdout
    assert f"The delivery log lives in PostgreSQL (schema version {len(load_migrations())})" in (
        done.stdout
    )
    assert "The delivery log in PostgreSQL: " in done.stdout
    assert "Demo finished: everything behaved as documented." in done.stdout


def test_status_says_where_the_delivery_log_lives(redis_url: str, postgres_url: str) -> None:
    in_redis = run("cli", "status", "--json", **worker_env(redis_url))
    assert in_redis.returncode == 0, in_redis.stderr
    assert json.loads(in_redis.stdout)["log"] == {"store": "redis"}
    in_pg = run("cli", "status", "--json", **worker_env(redis_url, DATABASE_URL=postgres_url))
    assert in_pg.returncode == 0, in_pg.stderr
    log = json.loads(in_pg.stdout)["log"]
    assert log["store"] == "postgresql"
    assert log["outbox"] == 0
    assert set(log["deliveries"]) <= {"queued", "scheduled", "paused", "delivered", "dead"}
    table = run("cli", "status", **worker_env(redis_url, DATABASE_URL=postgres_url))
    assert "delivery log in postgresql: 0 outcomes waiting to be written" in table.stdout
