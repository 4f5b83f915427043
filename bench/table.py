"""The one table the benchmark prints: which metric makes each row, and how it reads."""

from __future__ import annotations

from bench.fifo import HELD_DELAY_MS
from bench.results import Results
from bench.rows import Row, TableBuilder, number, percent
from bench.storerows import hot_path_rows, shard_rows


def cpu_notes(
    b: TableBuilder, scenario: str, parts: list[tuple[str, str]], prefix: str = ""
) -> str:
    """``cpu: worker 98% redis 13% ...``: median shares of a core, ``(label, name)`` each.

    ``prefix`` picks another run of the scenario (isolation's ``healthy_``).
    """
    shares = [f"{label} {percent(b.m(scenario, f'{prefix}cpu_{name}'))}" for label, name in parts]
    other = percent(b.m(scenario, f"{prefix}cpu_other"))
    return "cpu: " + " ".join([*shares, f"other {other}"])


# The processes of the one-worker scenarios, as cpu_notes wants them.
ONE_WORKER = [("worker", "worker0"), ("redis", "redis"), ("sink", "sink")]


# What one worker process is measured against (bench/peers.py), in the ratio column's order.
PEERS = ("node-bullmq", "raw-signer", "raw-aiohttp")
# Issue 17's targets for one worker process, as ratios to the peers.
TARGETS = "targets >= 1.00x node-bullmq, >= 0.80x raw-signer"


def ratios(
    b: TableBuilder, scenario: str, references: tuple[str, ...], metric: str = "rate"
) -> str:
    """``0.58x node-bullmq, 0.40x raw-signer``: the ratios to the references that ran."""
    found = (b.ratio(scenario, ref, ref, metric) for ref in references if ref != scenario)
    return ", ".join(text for text in found if text)


def efficiency(
    b: TableBuilder, scenario: str, references: tuple[str, ...] = ("raw-aiohttp",)
) -> str:
    """Deliveries per CPU-second of the delivering process(es), the CPU time per delivery
    (and Redis's, for the queues), and the per-CPU-second ratios to ``references``."""
    per_cpu_s = b.m(scenario, "per_cpu_s")
    cost = f"{number(1e6 / per_cpu_s)} µs/delivery"
    if b.has(scenario, "redis_us"):
        cost += f" + redis {number(b.m(scenario, 'redis_us'))} µs"
    text = f"{number(per_cpu_s / 1000, 1)}k/cpu-s ({cost})"
    if compared := ratios(b, scenario, references, "per_cpu_s"):
        text += f", per cpu-s {compared}"
    return text


def in_flight(b: TableBuilder, scenario: str) -> str:
    """``C=200``: requests in flight, or the worker's concurrency."""
    return f"C={number(b.m(scenario, 'concurrency'))}"


