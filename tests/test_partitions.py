"""Daily partitions of the delivery log: names and bounds (pure), creation and retention
(on the session's private PostgreSQL, with injected dates: no clock)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from producer.deliveries import Attempt, AttemptOutcome
from producer.store.logstore import EventRecord, OutcomeRecord
from producer.store.partitions import (
    DAY_MS,
    PARTITIONED_TABLES,
    Partition,
    day_of,
    day_start_ms,
    days_to_create,
    drop_expired,
    ensure_ahead,
    ensure_partitions,
    existing_partitions,
    expired,
    parse_name,
    partition_tables,
    partitions_of,
)
from producer.store.postgres import PostgresLogStore

JAN_15 = date(2030, 1, 15)
JAN_15_MS = 1_894_665_600_000  # 2030-01-15T00:00:00Z
WEEK_S = 7 * 24 * 3600


# ---------------------------------------------------------------- pure


def test_a_partition_covers_one_utc_day() -> None:
    partition = Partition("deliveries", JAN_15)
    assert partition.name == "deliveries_p20300115"
    assert (partition.lower_ms, partition.upper_ms) == (JAN_15_MS, JAN_15_MS + DAY_MS)
    assert partition.create_sql() == (
        "CREATE TABLE IF NOT EXISTS deliveries_p20300115"
        " (LIKE deliveries INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
        "ALTER TABLE deliveries ATTACH PARTITION deliveries_p20300115"
        f" FOR VALUES FROM ({JAN_15_MS}) TO ({JAN_15_MS + DAY_MS})",
    )
    assert day_start_ms(JAN_15) == JAN_15_MS
    assert day_of(JAN_15_MS) == JAN_15
    assert day_of(JAN_15_MS + DAY_MS - 1) == JAN_15
    assert day_of(JAN_15_MS + DAY_MS) == date(2030, 1, 16)


def test_names_parse_back_and_strangers_are_ignored() -> None:
    for table in PARTITIONED_TABLES:
        assert parse_name(Partition(table, JAN_15).name) == Partition(table, JAN_15)
    assert parse_name("deliveries_p20300230") is None  # no such day
    assert parse_name("deliveries") is None
    assert parse_name("endpoints_p20300115") is None  # not a partitioned table of ours
    assert parse_name("attempts_p2030011") is None


def test_days_ahead_cross_month_and_year_ends() -> None:
    assert days_to_create(date(2030, 12, 30), 3) == [
        date(2030, 12, 30),
        date(2030, 12, 31),
        date(2031, 1, 1),
        date(2031, 1, 2),
    ]
    assert days_to_create(date(2028, 2, 28), 1) == [date(2028, 2, 28), date(2028, 2, 29)]
    assert len(partitions_of([JAN_15, JAN_15])) == len(PARTITIONED_TABLES)


def test_only_days_wholly_older_than_the_retention_expire() -> None:
    days = [date(2030, 1, d) for d in range(5, 16)]
    existing = partitions_of(days)
    # Noon on the 15th, 7 days' retention: the cutoff is noon on the 8th; the 8th
    # straddles it and is kept whole.
    now_ms = JAN_15_MS + DAY_MS // 2
    doomed = expired(existing, now_ms, WEEK_S)
    assert sorted({p.day for p in doomed}) == [date(2030, 1, 5), date(2030, 1, 6), date(2030, 1, 7)]
    assert len(doomed) == 3 * len(PARTITIONED_TABLES)
    # At midnight the 8th ends exactly at the cutoff: it goes too.
    assert {p.day for p in expired(existing, JAN_15_MS + DAY_MS, WEEK_S)} == {
        date(2030, 1, d) for d in range(5, 9)
    }
    assert expired(existing, JAN_15_MS, 30 * 24 * 3600) == []


# ---------------------------------------------------------------- in the database


@pytest.fixture
async def pool(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


def outcome_on(day: date, n: int) -> tuple[EventRecord, OutcomeRecord]:
    """An event published at noon of ``day`` and its delivery's first attempt."""
    at = day_start_ms(day) + DAY_MS // 2
    event = EventRecord(
        f"evt_{day:%d}_{n}",
        "issue.created",
        "ws_1",
        at,
        b"{}",
        at,
        ((f"dlv_{day:%d}_{n}", "ep_1"),),
    )
    attempt = Attempt(1, at + 5, 200, None, 3.0, "ok", AttemptOutcome.DELIVERED)
    return event, OutcomeRecord(f"dlv_{day:%d}_{n}", at, event.id, "ep_1", attempt)


async def test_creating_ahead_is_idempotent(pool: asyncpg.Pool) -> None:
    created = await ensure_ahead(pool, JAN_15, ahead=2)
    assert {p.day for p in created} == {date(2030, 1, d) for d in (15, 16, 17)}
    assert await ensure_ahead(pool, JAN_15, ahead=2) == []
    async with pool.acquire() as conn:
        assert await existing_partitions(conn) == sorted(created)


