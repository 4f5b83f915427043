"""The rows of the scenarios that measure what Redis and PostgreSQL spend per delivery
(issue 15): ``hot-path`` and ``shards``."""

from __future__ import annotations

from bench.rows import TableBuilder, number, percent

# Issue 15's target for Redis's CPU per delivery (publish + deliver + record, fan-out 1).
REDIS_US_TARGET = "target <= 25 µs"


def hot_path_rows(b: TableBuilder) -> None:
    """Redis's memory and CPU per delivery with the log in Redis and in PostgreSQL, the
    worker's rate with PostgreSQL (its writer in the worker, and in a log-writer
    process), and the log writer's."""
    name = "hot-path"
    for store, label in (("redis", "log in redis"), ("pg", "log in postgresql")):
        b.add(
            name,
            f"{store}_bytes_pending",
            "B/delivery",
            label=f"hot-path memory ({label})",
            notes=f"pending, fan-out 1; finished: "
            f"{number(b.m(name, f'{store}_bytes_finished'))} B/delivery left in Redis",
        )
        b.add(
            name,
            f"{store}_redis_us",
            "µs/delivery",
            label=f"hot-path redis cpu ({label})",
            decimals=1,
            notes=f"INFO cpu, publish + deliver + record, fan-out 1; {REDIS_US_TARGET}; "
            f"{number(b.m(name, f'{store}_redis_calls'), 1)} commands/delivery",
        )
    b.add(
        name,
        "pgw_rate",
        "deliveries/s",
        label="hot-path worker, postgresql, writer in worker",
        ratio=b.own_ratio(name, "pgw_ratio", "log in redis"),
        notes=f"one worker (LOG_WRITER=worker), fan-out 1; log in redis: "
        f"{number(b.m(name, 'redis_rate'))}/s; worker cpu/delivery: "
        f"{number(b.m(name, 'pgw_worker_us'), 1)} µs, log in redis "
        f"{number(b.m(name, 'redis_worker_us'), 1)} µs; worker "
        f"{percent(b.m(name, 'pgw_cpu_worker0'))} ({percent(b.m(name, 'redis_cpu_worker0'))}), "
        f"other {percent(b.m(name, 'pgw_cpu_other'))} ({percent(b.m(name, 'redis_cpu_other'))})",
    )
    b.add(
        name,
        "pg_rate",
        "deliveries/s",
        label="hot-path worker, postgresql",
        ratio=b.own_ratio(name, "pg_ratio", "log in redis"),
        notes=f"one worker (LOG_WRITER=separate) + a log-writer process, fan-out 1; cpu/delivery: "
        f"worker {number(b.m(name, 'pg_worker_us'), 1)} µs, log-writer "
        f"{number(b.m(name, 'pg_writer_us'), 1)} µs (worker, log in redis: "
        f"{number(b.m(name, 'redis_worker_us'), 1)} µs); worker "
        f"{percent(b.m(name, 'pg_cpu_worker0'))}, log-writer "
        f"{percent(b.m(name, 'pg_cpu_logwriter'))}, other {percent(b.m(name, 'pg_cpu_other'))}; "
        f"log written {number(b.m(name, 'pg_drain_s'), 1)} s after the last delivery",
    )
    b.add(
        name,
        "writer_rows_s",
        "rows/s",
        label="hot-path log writer",
        notes=f"first attempts in batches of 500 (fan-out 10), one connection; cpu/row: "
        f"writer {number(b.m(name, 'writer_client_us'), 1)} µs, "
        f"postgres {number(b.m(name, 'writer_server_us'), 1)} µs",
    )


def shard_rows(b: TableBuilder) -> None:
    """The fleet's Redis ceiling on 3 primaries: 3 partitions against 1."""
    name = "shards"
    b.add(
        name,
        "single_rate",
        "deliveries/s",
        label="shards ceiling, 1 partition",
        ratio="1.00x (ref)",
        notes=f"3-primary cluster, all on one: {number(b.m(name, 'single_us'), 1)} µs "
        "redis cpu/delivery (publish + deliver + record, fan-out 1)",
    )
    shares = ", ".join(percent(b.m(name, f"share_{k}")) for k in range(3))
    b.add(
        name,
        "rate",
        "deliveries/s",
        label="shards ceiling, 3 partitions",
        ratio=b.own_ratio(name, "ratio", "1 partition"),
        notes=f"busiest primary {number(b.m(name, 'busiest_us'), 1)} µs/delivery of "
        f"{number(b.m(name, 'total_us'), 1)} in all; shares {shares} (target: none > 45%)",
    )