def peer_rows(b: TableBuilder) -> None:
    """The peers, then one and two worker processes measured against them."""
    clients = [("client", "client"), ("sink", "sink")]
    if b.ran("raw-signer"):
        b.add(
            "raw-signer",
            "rate",
            "deliveries/s",
            ratio="1.00x (ref)",
            notes=f"{in_flight(b, 'raw-signer')}, one X-Cliq-Signature, no queue; "
            f"{cpu_notes(b, 'raw-signer', clients)}; {efficiency(b, 'raw-signer', ())}",
        )
    if b.ran("raw-aiohttp"):
        b.add(
            "raw-aiohttp",
            "rate",
            "deliveries/s",
            ratio=ratios(b, "raw-aiohttp", ("raw-signer",)) or "1.00x (ref)",
            notes=f"{in_flight(b, 'raw-aiohttp')}, the worker's headers, no queue; "
            f"{cpu_notes(b, 'raw-aiohttp', clients)}; {efficiency(b, 'raw-aiohttp', ())}",
        )
    if b.ran("node-bullmq"):
        node = [("node", "worker0"), ("redis", "redis"), ("sink", "sink")]
        b.add(
            "node-bullmq",
            "rate",
            "deliveries/s",
            ratio=ratios(b, "node-bullmq", ("raw-signer",)),
            notes=f"{in_flight(b, 'node-bullmq')}, BullMQ Worker + node:http, one job per "
            f"delivery, no recording or logging; {cpu_notes(b, 'node-bullmq', node)}; "
            f"{efficiency(b, 'node-bullmq', ())}",
        )
    if b.ran("worker-1proc"):
        b.add(
            "worker-1proc",
            "rate",
            "deliveries/s",
            ratio=ratios(b, "worker-1proc", PEERS),
            notes=f"{in_flight(b, 'worker-1proc')}, {TARGETS}; "
            f"{cpu_notes(b, 'worker-1proc', ONE_WORKER)}; {efficiency(b, 'worker-1proc', PEERS)}",
        )
    if b.ran("worker-2proc"):
        workers = [("worker0", "worker0"), ("worker1", "worker1")]
        b.add(
            "worker-2proc",
            "rate",
            "deliveries/s",
            ratio=ratios(b, "worker-2proc", ("worker-1proc",)),
            notes=f"{in_flight(b, 'worker-2proc')}; "
            f"{cpu_notes(b, 'worker-2proc', [*workers, ('redis', 'redis'), ('sink', 'sink')])}; "
            f"{efficiency(b, 'worker-2proc')}",
        )


def build_rows(results: Results) -> list[Row]:
    """Every row, in the order of the scenarios in ``bench/README.md``."""
    b = TableBuilder(results)
    peer_rows(b)
    if b.ran("publish-batch"):
        cpu = cpu_notes(b, "publish-batch", [("producer", "bench"), ("redis", "redis")])
        b.add(
            "publish-batch",
            "rate",
            "events/s",
            notes=f"batches of 1000, fan-out 1; {cpu}",
        )
        b.add(
            "publish-batch",
            "bytes_fanout_1",
            "B/delivery",
            label="  memory fan-out 1",
            notes="Redis used_memory growth (client buffers excluded) / deliveries queued",
        )
        b.add(
            "publish-batch",
            "bytes_fanout_wide",
            "B/delivery",
            label="  memory fan-out 100",
            notes="the body is stored once per event, whatever its fan-out",
        )
    if b.ran("publish-api"):
        cpu = cpu_notes(b, "publish-api", [("api", "api"), ("client", "bench"), ("redis", "redis")])
        b.add(
            "publish-api",
            "rate",
            "events/s",
            ratio=b.ratio("publish-api", "publish-batch", "library"),
            notes=f"POST /v1/events, arrays of 1000, 2 in flight, fan-out 1; {cpu}",
        )
    if b.ran("latency"):
        cpu = cpu_notes(
            b,
            "latency",
            [("worker", "worker0"), ("publisher", "bench"), ("redis", "redis"), ("sink", "sink")],
        )
        offered = f"offered {number(b.m('latency', 'offered_rate'))} events/s, one per publish"
        cost = f"worker {number(b.m('latency', 'worker_cpu_ms'), 2)} ms cpu/delivery"
        if b.ran("worker-1proc"):
            cost += f" (backlog: {number(1000 / b.m('worker-1proc', 'per_cpu_s'), 2)})"
        b.add("latency", "p50", "ms", label="latency p50", decimals=1, notes=f"{offered}; {cost}")
        b.add("latency", "p99", "ms", label="latency p99", decimals=1, notes=cpu)
    if b.ran("isolation"):
        isolation_rows(b)
    if b.ran("backlog"):
        backlog_rows(b)
    if b.ran("retry-timing"):
        retry_rows(b)
    if b.ran("fifo"):
        fifo_rows(b)
    if b.ran("hot-path"):
        hot_path_rows(b)
    if b.ran("shards"):
        shard_rows(b)
    return b.rows