async def test_retention_drops_old_days_and_keeps_the_rest(pool: asyncpg.Pool) -> None:
    days = [date(2030, 1, d) for d in range(5, 16)]
    await ensure_partitions(pool, days)
    store = PostgresLogStore(pool)
    for day in days:
        written = [outcome_on(day, n) for n in range(3)]
        await store.write([e for e, _ in written], [o for _, o in written])

    dropped = await drop_expired(pool, JAN_15_MS + DAY_MS // 2, WEEK_S)

    assert {p.day for p in dropped} == {date(2030, 1, d) for d in (5, 6, 7)}
    async with pool.acquire() as conn:
        remaining = await existing_partitions(conn)
    assert {p.day for p in remaining} == {date(2030, 1, d) for d in range(8, 16)}
    # The kept days' data survives whole; the dropped days' is gone, event ids too.
    for day in days:
        kept = day >= date(2030, 1, 8)
        delivery = (await store.load_deliveries([f"dlv_{day:%d}_0"]))[0]
        assert (delivery is not None) == kept
        if delivery is not None:
            assert [a.outcome for a in delivery.attempts] == [AttemptOutcome.DELIVERED]
        assert (await store.known_events([f"evt_{day:%d}_1"]) != set()) == kept
    counts = await store.state_counts()
    assert sum(counts.values()) == 3 * 8
    assert await pool.fetchval("SELECT ms FROM log_horizon") == day_start_ms(date(2030, 1, 8))
    # A second run drops nothing.
    assert await drop_expired(pool, JAN_15_MS + DAY_MS // 2, WEEK_S) == []


async def test_a_write_for_a_dropped_day_is_skipped_as_expired(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, [date(2030, 1, 5), JAN_15])
    await drop_expired(pool, JAN_15_MS, WEEK_S)
    store = PostgresLogStore(pool)
    old_event, old_outcome = outcome_on(date(2030, 1, 5), 0)
    new_event, new_outcome = outcome_on(JAN_15, 0)

    result = await store.write([old_event, new_event], [old_outcome, new_outcome])

    # The old event, its delivery and its attempt: three rows skipped, nothing failed.
    assert (result.events_new, result.attempts_new, result.expired) == (1, 1, 3)
    assert await store.load_deliveries([old_outcome.delivery_id]) == [None]
    # Nor does it bring back a partition of a dropped day.
    assert await ensure_partitions(pool, [date(2030, 1, 5)]) == []


async def test_a_write_for_a_day_without_partitions_creates_them(pool: asyncpg.Pool) -> None:
    await ensure_partitions(pool, [JAN_15])
    store = PostgresLogStore(pool)
    event, outcome = outcome_on(date(2030, 1, 20), 0)

    result = await store.write([event], [outcome])

    assert (result.events_new, result.deliveries_new, result.attempts_new) == (1, 1, 1)
    async with pool.acquire() as conn:
        days = {p.day for p in await existing_partitions(conn)}
    assert days == {JAN_15, date(2030, 1, 20)}


async def test_retention_finishes_what_an_interrupted_run_left(
    pool: asyncpg.Pool, postgres_url: str
) -> None:
    old, older = date(2030, 1, 5), date(2030, 1, 4)
    await ensure_partitions(pool, [older, old, JAN_15])
    # One detached but not dropped (a crash between the two)...
    await pool.execute(f"ALTER TABLE attempts DETACH PARTITION {Partition('attempts', older).name}")
    # ...one whose concurrent detach was cancelled while it waited for a reader.
    reader = await asyncpg.connect(postgres_url)
    try:
        async with reader.transaction(isolation="repeatable_read"):
            await reader.fetch("SELECT count(*) FROM deliveries")
            async with pool.acquire() as conn:
                await conn.execute("SET statement_timeout = '300ms'")
                with pytest.raises(asyncpg.QueryCanceledError):
                    await conn.execute(
                        "ALTER TABLE deliveries DETACH PARTITION deliveries_p20300105 CONCURRENTLY"
                    )
                await conn.execute("RESET statement_timeout")
    finally:
        await reader.close()
    async with pool.acquire() as conn:
        states = await partition_tables(conn)
    assert states[Partition("attempts", older)] == "detached"
    assert states[Partition("deliveries", old)] == "pending"

    dropped = await drop_expired(pool, JAN_15_MS, WEEK_S)

    assert {p.day for p in dropped} == {older, old}
    async with pool.acquire() as conn:
        left = await partition_tables(conn)
    assert set(left) == set(partitions_of([JAN_15]))
    assert set(left.values()) == {"attached"}


async def test_creating_a_partition_waits_for_no_reader(
    pool: asyncpg.Pool, postgres_url: str
) -> None:
    await ensure_partitions(pool, [JAN_15])
    # Creating would time out if it took a lock that conflicts with the reader's.
    impatient = await asyncpg.create_pool(
        postgres_url, min_size=1, max_size=1, server_settings={"lock_timeout": "1s"}
    )
    reader = await asyncpg.connect(postgres_url)
    try:
        async with reader.transaction():
            await reader.fetch("SELECT count(*) FROM deliveries")
            created = await ensure_partitions(impatient, [date(2030, 1, 16)])
    finally:
        await reader.close()
        await impatient.close()
    assert {p.day for p in created} == {date(2030, 1, 16)}
    async with pool.acquire() as conn:
        assert set((await partition_tables(conn)).values()) == {"attached"}
