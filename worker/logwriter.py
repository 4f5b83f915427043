"""Writing the delivery log to its database (``DATABASE_URL``): the log outbox, in batches.

``record.lua`` appends every attempt it records to the log outbox (a Redis stream,
``LAYOUT["log_outbox"]``) in the same script call, so an outcome is never recorded
without its log entry. Each worker runs a :class:`LogWriter` per partition, or with
``LOG_WRITER=separate`` the ``cliq-webhooks log-writer`` processes do
(worker/logproc.py): it reads entries through the consumer group ``writers``, writes a
batch to the store in one round trip (the store's writes are idempotent: a batch
written twice leaves each row once), then acknowledges and deletes those entries
(``logdone.lua``), in the same script call deleting from Redis the final deliveries
(delivered or dead) they finished and the events none of whose deliveries is left there
(an idempotency marker stays for ``IDEMPOTENCY_WINDOW``). A dead delivery is then
replayed from the database (``producer/revive.lua``). An entry read but not
acknowledged stays pending under its reader: the writer retries its own first, and
takes over those of a writer idle for longer than ``JOB_LOCK_TIMEOUT`` (a dead
worker's or log-writer's).

When the database is unreachable, deliveries go on and the entries wait in Redis: the
gauge ``cliq_log_outbox_entries`` grows, a warning is logged when a streak of failures
starts and then once a minute, and the worker's ``/readyz`` says so (it stays ready:
delivering is unaffected; worker/logwatch.py). The next successful write drains the
backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.exceptions
import structlog

from producer.backoff import log_write_pause_s
from producer.deliveries import Attempt, AttemptOutcome
from producer.fields import LOG_ENTRY_FIELDS
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.redis.errors import REDIS_UNAVAILABLE_ERRORS
from producer.scripts import load_script
from producer.store.logstore import EventRecord, LogStore, OutcomeRecord
from producer.store.partitions import drop_expired, ensure_ahead
from producer.store.postgres import PostgresLogStore
from worker.metrics import LogMetrics

log = structlog.get_logger("cliq.worker.logwriter")

GROUP = "writers"
BATCH_MAX = 1000
# Entries per logdone.lua or logevents.lua call. Redis runs one script at a time: a call
# forgetting 1,000 entries held it about 30 ms, stalling every worker's calls meanwhile
# (a worker with LOG_WRITER=separate was idle a fifth of the time); 100 hold it ~3 ms.
SCRIPT_CHUNK = 100
# After a batch short of BATCH_MAX, let outcomes gather this long before the next: a
# batch costs the worker a few Redis calls and one database round trip whatever its size.
LINGER_S = 0.2
# How often to look for entries read but not written (ours after a failed write, a dead
# writer's): each look is two Redis calls, needless while every write succeeds.
RECHECK_S = 5.0
# How long one read waits for new entries (well under the Redis client's timeout).
BLOCK_MS = 1000
FAILURE_LOG_INTERVAL_S = 60.0
# Partitions are made days ahead and dropped a day at a time: hourly is plenty.
PARTITION_UPKEEP_S = 3600.0


@dataclass(frozen=True)
class LogEntry:
    """One entry of the log outbox: an attempt and the ids of its delivery."""

    entry_id: str
    outcome: OutcomeRecord

    @classmethod
    def from_fields(cls, entry_id: str, fields: dict[str, str]) -> LogEntry:
        """Parse an entry as ``record.lua`` writes it; ``ValueError`` when malformed."""
        try:
            outcome = OutcomeRecord(
                delivery_id=fields[LOG_ENTRY_FIELDS.delivery],
                delivery_created_ms=int(fields[LOG_ENTRY_FIELDS.created]),
                event_id=fields[LOG_ENTRY_FIELDS.event],
                endpoint_id=fields[LOG_ENTRY_FIELDS.endpoint],
                attempt=Attempt.from_json(fields[LOG_ENTRY_FIELDS.attempt]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"log outbox entry {entry_id} is malformed: {exc!r}") from None
        return cls(entry_id, outcome)


async def measure_outbox(redis: RedisClient, keys: Keys, metrics: LogMetrics) -> int:
    """Set the gauge of the entries waiting in the log outbox of ``keys``' partition (read
    or not); returns it. A worker whose log is written by log-writer processes measures
    it so too, to stop at ``LOG_OUTBOX_MAX`` (worker/logwatch.py)."""
    waiting = int(await redis.xlen(keys.log_outbox))
    metrics.outbox_waiting(keys.prefix, waiting)
    return waiting


def _entries(reply: Any) -> list[Any]:
    """The entries of one stream's XREADGROUP reply (RESP2: ``[[key, entries]]``)."""
    return list(reply[0][1]) if reply else []


