"""Schema migrations of the PostgreSQL delivery log, on the session's private server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from producer.store.migrate import (
    Migration,
    SchemaError,
    check_schema,
    load_migrations,
    migrate,
    schema_version,
)


@pytest.fixture
async def empty_pool(postgres_empty_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(postgres_empty_url, min_size=1, max_size=3)
    try:
        yield pool
    finally:
        await pool.close()


async def tables(pool: asyncpg.Pool) -> set[str]:
    rows = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        " UNION SELECT relname FROM pg_class WHERE relkind = 'p'"
    )
    return {row[0] for row in rows}


def test_the_build_ships_numbered_migrations() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "delivery_log"
    assert "CREATE TABLE deliveries" in migrations[0].sql


async def test_migrate_applies_every_file_once(empty_pool: asyncpg.Pool) -> None:
    needed = len(load_migrations())
    assert await migrate(empty_pool) == list(range(1, needed + 1))
    assert {"events", "event_ids", "deliveries", "attempts", "delivery_counts"} <= await tables(
        empty_pool
    )
    # Idempotent: a second run applies nothing and changes nothing.
    assert await migrate(empty_pool) == []
    rows = await empty_pool.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [
        (m.version, m.name) for m in load_migrations()
    ]
    assert await check_schema(empty_pool) == needed


async def test_concurrent_migrations_apply_each_file_once(empty_pool: asyncpg.Pool) -> None:
    results = await asyncio.gather(migrate(empty_pool), migrate(empty_pool), migrate(empty_pool))
    applied = sorted(v for result in results for v in result)
    assert applied == [m.version for m in load_migrations()]


async def test_an_empty_database_is_refused_with_the_command_to_run(
    empty_pool: asyncpg.Pool,
) -> None:
    needed = len(load_migrations())
    with pytest.raises(SchemaError) as caught:
        await check_schema(empty_pool)
    assert str(caught.value) == (
        f"database schema is at version 0, this build needs {needed}: run `cliq-webhooks migrate`"
    )


async def test_an_older_schema_is_refused_and_a_newer_one_accepted(
    empty_pool: asyncpg.Pool,
) -> None:
    shipped = load_migrations()
    newer = [*shipped, Migration(len(shipped) + 1, "later", "CREATE TABLE later (x int)")]
    await migrate(empty_pool)
    with pytest.raises(SchemaError) as caught:
        await check_schema(empty_pool, newer)
    assert str(caught.value) == (
        f"database schema is at version {len(shipped)}, this build needs {len(newer)}: "
        "run `cliq-webhooks migrate`"
    )
    assert await migrate(empty_pool, newer) == [len(newer)]
    assert await check_schema(empty_pool, newer) == len(newer)
    # The older build keeps working on the newer schema (migrations only add).
    assert await check_schema(empty_pool) == len(newer)


async def test_a_failing_migration_applies_nothing(empty_pool: asyncpg.Pool) -> None:
    broken = [*load_migrations(), Migration(2, "broken", "CREATE TABLE deliveries (x int)")]
    with pytest.raises(asyncpg.DuplicateTableError):
        await migrate(empty_pool, broken)
    async with empty_pool.acquire() as conn:
        assert await schema_version(conn) == 0
    assert "deliveries" not in await tables(empty_pool)


def test_migration_files_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("SELECT 1")
    (tmp_path / "0003_third.sql").write_text("SELECT 3")
    with pytest.raises(SchemaError, match=r"without gaps: found 0003_third\.sql where 0002"):
        load_migrations(tmp_path)


def test_migration_files_must_be_named_by_number(tmp_path: Path) -> None:
    (tmp_path / "first.sql").write_text("SELECT 1")
    with pytest.raises(SchemaError, match=r"'first\.sql' is not named NNNN_name\.sql"):
        load_migrations(tmp_path)
