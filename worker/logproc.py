"""``cliq-webhooks log-writer``: a process that only writes the delivery log.

A worker's log writers (worker/logwriter.py) share its one core with delivering: at a
few thousand deliveries a second they cost it a fifth and more of its rate. This process
runs them instead, one per partition, reading each partition's log outbox through the
same consumer group as the workers' would, together with the database's partition upkeep
(hourly, under an advisory lock). Workers started with ``LOG_WRITER=separate`` then run
none (they still stop taking work at ``LOG_OUTBOX_MAX``: worker/logwatch.py), and every
second this process tells them in Redis that it runs and whether its writes fail. Run one
or more: they share the outboxes as workers' writers do, and a batch left pending by one
that died is taken over by another after ``JOB_LOCK_TIMEOUT``.

Its ``/healthz`` says its writers run, its ``/readyz`` also that Redis answers and its
writes succeed (details ``log_store``, ``log_outbox``), ``/metrics`` the ``cliq_log_*``
metrics. SIGTERM or SIGINT lets each writer finish the batch under way (for at most
``SHUTDOWN_GRACE``), then it exits 0; a writer that dies makes it exit 1 for its
supervisor to restart it. Like a worker, it refuses a schema older than its own (exit
status 2) and a database it cannot reach (exit status 1). Without ``DATABASE_URL`` there
is nothing to write: it says so and idles until stopped (so that a Procfile started
whole on a Redis-only deployment keeps running), ``/readyz`` answering 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time

import structlog
from prometheus_client import CollectorRegistry

from producer.context import Producer
from producer.redis.clients import ping
from worker import __version__
from worker.logwatch import (
    BEAT_S,
    NO_STORE,
    STORE_FAILING,
    STORE_OK,
    beat,
    leave,
    writers_state,
)
from worker.logwriter import LogWriter, keep_partitions
from worker.loops import cancel_until_done
from worker.metrics import LogMetrics, bad_jobs_counter
from worker.probes import answers, serve_probes
from worker.settings import WorkerSettings

log = structlog.get_logger("cliq.worker.logproc")


class LogWriterService:
    """One log-writer process. ``await LogWriterService(settings).run()`` returns its exit
    code."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.metrics = LogMetrics(self.registry, bad_jobs_counter(self.registry))
        self.writer_id = f"logwriter-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        # One per partition, once run() has made them (none without DATABASE_URL).
        self.writers: list[LogWriter] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._exit_code = 0

    def stop(self) -> None:
        """Ask the process to finish its batches and exit (what SIGTERM does)."""
        self._stop.set()

    async def run(self) -> int:
        """Write until stopped; returns 0 after a clean stop, 1 if a writer died."""
        s = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        if s.producer.redis_notice:
            log.warning("redis_url_empty", detail=s.producer.redis_notice)
        producer = Producer(s.producer)
        try:
            await producer.check_partitions()
            await producer.open_log_store()
        except BaseException:
            await producer.close()
            raise
        redis, home = producer.redis, producer.partitions.home
        runner = None
        upkeep: asyncio.Task[None] | None = None
        try:
            store = producer.log_store
            if store is not None:
                self.writers = [
                    LogWriter(
                        redis,
                        keys,
                        store,
                        consumer=self.writer_id,
                        metrics=self.metrics,
                        claim_idle_ms=int(s.job_lock_timeout * 1000),
                        marker_ttl_s=s.producer.idempotency_window,
                    )
                    for keys in producer.partitions.all
                ]
                for writer in self.writers:
                    await writer.start()
                self._tasks = [asyncio.create_task(w.run(self._stop)) for w in self.writers]
                upkeep = asyncio.create_task(keep_partitions(store, s.producer.delivery_retention))

            async def ready() -> tuple[bool, dict[str, object]]:
                redis_ok = await answers(lambda: ping(redis, home.prefix))
                details: dict[str, object] = {"redis": redis_ok, "log_store": self._state()}
                if self.writers:
                    details["log_outbox"] = self.metrics.waiting
                ok = redis_ok and self._healthy() and self._state() == STORE_OK
                return ok, details

            runner = await serve_probes(
                s.metrics_host, s.metrics_port, self.registry, self._healthy, ready
            )
            if store is None:
                log.warning(
                    "log_writer_idle",
                    hint="DATABASE_URL is empty: the delivery log stays in Redis and there "
                    "is nothing to write; this process waits until stopped",
                )
            log.info(
                "log_writer_started",
                version=__version__,
                writer_id=self.writer_id,
                partitions=len(self.writers),
                metrics_port=s.metrics_port,
            )
            await self._watch(producer)
        finally:
            await self._finish()
            if upkeep is not None:
                await cancel_until_done(upkeep)
            if self.writers:
                with contextlib.suppress(Exception):  # Redis gone: its beat goes stale
                    await leave(redis, home, self.writer_id)
            await producer.close()
            if runner is not None:
                await runner.cleanup()
            log.info("log_writer_stopped", exit_code=self._exit_code)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return self._exit_code

    def _on_signal(self, sig: signal.Signals) -> None:
        self.stop()
        log.info("signal_received", signal=sig.name)

    def _healthy(self) -> bool:
        return all(not task.done() for task in self._tasks) and not self._stop.is_set()

    def _state(self) -> str:
        """``/readyz``'s ``log_store``: ``ok``, ``failing`` or ``none`` (no DATABASE_URL)."""
        return writers_state(self.writers) if self.writers else NO_STORE

    async def _watch(self, producer: Producer) -> None:
        """Until stopped: tell the workers every :data:`BEAT_S` that this process writes
        (and whether it fails), and stop with exit status 1 when a writer has died."""
        beat_failed = False
        while not self._stop.is_set():
            if not self._healthy():
                log.error("log_writer_died", hint="the supervisor should restart this process")
                self._exit_code = 1
                self.stop()
                return
            if self.writers:
                try:
                    failing = self._state() == STORE_FAILING
                    await beat(producer.redis, producer.partitions.home, self.writer_id, failing)
                    beat_failed = False
                except Exception as exc:  # Redis down: said once, the writers say more
                    if not beat_failed:
                        log.warning("log_writer_beat_failed", error=str(exc) or type(exc).__name__)
                    beat_failed = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), BEAT_S)

    async def _finish(self) -> None:
        """Let the writers end their batches within ``SHUTDOWN_GRACE``, then cancel them
        (what they had not written waits in the outbox, pending, for a writer to take)."""
        self._stop.set()
        if not self._tasks:
            return
        started = time.monotonic()
        _done, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace)
        if pending:
            log.warning("drain_timeout", grace_s=self.settings.shutdown_grace)
        for task in self._tasks:
            await cancel_until_done(task)
        log.info("drained", seconds=round(time.monotonic() - started, 3))
