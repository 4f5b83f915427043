"""Versioned schema migrations of the PostgreSQL delivery log.

The schema lives in one folder, ``producer/store/migrations``, as ``NNNN_name.sql``
files applied in order of their number. :func:`migrate` (what ``cliq-webhooks migrate``
runs) applies the missing ones in one transaction under an advisory lock, so two
processes migrating at once apply each file once, and a failing file leaves the schema
as it was. Applied versions are rows of ``schema_migrations``.

:func:`check_schema` is what the API and the workers call at start: a database older
than this build is refused, with the command that fixes it. A newer one is accepted
(migrations only add, so an older build keeps working during a rolling upgrade).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING

import asyncpg
import structlog

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A connection of its own or one of a pool.
    Connection = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

log = structlog.get_logger("cliq.producer.store")

MIGRATE_COMMAND = "cliq-webhooks migrate"
# Serialises migrations between processes. Any constant unique to this project.
MIGRATION_LOCK = 0x636C6971_0001

_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class SchemaError(RuntimeError):
    """The database's schema cannot be used by this build (the message says why)."""


@dataclass(frozen=True)
class Migration:
    """One file of the migrations folder."""

    version: int
    name: str
    sql: str


def load_migrations(folder: Traversable | None = None) -> list[Migration]:
    """The migrations of ``folder`` (this build's own by default), in order; gaps or
    strays are an error."""
    if folder is None:
        folder = resources.files("producer.store").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE.match(entry.name)
        if match is None:
            raise SchemaError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match["version"]), match["name"], entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise SchemaError(
                f"migrations must be numbered 1, 2, 3, ... without gaps: "
                f"found {migration.version:04d}_{migration.name}.sql where {expected:04d} belongs"
            )
    return found


async def schema_version(conn: Connection) -> int:
    """The highest migration applied to this database, 0 for an empty one."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    version: int | None = await conn.fetchval("SELECT max(version) FROM schema_migrations")
    return version or 0


async def migrate(pool: asyncpg.Pool, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply every migration the database lacks (of this build's, unless given), in
    order, all in one transaction; returns the versions applied."""
    if migrations is None:
        migrations = load_migrations()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_CREATE_TABLE)
        current = await schema_version(conn)
        applied: list[int] = []
        for migration in migrations[current:]:
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
    for version in applied:
        log.info("schema_migrated", version=version, name=migrations[version - 1].name)
    return applied


async def check_schema(pool: asyncpg.Pool, migrations: Sequence[Migration] | None = None) -> int:
    """The database's schema version; :class:`SchemaError` when it is older than the
    highest of ``migrations`` (this build's, unless given). The error names the command
    to run.
    """
    needed = len(migrations if migrations is not None else load_migrations())
    async with pool.acquire() as conn:
        version = await schema_version(conn)
    if version < needed:
        raise SchemaError(
            f"database schema is at version {version}, this build needs {needed}: "
            f"run `{MIGRATE_COMMAND}`"
        )
    return version
