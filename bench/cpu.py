"""Where the CPU went during a measurement: our processes, Redis, and everything else.

Two cores are shared by the sink, Redis, the workers, the benchmark itself and
whatever else runs on the machine. So every window also records the machine's
busy time (``/proc/stat``): what none of our processes used is ``other``, and a
run with a large ``other`` was disturbed from outside.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MACHINE = "machine"
OTHER = "other"


def process_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far, from ``/proc/<pid>/stat``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    # Then index 0 is field 3 (state), so utime (field 14) and stime (15) are 11 and 12.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``, idle and iowait out)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user).
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS


async def redis_seconds(redis: aioredis.Redis) -> float:
    """CPU seconds the Redis server has used (it reports its own rusage)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far, by name, at one moment (``perf_counter`` seconds)."""

    at: float
    used: dict[str, float]


class CpuMeter:
    """Samples named processes, Redis, this process (``bench``) and the whole machine."""

    def __init__(self, redis: aioredis.Redis, processes: Mapping[str, Callable[[], float]]) -> None:
        self._redis = redis
        self._processes = processes

    async def sample(self) -> CpuSample:
        """Read every counter now."""
        used = {name: read() for name, read in self._processes.items()}
        used["redis"] = await redis_seconds(self._redis)
        used["bench"] = time.process_time()
        used[MACHINE] = machine_busy_seconds()
        return CpuSample(time.perf_counter(), used)


def shares(first: CpuSample, last: CpuSample) -> dict[str, float]:
    """Share of one core used by each between two samples, plus ``other`` (the rest)."""
    seconds = last.at - first.at
    result = {name: (last.used[name] - first.used[name]) / seconds for name in first.used}
    ours = sum(share for name, share in result.items() if name != MACHINE)
    # Clock-tick rounding can make ours exceed the machine's total by a hair.
    result[OTHER] = max(0.0, result[MACHINE] - ours)
    return result


# Calls that run other commands (counted on their own) or are the bench's own.
NOT_WORK = frozenset(
    {
        "evalsha",
        "evalsha_ro",
        "eval",
        "eval_ro",
        "fcall",
        "exec",
        "multi",
        "info",
        "config|resetstat",
        "script|load",
        "ping",
        "flushall",
    }
)


async def command_calls(redis: aioredis.Redis) -> dict[str, int]:
    """Calls per command since the last ``CONFIG RESETSTAT`` (``INFO commandstats``; a
    script's own calls count under each command they make)."""
    info = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in info.items()}


def data_calls(calls: dict[str, int]) -> int:
    """The commands that did the work, scripts and transactions out (their commands count)."""
    return sum(n for name, n in calls.items() if name not in NOT_WORK)
