"""What goes into the queues: job specs, the outbox they pass through, and bullmq options.

A job is first written to the outbox sorted set *in the same Lua script* as the
state change that causes it (a publish, a failed attempt, a failing endpoint).
:meth:`JobDispatcher.dispatch` then adds it to bullmq and removes it from the
outbox. A process that dies in between leaves the spec behind, and
:meth:`JobDispatcher.sweep` (run by every worker) adds it later: the job is never
lost, and its deterministic id makes bullmq ignore a second add while it exists.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from bullmq import Queue

from producer.backoff import DELIVERY_JOB_BACKOFF_MS, NOTIFICATION_BACKOFF_MS, job_backoff
from producer.keys import DELIVERY_QUEUES, NOTIFICATION_QUEUE, OPERATIONS_QUEUE, Keys
from producer.redis.clients import RedisClient, RedisKind, bullmq_connection, kind_of

DELIVERY_JOB = "deliver"
NOTIFICATION_JOB = "notify"
JOB_NAMES = {NOTIFICATION_QUEUE: NOTIFICATION_JOB, OPERATIONS_QUEUE: "operate"}
WEEK_S = 7 * 24 * 3600


@dataclass(frozen=True)
class DeliveryItem:
    """One delivery to attempt: its id and the attempt number the job is for.

    The attempt number makes a job idempotent: a worker skips an item whose
    delivery already has that many attempts recorded (a re-run after a crash).
    """

    delivery_id: str
    attempt: int

    @classmethod
    def parse(cls, value: Any) -> DeliveryItem:
        """An item from its JSON form ``[delivery id, attempt]``; ``ValueError`` if malformed."""
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not isinstance(value[0], str)
            or not isinstance(value[1], int)
            or isinstance(value[1], bool)
            or value[1] < 1
        ):
            raise ValueError(f"malformed delivery item {value!r}")
        return cls(value[0], value[1])


@dataclass(frozen=True)
class DeliveryBatch:
    """The data of one delivery job: up to ``BATCH_SIZE`` items.

    ``deferrals`` counts how often these items were put back because their endpoint
    was at its limit (no attempt spent); each time they stay out longer.
    """

    items: tuple[DeliveryItem, ...]
    deferrals: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The job data stored in bullmq."""
        data: dict[str, Any] = {"items": [[item.delivery_id, item.attempt] for item in self.items]}
        if self.deferrals:
            data["deferrals"] = self.deferrals
        return data

    @classmethod
    def from_dict(cls, data: Any) -> DeliveryBatch:
        """Parse job data; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("items"), list):
            raise ValueError("delivery job data must be an object with an 'items' list")
        items = [DeliveryItem.parse(entry) for entry in data["items"]]
        deferrals = data.get("deferrals", 0)
        if not isinstance(deferrals, int) or isinstance(deferrals, bool) or deferrals < 0:
            raise ValueError(f"malformed deferrals {deferrals!r}")
        return cls(tuple(items), deferrals)


def ready_entry(item: DeliveryItem) -> str:
    """An item as an entry of the ready list or of a claim (what outbox.lua writes)."""
    return json.dumps([item.delivery_id, item.attempt], separators=(",", ":"))


def ready_item(entry: str) -> DeliveryItem:
    """One entry of the ready list (JSON ``[delivery id, attempt]``, see outbox.lua).

    Raises ``ValueError`` on anything malformed.
    """
    return DeliveryItem.parse(json.loads(entry))


@dataclass(frozen=True)
class JobSpec:
    """A job on its way to bullmq (the outbox member is its JSON form)."""

    queue: str
    job_id: str
    data: dict[str, Any]
    delay_ms: int = 0

    def to_json(self) -> str:
        """The outbox member."""
        return json.dumps(
            {"q": self.queue, "id": self.job_id, "data": self.data, "delay": self.delay_ms},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        """Parse an outbox member (written by Python or by a Lua script's cjson)."""
        raw = json.loads(text)
        return cls(raw["q"], raw["id"], raw["data"], int(raw.get("delay") or 0))


@dataclass(frozen=True)
class QueueOptions:
    """How bullmq treats our jobs; the delivery schedule itself is ours, not bullmq's."""

    # A batch job fails only when Redis or the worker itself broke mid-batch: retried
    # soon (producer.backoff); its finished items are skipped on the next run.
    delivery_job_attempts: int = 20
    notification_attempts: int = 12
    notification_backoff_ms: int = NOTIFICATION_BACKOFF_MS

    def job_options(self, spec: JobSpec) -> dict[str, Any]:
        """bullmq options for ``spec``."""
        options: dict[str, Any] = {
            "jobId": spec.job_id,
            "removeOnComplete": True,
            "removeOnFail": {"age": WEEK_S},
        }
        if spec.delay_ms > 0:
            options["delay"] = spec.delay_ms
        if spec.queue == NOTIFICATION_QUEUE:
            options["attempts"] = self.notification_attempts
            options["backoff"] = job_backoff(self.notification_backoff_ms)
        else:
            options["attempts"] = self.delivery_job_attempts
            options["backoff"] = job_backoff(DELIVERY_JOB_BACKOFF_MS)
        return options


class JobDispatcher:
    """Moves job specs from the outbox into bullmq."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        redis_url: str,
        options: QueueOptions | None = None,
        home: Keys | None = None,
    ) -> None:
        """``keys``: the partition whose outbox this dispatcher empties and whose delivery
        queues its jobs go to; ``home``: partition 0, where the notification and operations
        queues are for every partition (default: ``keys``)."""
        self._redis = redis
        self._keys = keys
        self._options = options or QueueOptions()
        self._cluster = kind_of(redis_url) is RedisKind.CLUSTER
        prefixes = dict.fromkeys(DELIVERY_QUEUES, keys.prefix)
        for name in (NOTIFICATION_QUEUE, OPERATIONS_QUEUE):
            prefixes[name] = (home or keys).prefix
        self.queues: dict[str, Queue] = {
            name: Queue(name, {"connection": bullmq_connection(redis_url), "prefix": prefix})
            for name, prefix in prefixes.items()
        }

    async def dispatch(self, members: Sequence[str]) -> None:
        """Add the jobs of these outbox members to bullmq, then drop them from the outbox."""
        if not members:
            return
        await self.add([JobSpec.from_json(member) for member in members])
        await self._redis.zrem(self._keys.outbox, *members)

    async def add(self, specs: Sequence[JobSpec]) -> None:
        """Add jobs to bullmq directly (for jobs whose loss a re-run would repair)."""
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for spec in specs:
            by_queue.setdefault(spec.queue, []).append(
                {
                    "name": JOB_NAMES.get(spec.queue, DELIVERY_JOB),
                    "data": spec.data,
                    "opts": self._options.job_options(spec),
                }
            )
        for queue, jobs in by_queue.items():
            # addBulk runs bullmq's scripts in a MULTI pipeline, which redis-py's cluster
            # client refuses, and which costs one job twice the CPU of an add (~0.34 ms
            # instead of 0.17: a retry job of one delivery is common). One by one is
            # as safe: an outbox member stays until all its jobs are in, and a job whose
            # id exists is not added twice.
            if self._cluster or len(jobs) == 1:
                for job in jobs:
                    await self.queues[queue].add(job["name"], job["data"], job["opts"])
            else:
                await self.queues[queue].addBulk(jobs)

    async def sweep(self, older_than_s: float, limit: int = 500) -> int:
        """Dispatch outbox members older than ``older_than_s`` (left by a crashed process)."""
        cutoff = int((time.time() - older_than_s) * 1000)
        members = cast(
            list[str], await self._redis.zrangebyscore(self._keys.outbox, "-inf", cutoff, 0, limit)
        )
        await self.dispatch(members)
        return len(members)

    async def close(self) -> None:
        """Close the bullmq connections."""
        for queue in self.queues.values():
            await queue.close()