def isolation_rows(b: TableBuilder) -> None:
    """The run with ten healthy endpoints, then the one with a hung tenth."""
    name = "isolation"
    b.add(
        name,
        "healthy_rate",
        "deliveries/s",
        label="isolation 10 healthy",
        ratio="1.00x (ref)",
        notes=f"10 endpoints, one worker; {cpu_notes(b, name, ONE_WORKER, 'healthy_')}",
    )
    share = b.own_ratio(name, "share_ratio", "on the nine's share")
    per_cpu = b.own_ratio(name, "cpu_ratio", "per cpu-s")
    hung = (
        f"hung endpoint: {number(b.m(name, 'hung_leases'))} leases, "
        f"{number(b.m(name, 'hung_active_jobs'))} jobs still active, "
        f"{number(b.m(name, 'hung_timeouts'))} timed out; "
        f"{number(b.m(name, 'deferred'))} deferred"
    )
    b.add(
        name,
        "rate",
        "deliveries/s",
        label="isolation 1 hung",
        ratio=b.own_ratio(name, "ratio", "healthy"),
        notes=(
            f"the nine keep {share} (target >= 0.90x; the ratio column compares with all"
            f" ten), {per_cpu}; {hung}; {cpu_notes(b, name, ONE_WORKER)}"
        ),
    )
    b.add(
        name,
        "many_alone_rate",
        "events/s",
        label="isolation 1 healthy alone",
        decimals=1,
        ratio="1.00x (ref)",
        notes=(
            f"WORKER_CONCURRENCY=100, publish -> arrival p50 "
            f"{number(b.m(name, 'many_alone_p50'), 1)} ms, p99 "
            f"{number(b.m(name, 'many_alone_p99'), 1)} ms"
        ),
    )
    b.add(
        name,
        "many_rate",
        "events/s",
        label="isolation 50 hung + 1 healthy",
        decimals=1,
        ratio=b.own_ratio(name, "many_ratio", "alone"),
        notes=(
            f"the healthy one: p50 {number(b.m(name, 'many_p50'), 1)} ms, p99 "
            f"{number(b.m(name, 'many_p99'), 1)} ms (target >= 0.90x and p99 < 1 s), "
            f"{number(b.m(name, 'many_within_10s'))} of {number(b.m(name, 'many_events'))} "
            f"within 10 s of the last publish, {number(b.m(name, 'many_missing'))} missing "
            f"after 60 s; {number(b.m(name, 'many_deferred'))} deferred"
        ),
    )


def backlog_rows(b: TableBuilder) -> None:
    """Memory per pending delivery at the backlog's size, and the rate it drains at."""
    name = "backlog"
    size = f"{number(b.m(name, 'deliveries'))} pending"
    b.add(
        name,
        "bytes_pending",
        "B/delivery",
        label="backlog memory",
        notes=f"{size} (fan-out 10): {number(b.m(name, 'memory_mb'))} MB; "
        f"{number(b.m(name, 'bytes_retained'))} B/delivery kept once delivered",
    )
    b.add(
        name,
        "rate",
        "deliveries/s",
        label="backlog drain",
        ratio=b.ratio(name, "worker-1proc", "1proc"),
        notes=f"{size}, one worker; queued gauge checked before and after; "
        f"{cpu_notes(b, name, ONE_WORKER)}; {efficiency(b, name)}",
    )


def retry_rows(b: TableBuilder) -> None:
    """Lateness of retries to a 503 endpoint while one worker drains a backlog."""
    name = "retry-timing"
    retries = f"{number(b.m(name, 'retries'))} retries (RETRY_SCHEDULE 0,2,2,2,2, 503s)"
    loaded = (
        f"{number(b.m(name, 'load_retries'))} due while the backlog drained "
        f"({number(b.m(name, 'load_started'))} started before it was delivered): "
        f"p50 {number(b.m(name, 'load_p50'))}, p99 {number(b.m(name, 'load_p99'))}; "
        f"due after it: p99 {number(b.m(name, 'idle_p99'))}"
    )
    b.add(
        name,
        "p50",
        "ms",
        label="retry lateness p50",
        notes=f"{retries}; earliest {number(b.m(name, 'min'))} ms",
    )
    b.add(name, "p99", "ms", label="retry lateness p99", notes=f"target <= 1,000 ms; {loaded}")
    b.add(
        name,
        "max",
        "ms",
        label="retry lateness max",
        notes=f"backlog at {number(b.m(name, 'load_rate'))}/s; {cpu_notes(b, name, ONE_WORKER)}",
    )


