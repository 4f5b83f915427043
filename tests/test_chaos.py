"""Chaos: workers are SIGKILLed at random while thousands of deliveries flow; none is lost.

Three real receivers, three ``python -m worker`` subprocesses with a 2 s job lock (a dead
worker's jobs are taken over quickly) and a producer that batches 10 deliveries per job.
While events are published in chunks, a chaos task SIGKILLs a random worker every
0.5-1.5 s (seeded: ``CHAOS_SEED`` picks another run) and starts replacements, keeping
1-3 alive. Afterwards every delivery must reach its receiver at least once and end
``delivered``, with no job failed, stuck or left in the outbox. The figures (kills,
restarts, duplicates, losses) are printed and written to ``chaos-report.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.deliveries import Delivery, DeliveryState
from producer.endpoint import Endpoint
from producer.events import Event, parse_event
from producer.settings import ProducerSettings

from harness import Receiver, ReceiverFactory, ScriptedResponse
from support import WorkerProcess, delivery_job_counts, worker_env

SEED = int(os.environ.get("CHAOS_SEED", "20251123"))
EVENTS = 1500
RECEIVERS = 3
CHUNK_EVENTS = 50  # 30 chunks
PUBLISH_PAUSE_S = 0.25  # between chunks: publishing spans the chaos window
BATCH_SIZE = 10  # deliveries per queue job: kills land mid-batch
MAX_IN_FLIGHT = 25  # per endpoint, across workers
RECEIVER_DELAY_S = (0.0, 0.04)  # answers take a moment: attempts are in flight when killed
INITIAL_WORKERS = 3
FINAL_WORKERS = 2
MAX_KILLS = 8
CHAOS_WINDOW_S = 20.0
KILL_PAUSE_S = (0.5, 1.5)
CONVERGE_DEADLINE_S = 90.0
POLL_INTERVAL_S = 0.25
OPEN_JOB_STATES = ("wait", "active", "delayed", "prioritized", "paused", "waiting-children")
WORKER_OVERRIDES = {
    "JOB_LOCK_TIMEOUT": "2",
    "WORKER_CONCURRENCY": "24",
    "BATCH_SIZE": str(BATCH_SIZE),
    "SHUTDOWN_GRACE": "5",
    # Every delivery stays in Redis's log, to be checked afterwards (the default keeps 1000
    # an endpoint; each receiver's endpoint gets EVENTS).
    "LOG_KEEP_PER_ENDPOINT": str(EVENTS),
}


@dataclass
class Kill:
    """One SIGKILL, as the report shows it."""

    at_s: float
    pid: int
    age_s: float
    attempts_logged: int
    alive_after_kill: int
    alive_after_restart: int = 0


@dataclass
class Crew:
    """The worker subprocesses of one test, each ended by its own PID."""

    redis_url: str
    folder: Path
    processes: list[WorkerProcess] = field(default_factory=list)
    alive: list[WorkerProcess] = field(default_factory=list)
    started_at: dict[int, float] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)
    restarts: int = 0

    def spawn(self) -> WorkerProcess:
        env = worker_env(
            self.redis_url, NOTIFY_OUTBOX=str(self.folder / "outbox"), **WORKER_OVERRIDES
        )
        process = WorkerProcess(env, self.folder / f"worker-{len(self.processes)}.log")
        self.processes.append(process)
        self.alive.append(process)
        self.started_at[process.pid] = time.monotonic()
        return process

    async def kill(self, victim: WorkerProcess, t0: float) -> None:
        """SIGKILL ``victim`` (a crash: no drain, no lease hand-back) and reap it."""
        self.alive.remove(victim)
        victim.signal(signal.SIGKILL)
        code = await victim.wait(10)
        assert code == -signal.SIGKILL, f"worker {victim.pid} exited {code}, not by SIGKILL"
        self.kills.append(
            Kill(
                at_s=round(time.monotonic() - t0, 3),
                pid=victim.pid,
                age_s=round(time.monotonic() - self.started_at[victim.pid], 3),
                attempts_logged=count_log_events(victim, "delivery_attempt"),
                alive_after_kill=len(self.alive),
            )
        )

    def teardown(self) -> None:
        for process in self.processes:
            process.kill()  # SIGKILL by its own PID, only if it still runs


def count_log_events(worker: WorkerProcess, name: str) -> int:
    """How many JSON log lines of ``worker`` have event ``name`` (a torn last line is skipped)."""
    count = 0
    for line in worker.log_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            if json.loads(line).get("event") == name:
                count += 1
        except ValueError:
            continue
    return count


@pytest.fixture
def crew(redis_url: str, tmp_path: Path) -> Iterator[Crew]:
    workers = Crew(redis_url, tmp_path)
    try:
        yield workers
    finally:
        workers.teardown()


@pytest.fixture
async def producer(redis_url: str) -> AsyncIterator[Producer]:
    settings = ProducerSettings.from_env(
        {"REDIS_URL": redis_url, "BATCH_SIZE": str(BATCH_SIZE), "ALLOW_PRIVATE_DESTINATIONS": "1"}
    )
    async with Producer(settings) as p:
        yield p


async def chaos(crew: Crew, rng: random.Random, t0: float) -> None:
    """SIGKILL a random worker every 0.5-1.5 s and start replacements (1-3 stay alive).

    Bounded: at most ``MAX_KILLS`` kills, none after ``CHAOS_WINDOW_S``.
    """
    deadline = time.monotonic() + CHAOS_WINDOW_S
    while len(crew.kills) < MAX_KILLS:
        await asyncio.sleep(rng.uniform(*KILL_PAUSE_S))  # the chaos's own rhythm
        if time.monotonic() >= deadline:
            return
        await crew.kill(rng.choice(crew.alive), t0)
        spawn = 1
        if crew.alive and rng.random() < 0.25:
            spawn = 0  # run short-handed for a while
        elif len(crew.alive) + spawn < INITIAL_WORKERS and rng.random() < 0.5:
            spawn += 1  # catch up
        for _ in range(spawn):
            crew.spawn()
            crew.restarts += 1
        crew.kills[-1].alive_after_restart = len(crew.alive)


def make_events(producer: Producer, rng: random.Random) -> list[Event]:
    types = ["issue.created", "issue.updated", "comment.created", "project.updated"]
    return [
        parse_event(
            {"type": rng.choice(types), "workspace_id": "ws_chaos", "data": {"n": n}},
            producer.catalogue,
            max_payload_bytes=256 * 1024,
        )
        for n in range(EVENTS)
    ]


async def publish_all(producer: Producer, events: list[Event]) -> None:
    for start in range(0, len(events), CHUNK_EVENTS):
        chunk = events[start : start + CHUNK_EVENTS]
        results = await producer.publisher.publish_many(chunk)
        for result in results:
            assert result.deliveries == RECEIVERS, result
            assert not result.duplicate, result
        if start + CHUNK_EVENTS < len(events):
            await asyncio.sleep(PUBLISH_PAUSE_S)  # pacing, not waiting for anything


@dataclass
class Snapshot:
    """Where the system stands, as the convergence poll sees it."""

    stats: dict[str, int]
    outbox: int
    open_jobs: dict[str, int]
    missing: dict[str, int]  # endpoint id -> published event ids its receiver has not seen

    def settled(self, total: int) -> bool:
        return (
            self.stats.get("delivered", 0) >= total
            and self.stats.get("queued", 0) == 0
            and self.stats.get("scheduled", 0) == 0
            and self.outbox == 0
            and not any(self.open_jobs.values())
            and not any(self.missing.values())
        )

    def describe(self) -> str:
        return (
            f"stats={self.stats} outbox={self.outbox} open_jobs={self.open_jobs} "
            f"missing_per_endpoint={self.missing}"
        )


def seen_event_ids(receiver: Receiver) -> set[str]:
    return {cast(str, request.json()["id"]) for request in receiver.received}


async def snapshot(
    redis: aioredis.Redis,
    producer: Producer,
    targets: list[tuple[Endpoint, Receiver]],
    published: set[str],
) -> Snapshot:
    raw = cast(dict[str, str], await redis.hgetall(producer.keys.stats))
    counts = await delivery_job_counts(producer, *OPEN_JOB_STATES)
    return Snapshot(
        stats={name: int(value) for name, value in raw.items()},
        outbox=int(await redis.zcard(producer.keys.outbox)),
        open_jobs={state: int(n) for state, n in counts.items()},
        missing={ep.id: len(published - seen_event_ids(rcv)) for ep, rcv in targets},
    )


async def load_deliveries(producer: Producer, event_ids: list[str]) -> list[Delivery]:
    deliveries: list[Delivery] = []
    for start in range(0, len(event_ids), 100):
        chunk = event_ids[start : start + 100]
        for found in await asyncio.gather(*(producer.deliveries.for_event(e) for e in chunk)):
            deliveries.extend(found)
    return deliveries


@pytest.mark.timeout(180)
async def test_random_sigkills_lose_no_delivery(
    producer: Producer,
    redis: aioredis.Redis,
    receiver_factory: ReceiverFactory,
    crew: Crew,
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    targets: list[tuple[Endpoint, Receiver]] = []
    for _ in range(RECEIVERS):
        receiver = await receiver_factory()
        # Quick answers with a little random delay, then plain 200s for any extra request.
        receiver.script(
            *(
                ScriptedResponse(status=200, delay_s=rng.uniform(*RECEIVER_DELAY_S))
                for _ in range(EVENTS)
            )
        )
        endpoint = await producer.endpoints.create(
            workspace_id="ws_chaos",
            url=receiver.url(),
            events=["*"],
            owner_email="chaos@example.com",
            max_in_flight=MAX_IN_FLIGHT,
        )
        targets.append((endpoint, receiver))
    events = make_events(producer, rng)
    published = {event.id for event in events}
    total = EVENTS * RECEIVERS

    t0 = time.monotonic()
    for _ in range(INITIAL_WORKERS):
        crew.spawn()
    chaos_task = asyncio.create_task(chaos(crew, rng, t0))
    try:
        await publish_all(producer, events)
        publish_s = time.monotonic() - t0
        await asyncio.wait_for(asyncio.shield(chaos_task), CHAOS_WINDOW_S + 15)
    finally:
        if not chaos_task.done():
            chaos_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos_task
    chaos_s = time.monotonic() - t0
    while len(crew.alive) < FINAL_WORKERS:
        crew.spawn()
        crew.restarts += 1

    # Converge: poll with a deadline until everything is delivered and nothing is open.
    deadline = time.monotonic() + CONVERGE_DEADLINE_S
    state = await snapshot(redis, producer, targets, published)
    while not state.settled(total) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL_S)
        state = await snapshot(redis, producer, targets, published)
    converge_s = time.monotonic() - t0

    # Tally every request against the stored deliveries.
    deliveries = await load_deliveries(producer, [event.id for event in events])
    by_id = {d.id: d for d in deliveries}
    requests = 0
    per_delivery: Counter[str] = Counter()
    seen_at: dict[str, set[str]] = {endpoint.id: set() for endpoint, _ in targets}
    mismatched: list[str] = []
    for endpoint, receiver in targets:
        for request in receiver.received:
            requests += 1
            delivery_id = request.headers["X-Cliq-Delivery"]
            per_delivery[delivery_id] += 1
            seen_at[endpoint.id].add(delivery_id)
            stored = by_id.get(delivery_id)
            if (
                stored is None
                or stored.endpoint_id != endpoint.id
                or stored.event_id != request.json()["id"]
            ):
                mismatched.append(delivery_id)
    lost = [d.id for d in deliveries if d.id not in seen_at[d.endpoint_id]]
    not_delivered = Counter(d.state.value for d in deliveries if d.state != DeliveryState.DELIVERED)
    failed = (await delivery_job_counts(producer, "failed"))["failed"]
    logs = [p.log_text() for p in crew.processes]

    # The survivors drain and exit 0 on SIGTERM.
    survivors = list(crew.alive)
    for worker in survivors:
        worker.signal(signal.SIGTERM)
    exit_codes = [await worker.wait(30) for worker in survivors]
    crew.alive.clear()

    report: dict[str, Any] = {
        "seed": SEED,
        "events": EVENTS,
        "endpoints": RECEIVERS,
        "deliveries": total,
        "deliveries_stored": len(deliveries),
        "kills": len(crew.kills),
        "restarts": crew.restarts,
        "worker_processes": len(crew.processes),
        "requests": requests,
        "unique_deliveries_received": len(per_delivery),
        "duplicates": requests - len(per_delivery),
        "max_requests_per_delivery": max(per_delivery.values(), default=0),
        "losses": len(lost),
        "lost_sample": lost[:5],
        "missing_event_ids_per_endpoint": state.missing,
        "mismatched_requests": len(mismatched),
        "not_delivered": dict(not_delivered),
        "attempts_recorded": sum(len(d.attempts) for d in deliveries),
        "deliveries_with_retries": sum(1 for d in deliveries if len(d.attempts) > 1),
        "stats": state.stats,
        "outbox": state.outbox,
        "open_jobs": state.open_jobs,
        "failed_jobs": failed,
        "survivor_exit_codes": exit_codes,
        "tracebacks_in_worker_logs": sum(log.count("Traceback") for log in logs),
        "publish_s": round(publish_s, 2),
        "chaos_s": round(chaos_s, 2),
        "converged_at_s": round(converge_s, 2),
        "kill_log": [vars(kill) for kill in crew.kills],
        "worker_logs": str(tmp_path),
    }
    report_path = tmp_path / "chaos-report.json"
    report_path.write_text(json.dumps(report, indent=2))
    summary = (
        f"chaos seed={SEED}: deliveries={total} kills={report['kills']} "
        f"restarts={report['restarts']} requests={requests} "
        f"duplicates={report['duplicates']} losses={report['losses']} "
        f"failed_jobs={failed} converged_at={report['converged_at_s']}s"
    )
    print(f"\n{summary}\nchaos report: {report_path}")

    assert len(deliveries) == total, summary
    assert report["kills"] >= 5, f"too few kills to call this chaos: {summary}"
    # A repeated request means a kill landed between a POST and its record: mid-batch.
    assert report["duplicates"] > 0, f"no kill interrupted an attempt in flight: {summary}"
    assert state.settled(total), f"did not converge: {state.describe()}; {summary}"
    assert report["losses"] == 0, f"lost {lost[:5]}: {summary}"
    assert not mismatched, f"requests not matching their delivery {mismatched[:5]}: {summary}"
    assert not not_delivered, f"deliveries not delivered {dict(not_delivered)}: {summary}"
    assert state.stats.get("delivered") == total, f"stats {state.stats}: {summary}"
    assert state.stats.get("queued", 0) + state.stats.get("scheduled", 0) == 0, summary
    assert state.stats.get("dead", 0) == 0, summary
    assert failed == 0, f"the stall detector failed {failed} job(s): {summary}"
    assert state.outbox == 0, summary
    assert exit_codes == [0] * len(survivors), f"survivors exited {exit_codes}: {summary}"
