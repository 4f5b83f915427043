"""Every read of the PostgreSQL delivery log uses an index, not a scan of the big tables.

The store's own queries are captured as it runs them (asyncpg's query logger) and
EXPLAINed with the same arguments, on enough rows over three days (and ANALYZE) that a
sequential scan would be the planner's choice if no index served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any

import asyncpg
import orjson
import pytest

from producer.deliveries import AttemptOutcome
from producer.store.logstore import AttemptQuery, OutcomeRecord
from producer.store.partitions import DAY_MS, ensure_partitions
from producer.store.postgres import PostgresLogStore

from harness.logbatches import NOON_MS, event, outcome

BIG_TABLES = ("events", "event_ids", "deliveries", "attempts")
ENDPOINTS = [f"ep_{n:02}" for n in range(20)]
DAYS = 3
PER_DAY = 400  # events a day, each fanned out to every endpoint: 24,000 deliveries


class Captured:
    """The queries a pool's connections ran, newest last."""

    def __init__(self) -> None:
        self.queries: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, record: Any) -> None:
        if "RESET ALL" not in record.query:  # the pool's own, as a connection goes back
            self.queries.append((record.query, tuple(record.args)))


@pytest.fixture
async def captured_store(postgres_url: str) -> AsyncIterator[tuple[PostgresLogStore, Captured]]:
    captured = Captured()

    async def init(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(captured)

    pool = await asyncpg.create_pool(postgres_url, min_size=1, max_size=2, init=init)
    try:
        days = [date(2030, 1, 15 + d) for d in range(DAYS)]
        await ensure_partitions(pool, days)
        store = PostgresLogStore(pool)
        await fill(store)
        await pool.execute("ANALYZE")
        yield store, captured
    finally:
        await pool.close()


async def fill(store: PostgresLogStore) -> None:
    """Three days of traffic: most deliveries delivered, some retried, a few dead."""
    for day in range(DAYS):
        for start in range(0, PER_DAY, 25):
            events = [
                event(f"evt_{day}_{n:04}", NOON_MS + day * DAY_MS + n * 1000, ENDPOINTS)
                for n in range(start, start + 25)
            ]
            outcomes: list[OutcomeRecord] = []
            for n, source in enumerate(events):
                for k, endpoint in enumerate(ENDPOINTS):
                    if (n + k) % 10 == 0:
                        outcomes.append(outcome(source, endpoint, 1, AttemptOutcome.RETRY))
                        outcomes.append(outcome(source, endpoint, 2, AttemptOutcome.DEAD))
                    else:
                        outcomes.append(outcome(source, endpoint, 1, AttemptOutcome.DELIVERED))
            await store.write(events, outcomes)


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first."""
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += plan_nodes(child)
    return nodes


async def explain_last(store: PostgresLogStore, captured: Captured) -> list[dict[str, Any]]:
    """The plan nodes of the last query the store ran."""
    query, args = captured.queries[-1]
    raw = await store.pool.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args)
    return plan_nodes(orjson.loads(raw)[0]["Plan"])


def relation_table(name: str) -> str:
    """``deliveries_p20300115`` -> ``deliveries``."""
    return name.rsplit("_p", 1)[0] if "_p2" in name else name


Read = Callable[[PostgresLogStore], Awaitable[object]]
LATE = NOON_MS + 2 * DAY_MS
READS: dict[str, tuple[Read, str]] = {
    # name: (the read, a fragment of the index it must use)
    "get delivery": (lambda s: s.get_delivery("evt_1_0100-ep_03"), "deliveries_p"),
    "load deliveries": (
        lambda s: s.load_deliveries(["evt_0_0001-ep_01", "evt_2_0300-ep_19"]),
        "pkey",
    ),
    "endpoint's deliveries": (lambda s: s.endpoint_deliveries("ep_05", 50), "endpoint_id"),
    "endpoint's deliveries, next page": (
        lambda s: s.endpoint_deliveries("ep_05", 50, (LATE, "evt_2_0200-ep_05")),
        "endpoint_id",
    ),
    "endpoint's log": (lambda s: s.endpoint_attempts("ep_07", AttemptQuery(), 50), "endpoint"),
    "endpoint's log by outcome": (
        lambda s: s.endpoint_attempts("ep_07", AttemptQuery(outcome=AttemptOutcome.DEAD), 50),
        "outcome",
    ),
    "endpoint's log in a window, next page": (
        lambda s: s.endpoint_attempts(
            "ep_07",
            AttemptQuery(since_ms=NOON_MS + DAY_MS, until_ms=LATE),
            50,
            (LATE, "evt_2_0000-ep_07", 0),
        ),
        "endpoint",
    ),
    "event's deliveries": (lambda s: s.event_deliveries("evt_1_0042"), "event_id"),
    "event": (lambda s: s.get_event("evt_1_0042"), "pkey"),
    "known events": (lambda s: s.known_events(["evt_1_0042", "evt_9"]), "event_ids_pkey"),
    "event types": (lambda s: s.event_types(["evt_1_0042", "evt_2_0001"]), "pkey"),
    "dead since (replay)": (lambda s: s.dead_delivery_ids("ep_04", NOON_MS + DAY_MS), "dead"),
    "recent summary": (lambda s: s.recent_summaries(ENDPOINTS[:5], 100), "endpoint_id"),
    "chart, per hour (last day)": (
        lambda s: s.outcome_counts("ep_06", LATE - DAY_MS, 3600 * 1000),
        "endpoint_id_at_ms_outcome",
    ),
    "chart, per day (retention)": (
        lambda s: s.outcome_counts("ep_06", NOON_MS - DAY_MS, DAY_MS),
        "endpoint_id_at_ms_outcome",
    ),
    "status counts of an endpoint": (lambda s: s.state_counts("ep_04"), ""),
    "status counts": (lambda s: s.state_counts(), ""),
}


async def test_every_read_uses_an_index(
    captured_store: tuple[PostgresLogStore, Captured],
) -> None:
    store, captured = captured_store
    assert await store.pool.fetchval("SELECT count(*) FROM deliveries") == DAYS * PER_DAY * 20
    for name, (read, index_fragment) in READS.items():
        await read(store)
        nodes = await explain_last(store, captured)
        scanned = [
            n["Relation Name"]
            for n in nodes
            if n["Node Type"] == "Seq Scan" and relation_table(n["Relation Name"]) in BIG_TABLES
        ]
        assert scanned == [], f"{name}: sequential scan of {scanned}"
        indexes = [n["Index Name"] for n in nodes if "Index Name" in n]
        if index_fragment:
            assert any(index_fragment in i for i in indexes), f"{name}: indexes {indexes}"