def fifo_rows(b: TableBuilder) -> None:
    """A FIFO endpoint's rate against an ordinary one's, and the ordinary one's beside a
    FIFO endpoint whose turn is held (what FIFO handling costs the others) and beside
    one delivering as fast as it can (that plus the CPU its own deliveries take)."""
    name = "fifo"
    b.add(
        name,
        "parallel_rate",
        "deliveries/s",
        label="fifo: ordinary endpoint",
        ratio="1.00x (ref)",
        notes=(
            f"one parallel endpoint alone (max_in_flight 10), one worker "
            f"({number(b.m(name, 'parallel_us'))} µs of its CPU per delivery); "
            f"{cpu_notes(b, name, ONE_WORKER, 'parallel_')}"
        ),
    )
    b.add(
        name,
        "fifo_rate",
        "deliveries/s",
        label="fifo: FIFO endpoint",
        ratio=b.own_ratio(name, "fifo_share", "ordinary"),
        notes=(
            f"one at a time in publish order: one delivery per round trip of pickup, POST "
            f"and record ({number(b.m(name, 'fifo_latency_ms'), 2)} ms), each a batch of "
            f"one ({number(b.m(name, 'fifo_us'))} µs of worker CPU); "
            f"{cpu_notes(b, name, ONE_WORKER, 'fifo_')}"
        ),
    )
    b.add(
        name,
        "held_rate",
        "deliveries/s",
        label="fifo: ordinary beside a held FIFO",
        ratio=b.own_ratio(name, "held_ratio", "alone"),
        notes=(
            f"a FIFO endpoint of another workspace whose receiver answers in "
            f"{HELD_DELAY_MS:g} ms, its turn held and its line waiting throughout "
            f"({number(b.m(name, 'fifo_held_rate'))}/s): what FIFO handling costs the "
            f"others; target 1.00x; {number(b.m(name, 'held_us'))} µs of worker CPU per "
            f"ordinary delivery; {cpu_notes(b, name, ONE_WORKER, 'held_')}"
        ),
    )
    share = b.m(name, "fifo_cpu_share")
    b.add(
        name,
        "beside_rate",
        "deliveries/s",
        label="fifo: ordinary beside a busy FIFO",
        ratio=b.own_ratio(name, "beside_ratio", "alone"),
        notes=(
            f"the FIFO endpoint on the fast sink instead "
            f"({number(b.m(name, 'fifo_busy_rate'))}/s meanwhile), whose own deliveries "
            f"took {percent(share)} of the worker's CPU: a worker with a core to itself "
            f"then gives the ordinary one {1 - share:.2f}x (bench/README.md); "
            f"{cpu_notes(b, name, ONE_WORKER)}"
        ),
    )
    b.add(
        name,
        "beside_us",
        "µs/delivery",
        label="fifo: ordinary's CPU beside a busy FIFO",
        ratio=b.own_ratio(name, "beside_us_ratio", "alone"),
        notes=(
            "the worker's CPU per ordinary delivery in the busy run, the FIFO endpoint's "
            "deliveries taken out at their cost alone, against the ordinary endpoint "
            "alone: whether its deliveries got dearer (target 1.00x)"
        ),
    )
    b.add(
        name,
        "beside_cmds",
        "commands",
        label="fifo: ordinary's Redis commands beside",
        decimals=2,
        ratio=b.own_ratio(name, "beside_cmds_ratio", "alone"),
        notes=(
            f"Redis commands per ordinary delivery in the busy run, the FIFO endpoint's "
            f"taken out at their count alone ({number(b.m(name, 'fifo_cmds'), 1)} each), "
            f"against the ordinary endpoint alone: no extra round trip on its path "
            f"(target 1.00x; INFO commandstats, which the machine's load does not move)"
        ),
    )