class LogWriter:
    """Moves the log outbox into a :class:`~producer.store.logstore.LogStore`."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        store: LogStore,
        consumer: str,
        metrics: LogMetrics,
        claim_idle_ms: int,
        marker_ttl_s: int,
    ) -> None:
        """``marker_ttl_s``: how long an event id stays known once its record has left
        Redis (``IDEMPOTENCY_WINDOW``)."""
        self._marker_ttl_s = marker_ttl_s
        self._redis = redis
        self._keys = keys
        self._store = store
        self._consumer = consumer
        self._metrics = metrics
        self._claim_idle_ms = claim_idle_ms
        self._done = load_script(redis, keys, "worker", "logdone.lua")
        self._lookup = load_script(redis, keys, "worker", "logevents.lua")
        # Since when writes have been failing (monotonic), None while they succeed.
        self.failing_since: float | None = None
        # When to look for pending entries again (monotonic; 0: at the next batch).
        self._recheck_at = 0.0
        self._last_warning = 0.0

    async def start(self) -> None:
        """Create the stream's consumer group (once, whichever worker comes first)."""
        try:
            await self._redis.xgroup_create(self._keys.log_outbox, GROUP, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Write batches until cancelled, or until ``stop`` is set (then the batch under
        way is finished first, so that none is left pending under this writer); a failing
        database is retried with backoff."""
        backoff_s = 0.0
        while stop is None or not stop.is_set():
            try:
                written = await self.write_batch(BLOCK_MS)
                backoff_s = 0.0
                pause_s = 0.0 if written >= BATCH_MAX else LINGER_S
            except Exception as exc:  # the database (or Redis) is down: entries wait
                self._failed(exc)
                pause_s = backoff_s = log_write_pause_s(backoff_s)
            with contextlib.suppress(*REDIS_UNAVAILABLE_ERRORS):
                await self.measure()
            if stop is None:
                await asyncio.sleep(pause_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause_s)

    async def write_batch(self, block_ms: int | None = None) -> int:
        """Take a batch, write it to the store, forget it; returns how many were written.
        Waits up to ``block_ms`` for new entries (``None``: returns at once)."""
        entries = await self._take(block_ms)
        if entries:
            outcomes = [entry.outcome for entry in entries]
            await self._store.write(await self._events(outcomes), outcomes)
            await self._forget(entries)
            self._metrics.written.inc(len(entries))
        self._recovered()
        return len(entries)

    async def measure(self) -> int:
        """Set the gauge of the entries waiting (read or not); returns it."""
        return await measure_outbox(self._redis, self._keys, self._metrics)

    async def _take(self, block_ms: int | None) -> list[LogEntry]:
        key = self._keys.log_outbox
        raw: list[Any] = []
        # Ours first (read before a failed write), then a dead writer's, then new ones.
        if time.monotonic() >= self._recheck_at:
            raw = _entries(
                await self._redis.xreadgroup(GROUP, self._consumer, {key: "0"}, count=BATCH_MAX)
            )
            if not raw:
                claimed: Any = await self._redis.xautoclaim(
                    key, GROUP, self._consumer, self._claim_idle_ms, "0-0", count=BATCH_MAX
                )
                raw = list(claimed[1])
            if not raw:
                self._recheck_at = time.monotonic() + RECHECK_S
        if not raw:
            raw = _entries(
                await self._redis.xreadgroup(
                    GROUP, self._consumer, {key: ">"}, count=BATCH_MAX, block=block_ms
                )
            )
        return await self._parse(raw)

    async def _parse(self, raw: Sequence[Any]) -> list[LogEntry]:
        entries: list[LogEntry] = []
        bad: list[str] = []
        for entry_id, fields in raw:
            if not fields:  # deleted after it was read: nothing to write
                bad.append(entry_id)
                continue
            try:
                entries.append(LogEntry.from_fields(entry_id, fields))
            except ValueError as exc:
                # It cannot be written however often it is retried: say so, and drop it.
                log.error("log_entry_malformed", entry_id=entry_id, error=str(exc))
                self._metrics.bad_entries.inc()
                bad.append(entry_id)
        if bad:
            await self._done(GROUP, self._marker_ttl_s, 0, *bad)
        return entries

    async def _forget(self, entries: Sequence[LogEntry]) -> None:
        """Delete the written entries, and the final deliveries (and the events of
        which nothing is left) from Redis: the log store has them now."""
        for start in range(0, len(entries), SCRIPT_CHUNK):
            chunk = entries[start : start + SCRIPT_CHUNK]
            final = [
                (e.outcome.delivery_id, e.outcome.attempt.number)
                for e in chunk
                if e.outcome.attempt.outcome != AttemptOutcome.RETRY
            ]
            await self._done(
                GROUP,
                self._marker_ttl_s,
                len(final),
                *(part for pair in final for part in pair),
                *(entry.entry_id for entry in chunk),
            )

    async def _events(self, outcomes: Sequence[OutcomeRecord]) -> list[EventRecord]:
        """The events whose first attempts these are, with their fan-out, from Redis (the
        store writes an event once, however often it is sent)."""
        firsts = {o.event_id: o.delivery_created_ms for o in outcomes if o.attempt.number == 1}
        if not firsts:
            return []
        ids = list(firsts)
        found: list[Any] = []
        for start in range(0, len(ids), SCRIPT_CHUNK):
            found += await self._lookup(*ids[start : start + SCRIPT_CHUNK])
        events: list[EventRecord] = []
        for (event_id, published_ms), row in zip(firsts.items(), found, strict=True):
            if not row:  # already expired: its outcomes are written without it
                continue
            body, etype, workspace, created, fan_out = row
            events.append(
                EventRecord(
                    id=event_id,
                    type=etype,
                    workspace_id=workspace,
                    created_ms=int(created),
                    body=body.encode(),
                    published_ms=published_ms,
                    deliveries=tuple(zip(fan_out[::2], fan_out[1::2], strict=True)),
                )
            )
        return events

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._recheck_at = 0.0  # the batch just read waits among our pending entries
        self._metrics.write_failures.inc()
        if self.failing_since is None:
            self.failing_since = now
        elif now - self._last_warning < FAILURE_LOG_INTERVAL_S:
            return
        self._last_warning = now
        log.warning(
            "log_write_failed",
            error=str(exc) or type(exc).__name__,
            failing_for_s=round(now - self.failing_since, 1),
            hint="outcomes wait in the Redis log outbox until the database is back",
        )

    def _recovered(self) -> None:
        if self.failing_since is not None:
            log.info(
                "log_write_recovered",
                failed_for_s=round(time.monotonic() - self.failing_since, 1),
            )
            self.failing_since = None


async def upkeep_partitions(store: PostgresLogStore, retention_s: int) -> None:
    """Create the coming days' partitions and drop those past the retention, once (under
    an advisory lock: whichever worker comes first does it)."""
    now = time.time()
    await ensure_ahead(store.pool, datetime.fromtimestamp(now, UTC).date())
    await drop_expired(store.pool, int(now * 1000), retention_s)


async def keep_partitions(store: PostgresLogStore, retention_s: int) -> None:
    """Run :func:`upkeep_partitions` at start and every :data:`PARTITION_UPKEEP_S` until
    cancelled; a failure is logged and tried again at the next round."""
    while True:
        try:
            await upkeep_partitions(store, retention_s)
        except Exception as exc:  # the database is down: writes create what they need
            log.warning("log_partition_upkeep_failed", error=str(exc) or type(exc).__name__)
        await asyncio.sleep(PARTITION_UPKEEP_S)
