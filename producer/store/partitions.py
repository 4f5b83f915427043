"""Daily partitions of the delivery log: which exist, which to create, which to drop.

Every partitioned table (:data:`PARTITIONED_TABLES`) has one partition per UTC day,
``<table>_pYYYYMMDD``, holding the rows whose partition key (a creation time in ms) falls
in ``[lower_ms, upper_ms)`` of that day. Workers create today's and the next few days'
partitions ahead (:func:`ensure_partitions`, idempotent), and retention drops a day once
it is wholly older than ``DELIVERY_RETENTION`` (:func:`drop_expired`): the four tables'
partitions of that day go together, so no attempt outlives its delivery for long and no
count outlives what it counts. Needs PostgreSQL 14 or later (``DETACH CONCURRENTLY``).

The computations are pure functions of a date or a time, tested without a clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import asyncpg
import structlog

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # A connection of its own or one of a pool.
    Connection = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

log = structlog.get_logger("cliq.producer.store")

DAY_MS = 86_400_000
# The tables partitioned by day, each on the creation time of the delivery (or event)
# its rows belong to.
PARTITIONED_TABLES = ("events", "deliveries", "attempts", "delivery_counts")
# Days created ahead of today, so that midnight never finds a missing partition.
DAYS_AHEAD = 3
# Serialises partition DDL between processes (two workers creating the same partition
# at once would collide in the catalogue; two retention runs would detach one twice).
# Any constant unique to this project.
PARTITION_LOCK = 0x636C6971_0002
# Event ids are deleted in chunks of this many rows, each its own short transaction.
EVENT_ID_CHUNK = 10_000

_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")


@dataclass(frozen=True, order=True)
class Partition:
    """One day's partition of one table."""

    table: str
    day: date

    @property
    def name(self) -> str:
        """``<table>_pYYYYMMDD``."""
        return f"{self.table}_p{self.day:%Y%m%d}"

    @property
    def lower_ms(self) -> int:
        """The first millisecond of the day (UTC), included."""
        return day_start_ms(self.day)

    @property
    def upper_ms(self) -> int:
        """The first millisecond of the next day, excluded."""
        return self.lower_ms + DAY_MS

    def create_sql(self) -> tuple[str, str]:
        """The DDL that creates this partition: a table like its parent, then attached.

        ``CREATE TABLE ... PARTITION OF`` would lock the parent against every reader and
        writer while it waits for its turn; ``ATTACH PARTITION`` takes a lock that they
        do not conflict with (and builds the indexes on the empty table at once).
        """
        return (
            f"CREATE TABLE IF NOT EXISTS {self.name}"
            f" (LIKE {self.table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
            f"ALTER TABLE {self.table} ATTACH PARTITION {self.name}"
            f" FOR VALUES FROM ({self.lower_ms}) TO ({self.upper_ms})",
        )


def day_start_ms(day: date) -> int:
    """Midnight UTC of ``day`` in ms since the epoch."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def day_of(ms: int) -> date:
    """The UTC day that the time ``ms`` falls in."""
    return datetime.fromtimestamp(ms // DAY_MS * DAY_MS / 1000, UTC).date()


def parse_name(name: str) -> Partition | None:
    """The partition a table name stands for, ``None`` if it is not one of ours."""
    match = _NAME.match(name)
    if match is None or match["table"] not in PARTITIONED_TABLES:
        return None
    try:
        day = datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError:
        return None
    return Partition(match["table"], day)


def days_to_create(today: date, ahead: int = DAYS_AHEAD) -> list[date]:
    """Today and the ``ahead`` days after it."""
    return [today + timedelta(days=n) for n in range(ahead + 1)]


def partitions_of(days: Iterable[date]) -> list[Partition]:
    """Every table's partition of each of ``days``, sorted by day then table."""
    return sorted(Partition(table, day) for day in set(days) for table in PARTITIONED_TABLES)


def retention_cutoff_ms(now_ms: int, retention_s: int) -> int:
    """Rows created before this time are past retention."""
    return now_ms - retention_s * 1000


def expired(existing: Iterable[Partition], now_ms: int, retention_s: int) -> list[Partition]:
    """The partitions wholly older than the retention: their day ended before the cutoff.

    A day that straddles the cutoff is kept whole, so rows live at least the retention
    and at most a day longer.
    """
    cutoff = retention_cutoff_ms(now_ms, retention_s)
    return sorted(p for p in existing if p.upper_ms <= cutoff)


# ---------------------------------------------------------------- in the database


