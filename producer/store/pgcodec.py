"""What the PostgreSQL store sends and reads back: its SQL texts, a batch as the array
parameters of ``cliq_log_write``, and rows as the dataclasses of
:mod:`producer.deliveries` and :mod:`producer.store.logstore`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from producer.deliveries import Attempt, AttemptOutcome, Delivery, DeliveryState
from producer.store.logstore import EventRecord, LoggedAttempt, OutcomeRecord, StoredEvent
from producer.store.partitions import days_of

# An attempt's columns, in the order of Attempt's fields.
ATTEMPT_NAMES = (
    "number", "at_ms", "status", "error", "latency_ms", "response", "outcome", "next_attempt_ms"
)  # fmt: skip
ATTEMPT_COLUMNS = ", ".join(f"a.{name}" for name in ATTEMPT_NAMES)
# Deliveries with their attempts. The attempts are a correlated subquery, run per
# delivery: one primary key probe in the one partition of that delivery (pruned at run
# time), whatever the planner thinks of the table's size.
WITH_ATTEMPTS = (
    "SELECT d.id, d.event_id, d.endpoint_id, d.state, d.attempts_made, d.created_ms,"
    f" ARRAY(SELECT ROW({ATTEMPT_COLUMNS}) FROM attempts AS a"
    "  WHERE a.delivery_id = d.id AND a.delivery_created_ms = d.created_ms"
    "  ORDER BY a.number) AS attempts"
    " FROM ({rows}) AS d ORDER BY {order}"
)
WRITE_SQL = "SELECT * FROM cliq_log_write(" + ", ".join(f"${n}" for n in range(1, 23)) + ")"
# Per endpoint, its latest deliveries (one index), and per delivery (a probe of its
# partition's primary key) its latest attempt, success and failure; the latest failure
# of all comes back as one row value.
RECENT = f"""
SELECT ep.id AS endpoint_id, s.*
FROM unnest($1::text[]) AS ep(id)
CROSS JOIN LATERAL (
    SELECT count(*) AS deliveries,
           count(*) FILTER (WHERE r.state = 'delivered') AS delivered,
           count(*) FILTER (WHERE r.state = 'dead') AS dead,
           count(*) FILTER (WHERE r.state IN ('queued', 'scheduled')) AS pending,
           max(t.last_at) AS last_attempt_ms, max(t.last_ok) AS last_delivered_ms,
           (array_agg(ROW(r.id, r.event_id, r.created_ms, {ATTEMPT_COLUMNS})
                      ORDER BY a.at_ms DESC, r.id DESC, a.number DESC)
                FILTER (WHERE a.number IS NOT NULL))[1] AS last_error
    FROM (SELECT d.id, d.event_id, d.created_ms, d.state FROM deliveries AS d
          WHERE d.endpoint_id = ep.id ORDER BY d.created_ms DESC, d.id DESC LIMIT $2) AS r
    LEFT JOIN LATERAL (
        SELECT max(a.at_ms) AS last_at,
               max(a.at_ms) FILTER (WHERE a.outcome = 'delivered') AS last_ok
        FROM attempts AS a WHERE a.delivery_id = r.id AND a.delivery_created_ms = r.created_ms
    ) AS t ON true
    LEFT JOIN LATERAL (
        SELECT * FROM attempts AS a
        WHERE a.delivery_id = r.id AND a.delivery_created_ms = r.created_ms
          AND a.outcome <> 'delivered'
        ORDER BY a.at_ms DESC, a.number DESC LIMIT 1
    ) AS a ON true
) AS s
"""


def clean_text(text: str) -> str:
    """``text`` as PostgreSQL can store it: no NUL, no lone surrogate (a receiver's
    answer may hold either; one such row must not fail its whole batch)."""
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def attempt_of(values: Sequence[Any]) -> Attempt:
    """An attempt from its columns in the order of :data:`ATTEMPT_NAMES`."""
    number, at_ms, status, error, latency_ms, response, outcome, next_attempt_ms = values
    return Attempt(
        number, at_ms, status, error, latency_ms, response, AttemptOutcome(outcome), next_attempt_ms
    )


def deliveries_of(rows: Sequence[asyncpg.Record]) -> list[Delivery]:
    """Deliveries from rows of :data:`WITH_ATTEMPTS`, in row order."""
    return [
        Delivery(
            id=row["id"],
            event_id=row["event_id"],
            endpoint_id=row["endpoint_id"],
            state=DeliveryState(row["state"]),
            attempts_made=row["attempts_made"],
            created_ms=row["created_ms"],
            attempts=tuple(attempt_of(values) for values in row["attempts"]),
        )
        for row in rows
    ]


def write_arguments(
    events: Sequence[EventRecord], outcomes: Sequence[OutcomeRecord]
) -> list[list[Any]]:
    """The 22 array parameters of ``cliq_log_write``, duplicates within the batch removed."""
    unique_events = list({e.id: e for e in reversed(events)}.values())
    targets = {
        delivery_id: (delivery_id, e.published_ms, e.id, endpoint_id)
        for e in reversed(unique_events)
        for delivery_id, endpoint_id in e.deliveries
    }
    unique_outcomes = list({(o.delivery_id, o.attempt.number): o for o in outcomes}.values())
    columns: list[list[Any]] = [
        [e.id for e in unique_events],
        [e.published_ms for e in unique_events],
        [e.created_ms for e in unique_events],
        [e.type for e in unique_events],
        [e.workspace_id for e in unique_events],
        [e.body for e in unique_events],
        *(list(column) for column in zip(*targets.values(), strict=True)),
    ]
    if not targets:
        columns += [[], [], [], []]
    attempts = [o.attempt for o in unique_outcomes]
    columns += [
        [o.delivery_id for o in unique_outcomes],
        [o.delivery_created_ms for o in unique_outcomes],
        [o.event_id for o in unique_outcomes],
        [o.endpoint_id for o in unique_outcomes],
        [a.number for a in attempts],
        [a.at_ms for a in attempts],
        [a.status for a in attempts],
        [clean_text(a.error) if a.error is not None else None for a in attempts],
        [a.latency_ms for a in attempts],
        [clean_text(a.response) for a in attempts],
        [a.outcome.value for a in attempts],
        [a.next_attempt_ms for a in attempts],
    ]
    return columns


def batch_days(events: Sequence[EventRecord], outcomes: Sequence[OutcomeRecord]) -> set[date]:
    """The days whose partitions a batch writes to."""
    return days_of([e.published_ms for e in events] + [o.delivery_created_ms for o in outcomes])


def logged_of(row: asyncpg.Record) -> LoggedAttempt:
    """A row with an attempt's columns and its delivery's, as a line of the log."""
    return LoggedAttempt(
        delivery_id=row["delivery_id"],
        event_id=row["event_id"],
        endpoint_id=row["endpoint_id"],
        delivery_created_ms=row["delivery_created_ms"],
        attempt=attempt_of([row[name] for name in ATTEMPT_NAMES]),
    )


def failure_of(endpoint_id: str, values: Sequence[Any] | None) -> LoggedAttempt | None:
    """The ``last_error`` row value of :data:`RECENT`: delivery id, event id, created,
    then the attempt's columns."""
    if values is None:
        return None
    delivery_id, event_id, created_ms, *attempt = values
    return LoggedAttempt(delivery_id, event_id, endpoint_id, created_ms, attempt_of(attempt))


def stored_event(row: asyncpg.Record) -> StoredEvent:
    """An ``events`` row."""
    return StoredEvent(
        id=row["id"],
        type=row["type"],
        workspace_id=row["workspace_id"],
        created_ms=row["created_ms"],
        published_ms=row["published_ms"],
        body=row["body"],
    )
