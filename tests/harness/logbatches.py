"""Builders of delivery-log batches (events, outcomes) for the PostgreSQL store's tests,
and checks of what the store holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date

import asyncpg

from producer.deliveries import Attempt, AttemptOutcome, DeliveryState
from producer.store.logstore import EventRecord, OutcomeRecord
from producer.store.partitions import day_start_ms, ensure_partitions
from producer.store.postgres import PostgresLogStore

DAY = date(2030, 1, 15)
NOON_MS = day_start_ms(DAY) + 12 * 3600 * 1000


@asynccontextmanager
async def open_store(url: str, days: Sequence[date] = (DAY,)) -> AsyncIterator[PostgresLogStore]:
    """A store on ``url`` (migrated) with the partitions of ``days``."""
    store = await PostgresLogStore.open(url, max_size=4)
    try:
        await ensure_partitions(store.pool, days)
        yield store
    finally:
        await store.close()


def event(
    event_id: str,
    published_ms: int,
    endpoints: Sequence[str],
    *,
    body: bytes = b'{"x":1}',
    event_type: str = "issue.created",
) -> EventRecord:
    """An event fanned out to ``endpoints``; delivery ids are ``<event id>-<endpoint>``."""
    return EventRecord(
        id=event_id,
        type=event_type,
        workspace_id="ws_1",
        created_ms=published_ms - 7,
        body=body,
        published_ms=published_ms,
        deliveries=tuple((f"{event_id}-{endpoint}", endpoint) for endpoint in endpoints),
    )


def outcome(
    source: EventRecord,
    endpoint: str,
    number: int,
    kind: AttemptOutcome,
    *,
    at_ms: int | None = None,
    status: int | None = None,
    error: str | None = None,
    response: str = "",
) -> OutcomeRecord:
    """Attempt ``number`` of ``source``'s delivery to ``endpoint``."""
    at = at_ms if at_ms is not None else source.published_ms + number * 1000
    if status is None and error is None:
        status = 200 if kind == AttemptOutcome.DELIVERED else 503
    attempt = Attempt(
        number=number,
        at_ms=at,
        status=status,
        error=error,
        latency_ms=12.5 + number,
        response=response,
        outcome=kind,
        next_attempt_ms=at + 30_000 if kind == AttemptOutcome.RETRY else None,
    )
    return OutcomeRecord(
        f"{source.id}-{endpoint}", source.published_ms, source.id, endpoint, attempt
    )


async def count_rows(pool: asyncpg.Pool, table: str) -> int:
    """Rows of one of the log's tables, all partitions."""
    value: int = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return value


async def logged(store: PostgresLogStore, delivered: int, dead: int) -> bool:
    """Whether the store holds exactly ``delivered`` delivered and ``dead`` dead deliveries."""
    counts = await store.state_counts()
    return (
        counts.get(DeliveryState.DELIVERED, 0) == delivered
        and counts.get(DeliveryState.DEAD, 0) == dead
    )


async def assert_each_attempt_once(store: PostgresLogStore, total: int) -> None:
    """The store holds ``total`` attempt rows, none of them twice."""
    duplicates = await store.pool.fetch(
        "SELECT delivery_id, number FROM attempts GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert duplicates == []
    assert await store.pool.fetchval("SELECT count(*) FROM attempts") == total