async def existing_partitions(conn: Connection) -> list[Partition]:
    """The partitions attached to the partitioned tables now."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits AS i"
        " JOIN pg_class AS c ON c.oid = i.inhrelid"
        " JOIN pg_class AS p ON p.oid = i.inhparent"
        " WHERE p.relname = ANY($1::text[])",
        list(PARTITIONED_TABLES),
    )
    found = (parse_name(row["relname"]) for row in rows)
    return sorted(p for p in found if p is not None)


async def ensure_partitions(pool: asyncpg.Pool, days: Iterable[date]) -> list[Partition]:
    """Create the missing partitions of ``days`` (not those of days already dropped).

    Idempotent and safe from several processes at once. Returns the partitions created.
    """
    wanted = partitions_of(days)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        horizon: int = await conn.fetchval("SELECT ms FROM log_horizon")
        present = set(await existing_partitions(conn))
        created = [p for p in wanted if p not in present and p.lower_ms >= horizon]
        for partition in created:
            for statement in partition.create_sql():
                await conn.execute(statement)
    if created:
        log.info("log_partitions_created", partitions=[p.name for p in created])
    return created


async def ensure_ahead(pool: asyncpg.Pool, today: date, ahead: int = DAYS_AHEAD) -> list[Partition]:
    """Create today's partitions and those of the next ``ahead`` days."""
    return await ensure_partitions(pool, days_to_create(today, ahead))


async def partition_tables(conn: Connection) -> dict[Partition, str]:
    """Every table named as one of our partitions, and where it stands: ``attached``,
    ``pending`` (its detach was interrupted) or ``detached`` (not dropped yet)."""
    rows = await conn.fetch(
        "SELECT c.relname, i.inhdetachpending FROM pg_class AS c"
        " LEFT JOIN pg_inherits AS i ON i.inhrelid = c.oid"
        " WHERE c.relkind = 'r' AND c.relnamespace = current_schema()::regnamespace"
        " AND c.relname ~ '_p[0-9]{8}$'"
    )
    tables: dict[Partition, str] = {}
    for row in rows:
        partition = parse_name(row["relname"])
        if partition is not None:
            pending = row["inhdetachpending"]
            tables[partition] = (
                "detached" if pending is None else "pending" if pending else "attached"
            )
    return tables


async def drop_expired(pool: asyncpg.Pool, now_ms: int, retention_s: int) -> list[Partition]:
    """Drop every partition wholly older than the retention, then forget their event ids.

    First ``log_horizon`` moves past them, so that writes skip their rows from then on;
    then each is detached ``CONCURRENTLY`` (it waits for the queries that may still read
    it and blocks none, where a plain drop locks the whole table) and dropped. A run
    interrupted half way is finished by the next. Returns the partitions dropped.
    """
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", PARTITION_LOCK)
        try:
            tables = await partition_tables(conn)
            doomed = expired(tables, now_ms, retention_s)
            if doomed:
                await conn.execute(
                    "UPDATE log_horizon SET ms = greatest(ms, $1)", max(p.upper_ms for p in doomed)
                )
            # An interrupted detach first: a table takes one pending detach at a time.
            for partition in sorted(doomed, key=lambda p: tables[p] != "pending"):
                await _drop(conn, partition, tables[partition])
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", PARTITION_LOCK)
        horizon: int = await conn.fetchval("SELECT ms FROM log_horizon")
        forgotten = await _forget_event_ids(conn, horizon)
    if doomed:
        log.info(
            "log_partitions_dropped",
            partitions=[p.name for p in doomed],
            horizon_ms=horizon,
            event_ids_forgotten=forgotten,
        )
    return doomed


async def _drop(conn: Connection, partition: Partition, state: str) -> None:
    """Detach (or finish detaching) one partition, then drop it."""
    if state == "attached":
        await conn.execute(
            f"ALTER TABLE {partition.table} DETACH PARTITION {partition.name} CONCURRENTLY"
        )
    elif state == "pending":
        await conn.execute(
            f"ALTER TABLE {partition.table} DETACH PARTITION {partition.name} FINALIZE"
        )
    await conn.execute(f"DROP TABLE {partition.name}")


async def _forget_event_ids(conn: Connection, horizon_ms: int) -> int:
    """Delete the ids of events published before ``horizon_ms``, a chunk at a time."""
    total = 0
    while True:
        status = await conn.execute(
            "DELETE FROM event_ids WHERE id IN ("
            " SELECT id FROM event_ids WHERE published_ms < $1 LIMIT $2)",
            horizon_ms,
            EVENT_ID_CHUNK,
        )
        deleted = int(status.rpartition(" ")[2])
        total += deleted
        if deleted < EVENT_ID_CHUNK:
            return total


def days_of(times_ms: Sequence[int]) -> set[date]:
    """The UTC days these times fall in."""
    return {day_of(ms) for ms in set(times_ms)}
