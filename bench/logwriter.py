"""``logwriter``: how fast the PostgreSQL delivery log takes worker batches.

``outcomes`` first attempts (100,000 by default) are written in batches of ``batch``
(500), as a worker group-commits them: each batch also carries the events (fan-out 10)
whose deliveries it attempts, so a batch writes ``batch / 10`` events, ``batch``
deliveries and ``batch`` attempts. The rate is outcomes per second of wall time, from
the first batch to the last commit, one batch in flight (one worker's flusher). CPU
seconds are this process's (building the batch, encoding it) and the database
backend's that served it (``/proc``: the server must run on this machine).

Two transfers are measured (``transfer``):

* ``unnest``: what :class:`producer.store.postgres.PostgresLogStore` does, every
  column as an array parameter of one call of ``cliq_log_write``: one round trip.
* ``copy``: the same rows ``COPY``-ed into temporary tables, then the same function
  called on them, in one transaction (seven round trips). Kept to show why the store
  does not do it.

``python -m bench.logwriter --database-url postgresql://...`` prints the figures as
JSON. The database must be one to throw away: it is migrated, and the run's rows stay.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from bench.cpu import process_seconds
from producer.deliveries import Attempt, AttemptOutcome
from producer.store.logstore import EventRecord, OutcomeRecord
from producer.store.migrate import migrate
from producer.store.partitions import day_of, ensure_ahead
from producer.store.pgcodec import WRITE_SQL, write_arguments

FAN_OUT = 10
BODY = orjson.dumps({"type": "issue.created", "data": {"id": "iss_1", "title": "x" * 400}})
TRANSFERS = ("unnest", "copy")

# The temporary tables of the ``copy`` transfer: (name, columns of write_arguments).
_COPY_TABLES = (
    ("lw_events", "id text, published bigint, created bigint, type text, ws text, body bytea", 6),
    ("lw_targets", "id text, created bigint, event text, endpoint text", 4),
    (
        "lw_outcomes",
        "delivery text, created bigint, event text, endpoint text, number integer, at bigint,"
        " status integer, error text, latency double precision, response text, outcome text,"
        " next bigint",
        12,
    ),
)
_COPY_CALL = (
    "SELECT * FROM cliq_log_write("
    + ", ".join(
        f"(SELECT coalesce(array_agg({column.split()[0]}), '{{}}') FROM {table})"
        for table, columns, _ in _COPY_TABLES
        for column in columns.split(", ")
    )
    + ")"
)


@dataclass(frozen=True)
class LogWriterFigures:
    """One run's result."""

    transfer: str
    outcomes: int
    batch: int
    seconds: float
    rows_per_s: float
    client_cpu_s: float
    server_cpu_s: float


def make_batch(
    run: str, start: int, size: int, now_ms: int
) -> tuple[list[EventRecord], list[OutcomeRecord]]:
    """Batch ``start // size``: its events and the first attempt of each of their deliveries."""
    events: list[EventRecord] = []
    outcomes: list[OutcomeRecord] = []
    for n in range(start // FAN_OUT, (start + size) // FAN_OUT):
        event_id = f"evt_{run}_{n}"
        targets = tuple((f"dlv_{run}_{n}_{k}", f"ep_{k}") for k in range(FAN_OUT))
        events.append(
            EventRecord(event_id, "issue.created", "ws_bench", now_ms, BODY, now_ms, targets)
        )
        for delivery_id, endpoint_id in targets:
            attempt = Attempt(1, now_ms + 5, 200, None, 4.2, "ok", AttemptOutcome.DELIVERED)
            outcomes.append(OutcomeRecord(delivery_id, now_ms, event_id, endpoint_id, attempt))
    return events, outcomes


async def _write_copy(
    conn: PoolConnectionProxy[asyncpg.Record],
    events: Sequence[EventRecord],
    outcomes: Sequence[OutcomeRecord],
) -> None:
    """The ``copy`` transfer of one batch."""
    columns = write_arguments(events, outcomes)
    async with conn.transaction():
        await conn.execute(
            "; ".join(
                f"CREATE TEMPORARY TABLE {table} ({spec}) ON COMMIT DROP"
                for table, spec, _ in _COPY_TABLES
            )
        )
        offset = 0
        for table, _, width in _COPY_TABLES:
            rows = list(zip(*columns[offset : offset + width], strict=True))
            await conn.copy_records_to_table(table, records=rows)
            offset += width
        await conn.fetchrow(_COPY_CALL)


async def measure(
    url: str, outcomes: int = 100_000, batch: int = 500, transfer: str = "unnest"
) -> LogWriterFigures:
    """Write ``outcomes`` first attempts in batches of ``batch``; the figures."""
    if transfer not in TRANSFERS:
        raise ValueError(f"transfer must be one of {', '.join(TRANSFERS)}")
    if batch % FAN_OUT or outcomes % batch:
        raise ValueError(f"batch must divide outcomes, and {FAN_OUT} must divide batch")
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        await migrate(pool)
        now_ms = int(time.time() * 1000)
        await ensure_ahead(pool, day_of(now_ms), ahead=1)
        run = secrets.token_hex(4)
        batches = [make_batch(run, start, batch, now_ms) for start in range(0, outcomes, batch)]
        async with pool.acquire() as conn:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            server_before, client_before = process_seconds(backend), time.process_time()
            started = time.perf_counter()
            for events, attempts in batches:
                if transfer == "unnest":
                    # PostgresLogStore.write's statement, on this one connection.
                    await conn.fetchrow(WRITE_SQL, *write_arguments(events, attempts))
                else:
                    await _write_copy(conn, events, attempts)
            seconds = time.perf_counter() - started
            server_cpu = process_seconds(backend) - server_before
            client_cpu = time.process_time() - client_before
        written = await pool.fetchval(
            "SELECT count(*) FROM attempts WHERE delivery_id LIKE $1", f"dlv_{run}_%"
        )
        if written != outcomes:
            raise RuntimeError(f"{written} attempts written, {outcomes} expected")
    finally:
        await pool.close()
    return LogWriterFigures(
        transfer, outcomes, batch, seconds, outcomes / seconds, client_cpu, server_cpu
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.logwriter``: print each transfer's figures as JSON lines."""
    parser = argparse.ArgumentParser(prog="python -m bench.logwriter", description=__doc__)
    parser.add_argument("--database-url", required=True, help="a PostgreSQL database to throw away")
    parser.add_argument("--outcomes", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--transfer", choices=TRANSFERS, action="append")
    args = parser.parse_args(argv)
    for transfer in args.transfer or TRANSFERS:
        figures = asyncio.run(measure(args.database_url, args.outcomes, args.batch, transfer))
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        sys.stdout.write(orjson.dumps({"at": stamp, **dataclasses.asdict(figures)}).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
