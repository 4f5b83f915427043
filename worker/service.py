"""A worker process: queue loops, HTTP sender, metrics server, housekeeping, shutdown.

Lifecycle: everything is created in :meth:`WorkerService.run`, inside the event
loop, and closed there. SIGTERM or SIGINT stops intake, gives in-flight attempts
``SHUTDOWN_GRACE`` seconds, then cancels what is left (a cancelled attempt is not
recorded, so another worker makes it again: nothing is lost) and exits 0. If a
queue loop dies, ``/healthz`` turns 503 and the process exits 1 so that its
supervisor restarts it. On a Redis that may evict keys it does not start
(:mod:`producer.redis_guard`), and stops taking jobs while one is found so later. With
``DATABASE_URL`` set it does not start on a schema older than its own (exit status 2,
naming ``cliq-webhooks migrate``) nor on a database it cannot reach (exit status 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from bullmq import Worker

from producer.context import Producer
from producer.fields import DELIVERY_FIELDS
from producer.jobs import QueueOptions, ready_item
from producer.keys import (
    DELIVERY_QUEUE,
    NOTIFICATION_QUEUE,
    OPERATIONS_QUEUE,
    RETRY_QUEUE,
    Keys,
)
from producer.pausing import PauseEvents
from producer.redis.clients import bullmq_connection, ping
from producer.redis_guard import RedisGuard
from producer.totals import hot_totals
from worker import __version__
from worker.lanes import Lane, Shared, build_lane
from worker.limits import STALLED_AFTER_S
from worker.logwatch import LogWatch
from worker.logwriter import LogWriter, keep_partitions
from worker.loops import cancel_until_done
from worker.metrics import Metrics
from worker.notify import Notifier
from worker.operations import (
    OperationsPublisher,
    check_operations_destination,
    register_operations_endpoint,
)
from worker.probes import answers, serve_probes
from worker.request import user_agent
from worker.sender import Sender
from worker.settings import WorkerSettings
from worker.slots import Slots
from worker.stalls import Stalls

log = structlog.get_logger("cliq.worker.service")

HOUSEKEEPING_INTERVAL_S = 2.0
# Outbox members younger than this are still being dispatched by whoever wrote them.
OUTBOX_GRACE_S = 5.0
NOTIFICATION_CONCURRENCY = 4


class WorkerService:
    """One worker process. ``await WorkerService(settings).run()`` returns its exit code."""

    def __init__(self, settings: WorkerSettings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.keys = Keys(settings.producer.key_prefix)
        # Told of automatic disables and full paused backlogs (the operational webhooks).
        # Told of automatic disables and full paused backlogs; None: the producer's
        # (a log line, and the operational event when OPERATIONS_WEBHOOK_URL is set).
        self.pause_events: PauseEvents | None = None
        self._stop = asyncio.Event()
        self._exit_code = 0
        self._queue_workers: list[Worker] = []
        self._loops: list[asyncio.Task[None]] = []
        self._pickups: list[asyncio.Task[None]] = []
        # Its parts per partition, once run() has made them (worker/lanes.py).
        self.lanes: list[Lane] = []
        self._intake_stopped = False
        # Its Redis checks (producer.redis_guard), once run() has made them.
        self.guard: RedisGuard | None = None
        # Partition 0's log outbox writer, with DATABASE_URL and LOG_WRITER=worker, once
        # run() has made it.
        self.log_writer: LogWriter | None = None
        # What it knows of the delivery log's writing, with DATABASE_URL (worker/logwatch.py).
        self.log_watch: LogWatch | None = None
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    def stop(self) -> None:
        """Ask the worker to drain and exit (what SIGTERM does)."""
        self._stop.set()

    async def run(self) -> int:
        """Run until stopped; returns 0 after a clean stop, 1 if a queue loop died."""
        s = self.settings
        # Before anything is started that a refusal would have to undo.
        if s.operations_webhook_url:
            await check_operations_destination(
                s.operations_webhook_url, s.producer.destination_policy
            )
        self.handle_signals()
        if s.producer.redis_notice:
            log.warning("redis_url_empty", detail=s.producer.redis_notice)
        # The producer's parts over one Redis: the registry, the dispatcher, the secret box.
        producer = Producer(
            s.producer, QueueOptions(notification_backoff_ms=int(s.notify_retry_base * 1000))
        )
        guard = RedisGuard(
            producer.redis,
            producer.partitions.all,
            self.metrics.redis,
            allow_evicting=s.producer.allow_evicting_redis,
        )
        try:
            await guard.start()
            await producer.check_partitions()
            await producer.open_log_store()
        except BaseException:
            await producer.close()
            raise
        self.guard = guard
        redis, registry = producer.redis, producer.endpoints
        pause_events = self.pause_events or producer.publisher.pause_events
        operations = bool(s.operations_webhook_url)
        if operations:
            try:
                await register_operations_endpoint(
                    registry, s.operations_webhook_url, s.operations_webhook_secret
                )
            except BaseException:
                await producer.close()
                raise
        if not producer.secret_box.encrypting:
            log.warning("secrets_not_encrypted", hint="set SECRET_ENCRYPTION_KEY")
        sender = Sender(
            timeout_s=s.delivery_timeout,
            max_connections=s.worker_concurrency,
            policy=s.producer.destination_policy,
            user_agent=user_agent(),
        )
        await sender.start()
        shared = Shared(
            settings=s,
            producer=producer,
            worker_id=self.worker_id,
            sender=sender,
            slots=Slots(s.worker_concurrency),
            metrics=self.metrics,
            pause_events=pause_events,
            operations=operations,
            job_concurrency=self._job_concurrency(),
            stalls=Stalls.of(s.stalled_budget, STALLED_AFTER_S),
        )
        # One lane per partition (worker/lanes.py): every worker serves every partition.
        self.lanes = lanes = [build_lane(shared, k) for k in range(producer.partitions.count)]
        writers = [lane.log_writer for lane in lanes if lane.log_writer is not None]
        self.log_writer = writers[0] if writers else None
        for writer in writers:
            await writer.start()
        if producer.log_store is not None:
            self.log_watch = LogWatch(
                redis,
                producer.partitions.all,
                self.metrics.log,
                s.log_outbox_max,
                writers,
            )
        notifier = Notifier(
            registry=registry,
            smtp_url=s.smtp_url,
            sender=s.notify_from,
            outbox_dir=s.notify_outbox,
            metrics=self.metrics,
            public_url=s.public_url,
        )
        operational = OperationsPublisher(
            registry=registry,
            publisher=producer.publisher,
            metrics=self.metrics,
            public_url=s.public_url,
        )
        runner = await serve_probes(
            s.metrics_host,
            s.metrics_port,
            self.metrics.registry,
            self._healthy,
            lambda: self._readiness(lambda: ping(redis, self.keys.prefix), guard),
        )
        housekeeping = asyncio.create_task(self._housekeeping(producer, guard))
        side_loops = [
            task
            for lane in lanes
            for task in (
                asyncio.create_task(lane.limiter.maintain()),
                asyncio.create_task(lane.test_sends.run()),
                asyncio.create_task(lane.resumer.run(self._stop)),
                *([asyncio.create_task(lane.disabler.run(self._stop))] if lane.disabler else []),
            )
        ]
        writing = [asyncio.create_task(writer.run()) for writer in writers]
        if writers and producer.log_store is not None:
            # Else the log-writer processes keep the partitions (worker/logproc.py).
            writing.append(
                asyncio.create_task(
                    keep_partitions(producer.log_store, s.producer.delivery_retention)
                )
            )
        self._queue_workers = [
            self._queue_worker(queue, lane.processor.process, self._job_concurrency(), lane.keys)
            # Both queues share the processor's HTTP slots; the retry queue's loop only
            # keeps due retries from waiting behind the backlog of new deliveries.
            for lane in lanes
            for queue in (DELIVERY_QUEUE, RETRY_QUEUE)
        ]
        self._queue_workers.append(
            self._queue_worker(NOTIFICATION_QUEUE, notifier.process, NOTIFICATION_CONCURRENCY)
        )
        if operations:
            # Without OPERATIONS_WEBHOOK_URL its jobs wait for a worker that has it.
            self._queue_workers.append(
                self._queue_worker(OPERATIONS_QUEUE, operational.process, NOTIFICATION_CONCURRENCY)
            )
        for queue_worker in self._queue_workers:
            await precise_waits(queue_worker)
        # Our own tasks around bullmq's loops: when one ends while we are not
        # stopping, the loop died (bullmq only prints the traceback).
        self._loops = [asyncio.create_task(w.run()) for w in self._queue_workers]
        self._pickups = [asyncio.create_task(lane.pickup.run()) for lane in lanes]
        self.metrics.worker_up.set(1)
        log.info(
            "worker_started",
            version=__version__,
            concurrency=s.worker_concurrency,
            retry_schedule=str(s.retry_schedule),
            metrics_port=s.metrics_port,
            notify_outbox=None if s.smtp_url else s.notify_outbox,
            operations_webhook_url=s.operations_webhook_url or None,
        )
        try:
            await self._stop.wait()
        finally:
            self.metrics.worker_up.set(0)
            grace_ends = time.monotonic() + s.shutdown_grace
            for task in self._pickups:
                await cancel_until_done(task)
            await asyncio.gather(
                self._drain(), *(lane.pickup.drain(s.shutdown_grace) for lane in lanes)
            )
            # Requests that batches left behind (stalled endpoints) get what is left; the
            # claims of those cancelled are given back with the rest.
            for lane in lanes:
                await lane.processor.close(grace_ends - time.monotonic())
                await lane.pickup.close()
            for task in (housekeeping, *side_loops):
                await cancel_until_done(task)
            # Whatever the writer had not written yet waits in the log outbox for the next.
            for task in writing:
                await cancel_until_done(task)
            for lane in lanes:
                await lane.test_sends.close()
                with contextlib.suppress(Exception):  # unreturned leases expire on their own
                    await lane.limiter.close()
            await sender.close()
            await producer.close()
            if runner is not None:
                await runner.cleanup()
            log.info("worker_stopped", exit_code=self._exit_code)
            # A later worker in this process (the demo's kept one) must get the signals.
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return self._exit_code

    def _job_concurrency(self) -> int:
        # Jobs carry up to BATCH_SIZE deliveries: a few at a time keep the HTTP slots
        # busy. More only add empty fetches (bullmq starts one per free slot).
        return max(4, self.settings.worker_concurrency // 12)

    def _queue_worker(
        self,
        queue: str,
        process: Callable[[Any, str], Awaitable[Any]],
        concurrency: int,
        keys: Keys | None = None,
    ) -> Worker:
        """A bullmq worker of ``queue`` in the partition of ``keys`` (default: partition 0,
        where the notification and operations queues are)."""
        lock_ms = int(self.settings.job_lock_timeout * 1000)
        return Worker(
            queue,
            process,
            {
                "connection": bullmq_connection(self.settings.producer.effective_redis_url),
                "prefix": (keys or self.keys).prefix,
                "concurrency": concurrency,
                "lockDuration": lock_ms,
                "stalledInterval": lock_ms,
                # bullmq's default (1) fails a job for good the second time its worker
                # dies; a stall never costs a delivery attempt here, so allow many.
                "maxStalledCount": 100,
                "runRetryDelay": 1000,
                "removeOnComplete": True,
                "removeOnFail": {"age": 7 * 24 * 3600},
                "autorun": False,
            },
        )

    async def _drain(self) -> None:
        """Stop taking jobs; give in-flight ones the grace period, then cancel them."""
        started = time.monotonic()
        closing = [asyncio.ensure_future(w.close()) for w in self._queue_workers]
        if not closing:
            return
        _done, pending = await asyncio.wait(closing, timeout=self.settings.shutdown_grace)
        if pending:
            log.warning("drain_timeout", grace_s=self.settings.shutdown_grace)
            await asyncio.gather(
                *(w.close(force=True) for w in self._queue_workers), return_exceptions=True
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*self._loops, return_exceptions=True)
        log.info("drained", seconds=round(time.monotonic() - started, 3))

    def handle_signals(self) -> None:
        """Make SIGTERM and SIGINT call :meth:`stop` from now until :meth:`run` ends
        (``run`` does it first; call it earlier when a signal may come sooner)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self.stop()
        log.info("signal_received", signal=sig.name)

    def _alive(self) -> bool:
        loops = [*self._loops, *self._pickups]
        return all(not loop.done() for loop in loops)

    def _healthy(self) -> bool:
        # Not before the queue loops run: a supervisor would count a starting worker.
        return bool(self._loops) and self._alive() and not self._stop.is_set()

    async def _housekeeping(self, producer: Producer, guard: RedisGuard) -> None:
        """Check Redis (policy, generation), sweep every partition's outbox, give back dead
        workers' claims in each, refresh gauges, watch the loops."""
        while not self._stop.is_set():
            self.metrics.in_flight.set(sum(lane.processor.in_flight for lane in self.lanes))
            if not self._alive():
                log.error("queue_loop_died", hint="the supervisor should restart this process")
                self._exit_code = 1
                self.stop()
                return
            try:
                await guard.check()
                if self.log_watch is not None:
                    await self.log_watch.refresh()
                await self._follow_guard(guard)
                for lane in self.lanes:
                    swept = await lane.dispatcher.sweep(OUTBOX_GRACE_S)
                    if swept:
                        log.warning("outbox_swept", jobs=swept, partition=lane.index)
                    returned = await lane.pickup.reclaim()
                    if returned:
                        log.warning(
                            "claims_returned",
                            entries=returned,
                            reason="worker gone",
                            partition=lane.index,
                        )
                await self._refresh_gauges(producer)
            except Exception as exc:  # Redis down: report and keep trying
                log.warning("housekeeping_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), HOUSEKEEPING_INTERVAL_S)

    async def _follow_guard(self, guard: RedisGuard) -> None:
        """Take no jobs while Redis may evict keys (and that is not allowed), or while the
        log outbox is full; take them again once that is over. Jobs in progress finish."""
        reason = guard.refusal or self._log_outbox_full()
        stop = reason is not None
        if stop:
            for lane in self.lanes:
                lane.pickup.pause()
            for queue_worker in self._queue_workers:
                await queue_worker.pause(do_not_wait_active=True)
        else:
            for lane in self.lanes:
                lane.pickup.resume()
            for queue_worker in self._queue_workers:
                queue_worker.resume()
        if stop != self._intake_stopped:
            self._intake_stopped = stop
            if stop:
                log.error("intake_stopped", reason=reason)
            else:
                log.warning("intake_resumed")

    async def _refresh_gauges(self, producer: Producer) -> None:
        """The queue and state gauges, each summed over the partitions (producer.totals)."""
        redis = producer.redis
        states = ("wait", "active", "delayed", "failed", "prioritized")
        totals = await hot_totals(redis, producer.partitions, producer.dispatchers, states)
        for state in ("queued", "scheduled"):
            self.metrics.queue_depth.labels(state).set(totals.stats.get(state, 0))
        self.metrics.poll_backlog.set(totals.stats.get("polling", 0))
        self.metrics.poll_dropped.set(totals.stats.get("poll_dropped", 0))
        self.metrics.endpoints_failing.set(totals.failing)
        for name, counts in totals.jobs.items():
            for state, value in counts.items():
                self.metrics.queue_jobs.labels(name, state).set(value)
        stamps = []
        for keys in producer.partitions.all:
            oldest = await redis.lindex(keys.queue_key(DELIVERY_QUEUE, "wait"), -1)
            if oldest is not None:
                job = keys.queue_key(DELIVERY_QUEUE, str(oldest))
                stamps.append(await redis.hget(job, "timestamp"))
            # Items on the ready list are waiting deliveries too (their hash has created ms).
            ready = await redis.lindex(keys.ready, 0)
            if ready is not None:
                with contextlib.suppress(ValueError):
                    item = ready_item(str(ready))
                    stamps.append(
                        await redis.hget(keys.delivery(item.delivery_id), DELIVERY_FIELDS.created)
                    )
        ages = [time.time() - int(stamp) / 1000 for stamp in stamps if stamp is not None]
        self.metrics.oldest_waiting.set(max([0.0, *ages]))

    def _log_outbox_full(self) -> str | None:
        return self.log_watch.full() if self.log_watch is not None else None

    async def _readiness(
        self, ping: Callable[[], Awaitable[Any]], guard: RedisGuard
    ) -> tuple[bool, dict[str, object]]:
        """/readyz: ready while Redis answers and does not evict keys, the loops run and
        the log outbox is not full; the details tell of the delivery log's writing, and
        ``warnings`` of anything else amiss."""
        redis_ok = await answers(ping)
        refused = guard.refusal or self._log_outbox_full()
        ok = redis_ok and self._alive() and not self._stop.is_set() and not refused
        details: dict[str, object] = {"redis": redis_ok}
        if self.log_watch is not None:
            details.update(self.log_watch.details())
        warnings = guard.warnings()
        if warnings:
            details["warnings"] = warnings
        return ok, details


async def precise_waits(queue_worker: Worker) -> None:
    """Let bullmq wait for a delayed job to the millisecond.

    bullmq's Python port learns the server's version (Redis >= 6 takes fractional
    blocking timeouts) on its main connection only; on the blocking one it rounds every
    wait up to whole seconds, which would start a due retry up to 1 s late.
    """
    if queue_worker.blockingRedisConnection is not None:
        await queue_worker.blockingRedisConnection.getRedisVersion()
