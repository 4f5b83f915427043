"""How much work each scenario does: the default (~4 min) and ``--quick`` (~1 min) plans."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark invocation."""

    runs: int
    # raw-signer, raw-aiohttp: requests per run.
    raw_requests: int
    # worker-*: deliveries queued before the workers start, spread over this many
    # endpoints of one workspace (so each event fans out to all of them). retry-timing
    # uses the same backlog as its load, node-bullmq as many jobs (to the same ten paths).
    backlog_deliveries: int
    backlog_endpoints: int
    # publish-batch: events published with fan-out 1, and events published with
    # fan-out 100 for the memory figure.
    publish_events: int
    wide_fanout: int
    wide_events: int
    # latency: offered load, one event per publish call.
    latency_rate: float
    latency_seconds: float
    # isolation: events fanned out to 10 endpoints (one of which hangs in the second run).
    isolation_events: int
    # backlog: deliveries pending before one worker drains them (--backlog N).
    backlog_size: int
    # retry-timing: deliveries to the endpoint answering 503, spread over the backlog.
    retry_deliveries: int
    # Rounds in which the slow scenarios (isolation, backlog, retry-timing) run: they
    # compare nothing across rounds and would make the default run twice as long.
    slow_runs: int = 1
    # HTTP requests in flight (raw-signer, raw-aiohttp), BullMQ concurrency (node-bullmq)
    # and WORKER_CONCURRENCY (workers): --concurrency.
    concurrency: int = 200
    # fifo: deliveries to the FIFO endpoint (drained alone), and to the ordinary endpoint
    # (drained alone, then beside a busy FIFO endpoint).
    fifo_events: int = 1000
    fifo_parallel_events: int = 10_000


FULL = Plan(
    runs=3,
    raw_requests=40_000,
    backlog_deliveries=40_000,
    backlog_endpoints=10,
    publish_events=40_000,
    wide_fanout=100,
    wide_events=200,
    latency_rate=1000.0,
    latency_seconds=10.0,
    isolation_events=3_000,
    backlog_size=200_000,
    retry_deliveries=200,
)

QUICK = Plan(
    runs=1,
    raw_requests=20_000,
    backlog_deliveries=20_000,
    backlog_endpoints=10,
    publish_events=20_000,
    wide_fanout=100,
    wide_events=200,
    latency_rate=1000.0,
    latency_seconds=5.0,
    isolation_events=1_500,
    backlog_size=50_000,
    retry_deliveries=100,
    fifo_events=500,
    fifo_parallel_events=5000,
)
