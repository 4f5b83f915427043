"""A worker's view of the delivery log's writing (``DATABASE_URL``): how many outcomes
wait in the log outbox, against ``LOG_OUTBOX_MAX``, and whether the writers write.

With ``LOG_WRITER=worker`` (the default) the worker's own log writers, one per partition,
keep the outbox gauge fresh after each batch and know whether their writes fail. With
``LOG_WRITER=separate`` it runs none, and learns both otherwise at each housekeeping
round: it measures every partition's outbox itself (so that its intake still stops at
``LOG_OUTBOX_MAX``), and reads the heartbeats that each ``cliq-webhooks log-writer``
process (worker/logproc.py) renews every :data:`BEAT_S` in ``LAYOUT["log_writers"]``,
each saying whether that process's writes fail. A heartbeat older than :data:`LIVE_S`
is a process gone without a word (SIGKILL, a lost host), and is dropped; the times are
the machines' clocks, which must agree within a few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import structlog

from producer.keys import Keys
from producer.redis.clients import RedisClient
from worker.logwriter import LogWriter, measure_outbox
from worker.metrics import LogMetrics

log = structlog.get_logger("cliq.worker.logwatch")

BEAT_S = 1.0
LIVE_S = 10.0
MISSING_LOG_INTERVAL_S = 60.0
# The values of /readyz's log_store detail.
STORE_OK = "ok"
STORE_FAILING = "failing"
NO_WRITER = "no_writer"
# A log-writer process without DATABASE_URL: nothing to write.
NO_STORE = "none"


def writers_state(writers: Sequence[LogWriter]) -> str:
    """``failing`` when one of these writers' writes fail, else ``ok``."""
    return STORE_FAILING if any(w.failing_since is not None for w in writers) else STORE_OK


async def beat(redis: RedisClient, keys: Keys, writer_id: str, failing: bool) -> None:
    """Say that log-writer process ``writer_id`` runs, and whether its writes fail
    (``keys``: partition 0's)."""
    await redis.hset(keys.log_writers, writer_id, f"{int(time.time() * 1000)}:{int(failing)}")


async def leave(redis: RedisClient, keys: Keys, writer_id: str) -> None:
    """Say that log-writer process ``writer_id`` has stopped."""
    await redis.hdel(keys.log_writers, writer_id)


@dataclass(frozen=True)
class WritersSeen:
    """The log-writer processes whose heartbeat is recent, and how many of them fail."""

    live: int = 0
    failing: int = 0

    @property
    def state(self) -> str:
        """``failing`` when one of them fails, ``ok`` when they all write, or ``no_writer``."""
        if self.failing:
            return STORE_FAILING
        return STORE_OK if self.live else NO_WRITER


async def writers_seen(redis: RedisClient, keys: Keys) -> WritersSeen:
    """Read the heartbeats (``keys``: partition 0's), dropping those past :data:`LIVE_S`."""
    now_ms = time.time() * 1000
    live = failing = 0
    gone: list[str] = []
    beats = cast(dict[str, str], await redis.hgetall(keys.log_writers))
    for writer_id, value in beats.items():
        at, _, fails = value.partition(":")
        if not at.isdigit() or now_ms - int(at) > LIVE_S * 1000:
            gone.append(writer_id)
            continue
        live += 1
        failing += fails == "1"
    if gone:
        await redis.hdel(keys.log_writers, *gone)
    return WritersSeen(live, failing)


class LogWatch:
    """What a worker with ``DATABASE_URL`` knows of its delivery log's writing: its own
    ``writers``, or (none: ``LOG_WRITER=separate``) what it measures and reads."""

    def __init__(
        self,
        redis: RedisClient,
        partitions: Sequence[Keys],
        metrics: LogMetrics,
        outbox_max: int,
        writers: Sequence[LogWriter],
    ) -> None:
        self._redis = redis
        self._partitions = partitions
        self._metrics = metrics
        self._outbox_max = outbox_max
        self._writers = writers
        self._seen = WritersSeen()
        self._started = time.monotonic()
        self._last_warning = 0.0

    @property
    def separate(self) -> bool:
        """Whether log-writer processes write this worker's log (it runs no writer)."""
        return not self._writers

    async def refresh(self) -> None:
        """With separate writers, measure every outbox and read the heartbeats (one
        housekeeping round); with its own, nothing: they keep the figures fresh."""
        if not self.separate:
            return
        for keys in self._partitions:
            await measure_outbox(self._redis, keys, self._metrics)
        self._seen = await writers_seen(self._redis, self._partitions[0])
        now = time.monotonic()
        if (
            self._seen.live == 0
            and now - self._started > LIVE_S
            and now - self._last_warning >= MISSING_LOG_INTERVAL_S
        ):
            self._last_warning = now
            log.warning(
                "log_writer_missing",
                log_outbox=self._metrics.waiting,
                hint="LOG_WRITER=separate and no `cliq-webhooks log-writer` process runs: "
                f"outcomes wait in the log outbox, and intake stops at LOG_OUTBOX_MAX "
                f"({self._outbox_max})",
            )

    def full(self) -> str | None:
        """Why to take no new work while the log outbox holds ``LOG_OUTBOX_MAX`` outcomes
        (the database is down or behind, or no writer runs), else ``None``."""
        waiting = self._metrics.waiting
        if waiting < self._outbox_max:
            return None
        return (
            f"{waiting} outcomes wait in the log outbox for the database (LOG_OUTBOX_MAX "
            f"{self._outbox_max}): new work waits until they are written"
        )

    def details(self) -> dict[str, object]:
        """``/readyz``'s details: ``log_store`` (``ok``, ``failing``, and with separate
        writers ``no_writer``), ``log_outbox``, and with separate writers ``log_writers``
        (how many run). Delivering goes on while the database is down: not a refusal."""
        if self.separate:
            return {
                "log_store": self._seen.state,
                "log_outbox": self._metrics.waiting,
                "log_writers": self._seen.live,
            }
        return {"log_store": writers_state(self._writers), "log_outbox": self._metrics.waiting}
