"""Opening the delivery log's database at start, and migrating it (``cliq-webhooks migrate``).

One place decides what a process does when ``DATABASE_URL`` is set: the API and the
workers open the store and refuse a schema older than theirs (:class:`SchemaTooOld`, a
:class:`producer.settings.SettingsError`: exit status 2, naming the command to run); a
database that cannot be reached is :class:`DatabaseUnreachable` (exit status 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from producer.settings import SettingsError, without_password
from producer.store.migrate import SchemaError, load_migrations, migrate, schema_version
from producer.store.postgres import PostgresLogStore

# Seconds one connection attempt may take at start, so a wrong host fails fast.
CONNECT_TIMEOUT_S = 10.0
# What connecting (or talking to) a database that is down, unknown or refusing us raises.
_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError)


class SchemaTooOld(SettingsError):
    """The database's schema is older than this build's: the message names the command."""


class DatabaseUnreachable(RuntimeError):
    """``DATABASE_URL`` cannot be connected to (the message shows it without password)."""


@dataclass(frozen=True)
class MigrationResult:
    """What ``cliq-webhooks migrate`` did: the schema version now, and the ones applied."""

    version: int
    applied: tuple[int, ...]


def _unreachable(url: str, exc: BaseException) -> DatabaseUnreachable:
    return DatabaseUnreachable(
        f"cannot reach the database at {without_password(url)}: {exc or type(exc).__name__}"
    )


async def _pool(url: str, max_size: int) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(
            url, min_size=1, max_size=max_size, timeout=CONNECT_TIMEOUT_S
        )
    except _CONNECT_ERRORS as exc:
        raise _unreachable(url, exc) from None


async def open_log_store(url: str, max_size: int = 4) -> PostgresLogStore:
    """The PostgreSQL store of ``url``, its schema checked against this build's."""
    try:
        return await PostgresLogStore.open(url, max_size=max_size)
    except SchemaError as exc:
        raise SchemaTooOld(f"DATABASE_URL: {exc}") from None
    except _CONNECT_ERRORS as exc:
        raise _unreachable(url, exc) from None


async def migrate_database(url: str) -> MigrationResult:
    """Apply this build's missing migrations to ``url``'s database."""
    if not url:
        raise SettingsError("DATABASE_URL is not set: there is no database to migrate")
    pool = await _pool(url, max_size=1)
    try:
        applied = await migrate(pool, load_migrations())
        async with pool.acquire() as conn:
            version = await schema_version(conn)
    except _CONNECT_ERRORS as exc:
        raise _unreachable(url, exc) from None
    finally:
        await pool.close()
    return MigrationResult(version, tuple(applied))
