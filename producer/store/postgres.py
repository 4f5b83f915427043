"""The delivery log in PostgreSQL (``DATABASE_URL=postgresql://...``), with asyncpg.

Layout (``migrations/0001_delivery_log.sql``): ``events`` (the body, once per event),
``deliveries``, ``attempts`` and ``delivery_counts`` are partitioned by UTC day on the
creation time of the delivery their rows belong to (``events`` on its publish time,
which is its deliveries' creation time). So an attempt lands in its delivery's
partition, a delivery updated days later is updated in place, and retention drops a
day of all four at once (:mod:`producer.store.partitions`). A partitioned table's keys
must contain its partition key: a delivery's key is ``(id, created_ms)``, which every
outcome carries; a read by id alone probes each day's primary key index.

Event ids must stay unique beyond the Redis window, and PostgreSQL has no unique index
across partitions: ``event_ids`` is a plain table (id, publish time) that makes the
write idempotent per event and answers :meth:`PostgresLogStore.known_events`; it is the
one table that retention deletes from (about 60 bytes an event).

A batch is written by one call of the SQL function ``cliq_log_write``: every column as
an array parameter, unnested server side (one statement, one round trip, one
transaction; faster than ``COPY`` into temporary tables at 500 outcomes, see
``bench/logwriter.py``). Row locks are taken in key order and the counts last, so
concurrent workers do not deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog

from producer.deliveries import Delivery, DeliveryNotFound, DeliveryState
from producer.store.logstore import (
    SCAN_BUDGET,
    AttemptPosition,
    AttemptQuery,
    DeliveryPosition,
    EventRecord,
    LoggedAttempt,
    OutcomeRecord,
    Page,
    RecentSummary,
    StoredEvent,
    WriteResult,
)
from producer.store.migrate import check_schema
from producer.store.partitions import ensure_partitions
from producer.store.pgcodec import (
    RECENT,
    WITH_ATTEMPTS,
    WRITE_SQL,
    batch_days,
    deliveries_of,
    failure_of,
    logged_of,
    stored_event,
    write_arguments,
)

log = structlog.get_logger("cliq.producer.store")


class PostgresLogStore:
    """A :class:`producer.store.logstore.LogStore` on a pool of asyncpg connections."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, url: str, min_size: int = 1, max_size: int = 4) -> PostgresLogStore:
        """Connect to ``url`` and refuse a schema older than this build's
        (:class:`producer.store.migrate.SchemaError` names the command to run)."""
        pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size)
        try:
            await check_schema(pool)
        except BaseException:
            await pool.close()
            raise
        return cls(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        """The connections (for migrations and partition maintenance)."""
        return self._pool

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self._pool.close()

    # ------------------------------------------------------------ writing

    async def write(
        self, events: Sequence[EventRecord], outcomes: Sequence[OutcomeRecord]
    ) -> WriteResult:
        """Write one batch in one round trip; idempotent, so a failed flush may be retried.

        A row for a day that has no partition yet (the clock passed the days created
        ahead) creates that day's partitions, and the batch is written again.
        """
        if not events and not outcomes:
            return WriteResult(0, 0, 0, 0, 0)
        arguments = write_arguments(events, outcomes)
        try:
            row = await self._pool.fetchrow(WRITE_SQL, *arguments)
        except asyncpg.CheckViolationError as exc:
            if "no partition of relation" not in str(exc):
                raise
            created = await ensure_partitions(self._pool, batch_days(events, outcomes))
            log.warning("log_partition_missing", created=[p.name for p in created])
            row = await self._pool.fetchrow(WRITE_SQL, *arguments)
        assert row is not None  # a function call always returns its row
        return WriteResult(**dict(row))

    # ------------------------------------------------------------ deliveries

    async def get_delivery(self, delivery_id: str) -> Delivery:
        """One delivery with its attempts, or :class:`DeliveryNotFound`."""
        (delivery,) = await self.load_deliveries([delivery_id])
        if delivery is None:
            raise DeliveryNotFound(f"no delivery with id {delivery_id!r}")
        return delivery

    async def load_deliveries(self, delivery_ids: Sequence[str]) -> list[Delivery | None]:
        """Deliveries by id, in that order; ``None`` for one not stored."""
        if not delivery_ids:
            return []
        query = WITH_ATTEMPTS.format(
            rows="SELECT * FROM deliveries WHERE id = ANY($1::text[])", order="d.created_ms"
        )
        by_id = {d.id: d for d in deliveries_of(await self._pool.fetch(query, list(delivery_ids)))}
        return [by_id.get(i) for i in delivery_ids]

    async def endpoint_deliveries(
        self, endpoint_id: str, limit: int, before: DeliveryPosition | None = None
    ) -> Page[Delivery, DeliveryPosition]:
        """An endpoint's deliveries, newest first, from just after ``before``."""
        args: list[Any] = [endpoint_id, limit + 1]
        keyset = ""
        if before is not None:
            keyset = " AND (created_ms, id) < ($3, $4)"
            args += list(before)
        query = WITH_ATTEMPTS.format(
            rows="SELECT * FROM deliveries WHERE endpoint_id = $1" + keyset
            + " ORDER BY created_ms DESC, id DESC LIMIT $2",
            order="d.created_ms DESC, d.id DESC",
        )  # fmt: skip
        found = deliveries_of(await self._pool.fetch(query, *args))
        if len(found) <= limit:
            return Page(tuple(found), None)
        last = found[limit - 1]
        return Page(tuple(found[:limit]), (last.created_ms, last.id))

    async def event_deliveries(self, event_id: str) -> list[Delivery]:
        """Every delivery of an event, oldest first (then by id)."""
        query = WITH_ATTEMPTS.format(
            rows="SELECT * FROM deliveries WHERE event_id = $1", order="d.created_ms, d.id"
        )
        return deliveries_of(await self._pool.fetch(query, event_id))

    async def dead_delivery_ids(self, endpoint_id: str, since_ms: int = 0) -> list[str]:
        """Ids of an endpoint's deliveries that died at or after ``since_ms``."""
        rows = await self._pool.fetch(
            "SELECT id FROM deliveries WHERE endpoint_id = $1 AND state = 'dead'"
            " AND dead_ms >= $2 ORDER BY dead_ms, id",
            endpoint_id,
            since_ms,
        )
        return [row["id"] for row in rows]

    async def mark_replayed(self, delivery_ids: Sequence[str], at_ms: int) -> list[str]:
        """Dead deliveries among these back to queued; returns the ones moved."""
        if not delivery_ids:
            return []
        rows = await self._pool.fetch(
            "SELECT * FROM cliq_log_replayed($1::text[], $2) AS t(id)", list(delivery_ids), at_ms
        )
        return [row["id"] for row in rows]

    # ------------------------------------------------------------ the log

    async def endpoint_attempts(
        self,
        endpoint_id: str,
        query: AttemptQuery,
        limit: int,
        after: AttemptPosition | None = None,
    ) -> Page[LoggedAttempt, AttemptPosition]:
        """An endpoint's attempts matching ``query``, newest deliveries first, within
        :data:`SCAN_BUDGET` attempts examined."""
        args: list[Any] = [endpoint_id, SCAN_BUDGET, limit + 1]
        walk = ["endpoint_id = $1"]
        hits: list[str] = []
        if query.outcome is not None:
            args.append(query.outcome.value)
            walk.append(f"outcome = ${len(args)}")
        if query.until_ms is not None:
            # No attempt precedes its delivery: later deliveries cannot match.
            args.append(query.until_ms)
            walk.append(f"delivery_created_ms <= ${len(args)}")
            hits.append(f"at_ms <= ${len(args)}")
        if query.since_ms is not None:
            args.append(query.since_ms)
            hits.append(f"at_ms >= ${len(args)}")
        if after is not None:
            args += list(after)
            n = len(args)
            walk.append(f"(delivery_created_ms, delivery_id, number) < (${n - 2}, ${n - 1}, ${n})")
        order = "delivery_created_ms DESC, delivery_id DESC, number DESC"
        sql = (
            f"WITH walk AS MATERIALIZED (SELECT * FROM attempts WHERE {' AND '.join(walk)}"
            f" ORDER BY {order} LIMIT $2)"
            f" (SELECT false AS last, * FROM walk WHERE {' AND '.join(hits) or 'true'}"
            f" ORDER BY {order} LIMIT $3)"
            # The last attempt examined, when the budget ran out: the next page starts there.
            f" UNION ALL (SELECT true, * FROM walk WHERE (SELECT count(*) FROM walk) = $2"
            f" ORDER BY delivery_created_ms, delivery_id, number LIMIT 1)"
        )
        rows = await self._pool.fetch(sql, *args)
        found = [logged_of(row) for row in rows if not row["last"]]
        if len(found) > limit:
            return Page(tuple(found[:limit]), found[limit - 1].position)
        ends = [logged_of(row).position for row in rows if row["last"]]
        return Page(tuple(found), ends[0] if ends else None)

    async def recent_summaries(
        self, endpoint_ids: Sequence[str], window: int
    ) -> dict[str, RecentSummary]:
        """Each endpoint's latest ``window`` deliveries summarised, in one query."""
        if not endpoint_ids:
            return {}
        rows = await self._pool.fetch(RECENT, list(endpoint_ids), window)
        return {
            row["endpoint_id"]: RecentSummary(
                window=window,
                deliveries=row["deliveries"],
                delivered=row["delivered"],
                dead=row["dead"],
                pending=row["pending"],
                last_attempt_ms=row["last_attempt_ms"],
                last_delivered_ms=row["last_delivered_ms"],
                last_error=failure_of(row["endpoint_id"], row["last_error"]),
            )
            for row in rows
        }

    async def state_counts(self, endpoint_id: str | None = None) -> dict[DeliveryState, int]:
        """Deliveries within the retention in each state, overall or of one endpoint."""
        if endpoint_id is None:
            rows = await self._pool.fetch(
                "SELECT state, sum(n)::bigint AS n FROM delivery_counts GROUP BY state"
            )
        else:
            rows = await self._pool.fetch(
                "SELECT state, sum(n)::bigint AS n FROM delivery_counts"
                " WHERE endpoint_id = $1 GROUP BY state",
                endpoint_id,
            )
        counts = dict.fromkeys(DeliveryState, 0)
        counts.update({DeliveryState(row["state"]): row["n"] for row in rows})
        return counts

    async def outcome_counts(
        self, endpoint_id: str, since_ms: int, bucket_ms: int
    ) -> dict[tuple[int, str], int]:
        """Attempts since ``since_ms`` per bucket and outcome: an index-only scan of
        ``attempts_endpoint_time`` (migration 0002) in each day's partition."""
        rows = await self._pool.fetch(
            "SELECT at_ms - at_ms % $3 AS bucket, outcome, count(*) AS n FROM attempts"
            " WHERE endpoint_id = $1 AND at_ms >= $2 GROUP BY 1, 2",
            endpoint_id,
            since_ms,
            bucket_ms,
        )
        return {(row["bucket"], row["outcome"]): row["n"] for row in rows}

    # ------------------------------------------------------------ events

    async def get_event(self, event_id: str) -> StoredEvent | None:
        """The event, ``None`` when not stored."""
        row = await self._pool.fetchrow(
            "SELECT e.* FROM event_ids AS i JOIN events AS e"
            " ON e.id = i.id AND e.published_ms = i.published_ms WHERE i.id = $1",
            event_id,
        )
        return None if row is None else stored_event(row)

    async def load_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """Those of these events still stored, in one query."""
        rows = await self._pool.fetch(
            "SELECT e.* FROM event_ids AS i JOIN events AS e"
            " ON e.id = i.id AND e.published_ms = i.published_ms WHERE i.id = ANY($1::text[])",
            sorted(set(event_ids)),
        )
        return [stored_event(row) for row in rows]

    async def known_events(self, event_ids: Sequence[str]) -> set[str]:
        """Which of these event ids were published within the retention."""
        rows = await self._pool.fetch(
            "SELECT id FROM event_ids WHERE id = ANY($1::text[])", list(event_ids)
        )
        return {row["id"] for row in rows}

    async def event_types(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The type of each of these events still stored."""
        rows = await self._pool.fetch(
            # Per id, one probe of the one partition of its day (a subquery per row).
            "SELECT i.id, (SELECT e.type FROM events AS e"
            "  WHERE e.id = i.id AND e.published_ms = i.published_ms) AS type"
            " FROM event_ids AS i WHERE i.id = ANY($1::text[])",
            sorted(set(event_ids)),
        )
        return {row["id"]: row["type"] for row in rows if row["type"] is not None}
