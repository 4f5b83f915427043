"""The PostgreSQL delivery log: batches written, read back by every read, idempotently.

Each test has a fresh migrated database of the session's private server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.logwriter import measure
from producer.deliveries import AttemptOutcome, DeliveryNotFound, DeliveryState, RecentSummary
from producer.store.logstore import (
    AttemptPosition,
    AttemptQuery,
    DeliveryPosition,
    LoggedAttempt,
    LogStore,
    OutcomeRecord,
    WriteResult,
)
from producer.store.migrate import SchemaError
from producer.store.partitions import DAY_MS, day_of
from producer.store.postgres import PostgresLogStore

from harness.logbatches import NOON_MS, count_rows, event, open_store, outcome

DELIVERED, RETRY, DEAD = AttemptOutcome.DELIVERED, AttemptOutcome.RETRY, AttemptOutcome.DEAD


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresLogStore]:
    async with open_store(postgres_url, [day_of(NOON_MS), day_of(NOON_MS + DAY_MS)]) as store:
        yield store


async def table_sizes(store: PostgresLogStore) -> dict[str, int]:
    tables = ("event_ids", "events", "deliveries", "attempts")
    return {t: await count_rows(store.pool, t) for t in tables}


async def test_a_batch_reads_back_through_every_read(store: PostgresLogStore) -> None:
    first = event("evt_1", NOON_MS, ["ep_a", "ep_b"], body=b'{"first":true}')
    second = event("evt_2", NOON_MS + 60_000, ["ep_a"], event_type="comment.created")
    retried = outcome(first, "ep_a", 1, RETRY, status=503, response="busy")
    delivered = outcome(first, "ep_a", 2, DELIVERED, response="ok")
    died = outcome(first, "ep_b", 1, DEAD, error="connection refused")

    result = await store.write([first, second], [retried, delivered, died])

    assert result == WriteResult(
        events_new=2, deliveries_new=3, attempts_new=3, deliveries_moved=0, expired=0
    )
    done = await store.get_delivery("evt_1-ep_a")
    assert (done.event_id, done.endpoint_id, done.state) == ("evt_1", "ep_a", "delivered")
    assert (done.attempts_made, done.created_ms) == (2, NOON_MS)
    assert done.attempts == (retried.attempt, delivered.attempt)
    with pytest.raises(DeliveryNotFound):
        await store.get_delivery("dlv_nothing")
    loaded = await store.load_deliveries(["evt_2-ep_a", "dlv_nothing", "evt_1-ep_b"])
    assert [d.state if d else None for d in loaded] == ["queued", None, "dead"]

    page = await store.endpoint_deliveries("ep_a", 10)
    assert [d.id for d in page.items] == ["evt_2-ep_a", "evt_1-ep_a"]
    assert page.next is None
    assert [d.id for d in await store.event_deliveries("evt_1")] == ["evt_1-ep_a", "evt_1-ep_b"]

    stored = await store.get_event("evt_1")
    assert stored is not None
    assert (stored.type, stored.workspace_id, stored.body) == (
        "issue.created",
        "ws_1",
        b'{"first":true}',
    )
    assert (stored.created_ms, stored.published_ms) == (NOON_MS - 7, NOON_MS)
    assert await store.get_event("evt_nothing") is None
    assert await store.known_events(["evt_1", "evt_2", "evt_3"]) == {"evt_1", "evt_2"}
    assert await store.event_types(["evt_2", "evt_1", "evt_3"]) == {
        "evt_1": "issue.created",
        "evt_2": "comment.created",
    }

    assert await store.dead_delivery_ids("ep_b") == ["evt_1-ep_b"]
    assert await store.dead_delivery_ids("ep_b", died.attempt.at_ms) == ["evt_1-ep_b"]
    assert await store.dead_delivery_ids("ep_b", died.attempt.at_ms + 1) == []
    assert await store.dead_delivery_ids("ep_a") == []

    assert await store.state_counts() == {
        "queued": 1,
        "scheduled": 0,
        "paused": 0,
        "delivered": 1,
        "dead": 1,
    }
    assert await store.state_counts("ep_a") == {
        "queued": 1,
        "scheduled": 0,
        "paused": 0,
        "delivered": 1,
        "dead": 0,
    }

    log = await store.endpoint_attempts("ep_a", AttemptQuery(), 10)
    assert [(e.delivery_id, e.attempt.number) for e in log.items] == [
        ("evt_1-ep_a", 2),
        ("evt_1-ep_a", 1),
    ]
    assert log.items[0].event_id == "evt_1"
    assert log.items[0].endpoint_id == "ep_a"
    assert log.next is None


async def test_the_recent_summary_matches_the_apis(store: PostgresLogStore) -> None:
    events = [event(f"evt_{n}", NOON_MS + n * 1000, ["ep_a", "ep_b"]) for n in range(8)]
    outcomes = []
    for n, source in enumerate(events):
        kinds = [DELIVERED] if n % 3 == 0 else [RETRY, DEAD] if n % 3 == 1 else [RETRY]
        outcomes += [outcome(source, "ep_a", k + 1, kind) for k, kind in enumerate(kinds)]
    outcomes.append(outcome(events[2], "ep_b", 1, DEAD, error="TLS handshake failed"))
    await store.write(events, outcomes)

    for window in (3, 100):
        summaries = await store.recent_summaries(["ep_a", "ep_b", "ep_none"], window)
        for endpoint_id in ("ep_a", "ep_b", "ep_none"):
            recent = (await store.endpoint_deliveries(endpoint_id, window)).items
            expected = RecentSummary.of(recent).to_dict()
            got = summaries[endpoint_id]
            assert (got.deliveries, got.delivered, got.dead, got.pending) == (
                expected["deliveries"],
                expected["delivered"],
                expected["dead"],
                expected["pending"],
            )
            assert got.last_attempt_ms == max(
                (a.at_ms for d in recent for a in d.attempts), default=None
            )
            assert got.last_delivered_ms == max(
                (a.at_ms for d in recent for a in d.attempts if a.outcome == DELIVERED),
                default=None,
            )
            error = expected["last_error"]
            if error is None:
                assert got.last_error is None
            else:
                assert got.last_error is not None
                assert (got.last_error.delivery_id, got.last_error.attempt.number) == (
                    error["delivery_id"],
                    error["number"],
                )
    assert (await store.recent_summaries(["ep_b"], 100))["ep_b"].last_error is not None


async def test_writing_a_batch_twice_leaves_each_row_once(store: PostgresLogStore) -> None:
    source = event("evt_1", NOON_MS, ["ep_a", "ep_b", "ep_c"])
    batch = [outcome(source, "ep_a", 1, RETRY), outcome(source, "ep_b", 1, DEAD)]
    await store.write([source], batch)
    sizes, counts = await table_sizes(store), await store.state_counts()

    # As a worker would after a timeout whose commit happened: the same batch again.
    again = await store.write([source], batch)

    assert again == WriteResult(0, 0, 0, 0, 0)
    assert (
        await table_sizes(store)
        == sizes
        == {
            "event_ids": 1,
            "events": 1,
            "deliveries": 3,
            "attempts": 2,
        }
    )
    assert await store.state_counts() == counts
    # And twice at once (a retry racing the first try): each row still once.
    later = event("evt_2", NOON_MS + 1, ["ep_a"])
    second = [outcome(later, "ep_a", 1, DELIVERED)]
    results = await asyncio.gather(*(store.write([later], second) for _ in range(3)))
    assert sorted(r.attempts_new for r in results) == [0, 0, 1]
    assert (await table_sizes(store))["attempts"] == 3
    assert (await store.state_counts())[DeliveryState.DELIVERED] == 1


async def test_duplicates_within_a_batch_count_once(store: PostgresLogStore) -> None:
    source = event("evt_1", NOON_MS, ["ep_a"])
    first = outcome(source, "ep_a", 1, RETRY)
    result = await store.write([source, source], [first, first])
    assert (result.events_new, result.deliveries_new, result.attempts_new) == (1, 1, 1)
    assert await store.state_counts() == {
        "queued": 0,
        "scheduled": 1,
        "paused": 0,
        "delivered": 0,
        "dead": 0,
    }


async def test_batches_in_any_order_end_in_the_latest_attempts_state(
    store: PostgresLogStore,
) -> None:
    source = event("evt_1", NOON_MS, ["ep_a"])
    first, second = outcome(source, "ep_a", 1, RETRY), outcome(source, "ep_a", 2, DELIVERED)

    # The outcome of attempt 2 first, before the event and before attempt 1.
    assert (await store.write([], [second])).deliveries_new == 1
    late = await store.write([source], [first])
    assert (late.events_new, late.deliveries_new, late.attempts_new) == (1, 0, 1)
    assert late.deliveries_moved == 0  # attempt 1 is older than the delivery's state

    delivery = await store.get_delivery("evt_1-ep_a")
    assert (delivery.state, delivery.attempts_made) == ("delivered", 2)
    assert [a.number for a in delivery.attempts] == [1, 2]
    assert await store.state_counts() == {
        "queued": 0,
        "scheduled": 0,
        "paused": 0,
        "delivered": 1,
        "dead": 0,
    }
    assert await store.get_event("evt_1") is not None


async def test_an_event_id_is_stored_once_across_days(store: PostgresLogStore) -> None:
    first = event("evt_1", NOON_MS, ["ep_a"], body=b"first")
    await store.write([first], [])
    # The same id published again the next day (beyond any Redis window).
    again = event("evt_1", NOON_MS + DAY_MS, ["ep_b"], body=b"second")

    result = await store.write([again], [])

    assert result.events_new == 0
    stored = await store.get_event("evt_1")
    assert stored is not None
    assert stored.body == b"first"
    assert await count_rows(store.pool, "events") == 1
    # Deliveries that really were made are recorded, whatever their event.
    assert result.deliveries_new == 1


async def test_events_load_by_id_across_days_with_their_bodies(store: PostgresLogStore) -> None:
    await store.write(
        [
            event("evt_1", NOON_MS, ["ep_a"], body=b"one"),
            event("evt_2", NOON_MS + DAY_MS, ["ep_a"], body=b"two"),
        ],
        [],
    )
    found = await store.load_events(["evt_2", "evt_1", "evt_missing", "evt_1"])
    assert sorted((e.id, e.body, e.published_ms) for e in found) == [
        ("evt_1", b"one", NOON_MS),
        ("evt_2", b"two", NOON_MS + DAY_MS),
    ]
    assert await store.load_events([]) == []


async def test_answers_postgres_cannot_store_are_cleaned_not_fatal(
    store: PostgresLogStore,
) -> None:
    source = event("evt_1", NOON_MS, ["ep_a", "ep_b"])
    nul = outcome(source, "ep_a", 1, DEAD, status=500, response="bin\x00ary")
    surrogate = outcome(source, "ep_b", 1, DEAD, error="bad \udcff byte")
    await store.write([source], [nul, surrogate])
    (a,) = (await store.get_delivery("evt_1-ep_a")).attempts
    (b,) = (await store.get_delivery("evt_1-ep_b")).attempts
    assert a.response == "bin\ufffdary"
    assert b.error == "bad ? byte"


async def test_replay_moves_dead_deliveries_back_once(store: PostgresLogStore) -> None:
    source = event("evt_1", NOON_MS, ["ep_a", "ep_b"])
    await store.write(
        [source], [outcome(source, "ep_a", 1, DEAD), outcome(source, "ep_b", 1, DELIVERED)]
    )

    replay_ms = NOON_MS + 3_600_000
    moved = await store.mark_replayed(["evt_1-ep_a", "evt_1-ep_b", "dlv_nothing"], replay_ms)

    assert moved == ["evt_1-ep_a"]
    assert await store.mark_replayed(["evt_1-ep_a"], replay_ms) == []
    assert (await store.get_delivery("evt_1-ep_a")).state == "queued"
    assert await store.dead_delivery_ids("ep_a") == []
    assert await store.state_counts() == {
        "queued": 1,
        "scheduled": 0,
        "paused": 0,
        "delivered": 1,
        "dead": 0,
    }
    # Its next attempt is numbered after its last.
    again = await store.write([], [outcome(source, "ep_a", 2, DELIVERED, at_ms=replay_ms + 10)])
    assert (again.attempts_new, again.deliveries_moved) == (1, 1)
    assert (await store.get_delivery("evt_1-ep_a")).state == "delivered"
    assert await store.state_counts("ep_a") == {
        "queued": 0,
        "scheduled": 0,
        "paused": 0,
        "delivered": 1,
        "dead": 0,
    }


async def test_concurrent_writers_keep_counts_exact(store: PostgresLogStore) -> None:
    endpoints = [f"ep_{n}" for n in range(6)]
    events = [event(f"evt_{n}", NOON_MS + n, endpoints) for n in range(40)]
    await store.write(events, [])
    kinds = (DELIVERED, RETRY, DEAD)

    async def writer(w: int) -> None:
        # Each writer walks the endpoints in its own order, so their row locks cross.
        mine = endpoints[w:] + endpoints[:w]
        for source in events[w::4]:
            batch = [outcome(source, ep, 1, kinds[(w + i) % 3]) for i, ep in enumerate(mine)]
            await store.write([], batch[::-1] if w % 2 else batch)

    await asyncio.gather(*(writer(w) for w in range(4)))

    rows = await store.pool.fetch("SELECT state, count(*) AS n FROM deliveries GROUP BY state")
    actual = dict.fromkeys(DeliveryState, 0) | {DeliveryState(r["state"]): r["n"] for r in rows}
    assert await store.state_counts() == actual
    assert sum(actual.values()) == 240
    assert actual[DeliveryState.QUEUED] == 0


async def test_keyset_pagination_is_stable(store: PostgresLogStore) -> None:
    events = [event(f"evt_{n:03}", NOON_MS + (n // 2) * 1000, ["ep_a"]) for n in range(45)]
    outcomes: list[OutcomeRecord] = []
    for n, source in enumerate(events):
        tries = n % 3 + 1
        outcomes += [outcome(source, "ep_a", k, RETRY) for k in range(1, tries)]
        outcomes.append(outcome(source, "ep_a", tries, DELIVERED if n % 2 else DEAD))
    await store.write(events, outcomes)
    everything = await store.endpoint_attempts("ep_a", AttemptQuery(), 1000)
    assert len(everything.items) == len(outcomes)
    positions = [e.position for e in everything.items]
    assert positions == sorted(positions, reverse=True)

    seen: list[LoggedAttempt] = []
    after: AttemptPosition | None = None
    pages = 0
    while True:
        page = await store.endpoint_attempts("ep_a", AttemptQuery(), 7, after)
        seen += page.items
        pages += 1
        if pages == 2:
            # Newer deliveries arriving between pages do not shift the walk.
            newer = event("evt_new", NOON_MS + 3_600_000, ["ep_a"])
            await store.write([newer], [outcome(newer, "ep_a", 1, DELIVERED)])
        if page.next is None:
            break
        assert len(page.items) == 7
        after = page.next
    assert seen == list(everything.items)
    assert pages == -(-len(outcomes) // 7)

    ids: list[str] = []
    before: DeliveryPosition | None = None
    while True:
        deliveries = await store.endpoint_deliveries("ep_a", 10, before)
        ids += [d.id for d in deliveries.items]
        if deliveries.next is None:
            break
        before = deliveries.next
    assert ids == ["evt_new-ep_a", *sorted((e.id + "-ep_a" for e in events), reverse=True)]


async def test_the_log_filters_by_outcome_and_time(store: PostgresLogStore) -> None:
    events = [event(f"evt_{n}", NOON_MS + n * 60_000, ["ep_a"]) for n in range(10)]
    outcomes = [outcome(s, "ep_a", 1, RETRY) for s in events]
    outcomes += [outcome(s, "ep_a", 2, DELIVERED if n < 5 else DEAD) for n, s in enumerate(events)]
    await store.write(events, outcomes)

    async def numbers(query: AttemptQuery) -> list[tuple[str, int]]:
        page = await store.endpoint_attempts("ep_a", query, 100)
        assert page.next is None
        return [(e.event_id, e.attempt.number) for e in page.items]

    assert await numbers(AttemptQuery(outcome=DEAD)) == [(f"evt_{n}", 2) for n in range(9, 4, -1)]
    since, until = NOON_MS + 3 * 60_000 + 2000, NOON_MS + 5 * 60_000 + 1000
    window = await numbers(AttemptQuery(since_ms=since, until_ms=until))
    assert window == [("evt_5", 1), ("evt_4", 2), ("evt_4", 1), ("evt_3", 2)]
    assert await numbers(AttemptQuery(outcome=DELIVERED, since_ms=since, until_ms=until)) == [
        ("evt_4", 2),
        ("evt_3", 2),
    ]


async def test_a_sparse_filter_ends_pages_early_with_a_cursor(store: PostgresLogStore) -> None:
    events = [event(f"evt_{n:04}", NOON_MS + n, ["ep_a"]) for n in range(1500)]
    # Only the oldest delivery has an attempt made after `since`.
    outcomes = [outcome(s, "ep_a", 1, DELIVERED, at_ms=NOON_MS + 10_000) for s in events[1:]]
    outcomes.append(outcome(events[0], "ep_a", 1, DEAD, at_ms=NOON_MS + 50_000))
    for start in range(0, 1500, 500):
        await store.write(events[start : start + 500], outcomes[start : start + 500])
    query = AttemptQuery(since_ms=NOON_MS + 40_000)

    first = await store.endpoint_attempts("ep_a", query, 10)
    assert first.items == ()
    # The 1000th attempt examined, newest first: the next page starts after it.
    assert first.next == (NOON_MS + 500, "evt_0500-ep_a", 1)
    second = await store.endpoint_attempts("ep_a", query, 10, first.next)
    assert [e.delivery_id for e in second.items] == ["evt_0000-ep_a"]
    assert second.next is None


async def test_a_store_refuses_an_unmigrated_database(postgres_empty_url: str) -> None:
    with pytest.raises(SchemaError, match=r"run `cliq-webhooks migrate`"):
        await PostgresLogStore.open(postgres_empty_url)


async def test_an_empty_batch_costs_nothing(store: PostgresLogStore) -> None:
    assert await store.write([], []) == WriteResult(0, 0, 0, 0, 0)
    assert await store.load_deliveries([]) == []
    assert await store.mark_replayed([], NOON_MS) == []
    assert await store.recent_summaries([], 100) == {}
    source = event("evt_1", NOON_MS, [])
    assert (await store.write([source], [])).events_new == 1


async def test_the_store_is_a_log_store(store: PostgresLogStore) -> None:
    as_interface: LogStore = store  # mypy checks every method's signature
    methods = [name for name in vars(LogStore) if not name.startswith("_")]
    assert len(methods) == 16  # load_events: revival; outcome_counts: the chart
    assert all(callable(getattr(as_interface, name)) for name in methods)


async def test_the_log_writer_benchmark_measures_a_real_run(postgres_empty_url: str) -> None:
    figures = await measure(postgres_empty_url, outcomes=1000, batch=500)
    assert (figures.transfer, figures.outcomes, figures.batch) == ("unnest", 1000, 500)
    assert figures.rows_per_s == pytest.approx(1000 / figures.seconds)
    assert figures.server_cpu_s >= 0
    copied = await measure(postgres_empty_url, outcomes=1000, batch=500, transfer="copy")
    assert copied.transfer == "copy"
