"""How much work each scenario does: the default (~4 min) and ``--quick`` (~1 min) plans."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark invocation."""

    runs: int
    # raw-aiohttp: requests per run.
    raw_requests: int
    # worker-*: deliveries queued before the workers start, spread over this many
    # endpoints of one workspace (so each event fans out to all of them).
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
    # HTTP requests (raw-aiohttp) and WORKER_CONCURRENCY (workers) in flight.
    concurrency: int = 200


FULL = Plan(
    runs=3,
    raw_requests=40_000,
    backlog_deliveries=40_000,
    backlog_endpoints=10,
    publish_events=40_000,
    wide_fanout=100,
    wide_events=200,
    latency_rate=500.0,
    latency_seconds=10.0,
)

QUICK = Plan(
    runs=1,
    raw_requests=20_000,
    backlog_deliveries=20_000,
    backlog_endpoints=10,
    publish_events=20_000,
    wide_fanout=100,
    wide_events=200,
    latency_rate=500.0,
    latency_seconds=5.0,
)
