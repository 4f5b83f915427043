"""A Redis that keeps what it acknowledged: no eviction, and no data lost unnoticed.

The API and every worker run a :class:`RedisGuard` on the Redis they write to (behind
Sentinel, the current primary; on a cluster, the primary serving each partition's slot,
where its keys and bullmq's live): at start, then every :data:`CHECK_INTERVAL_S`, so
that a reconnection to a restarted or failed-over server is checked too. Each partition
(``PARTITIONS``) has its own generation marker, checked like partition 0's.

* **Eviction.** ``maxmemory-policy`` must be ``noeviction``; any other policy lets
  Redis delete keys when its memory is full (endpoints, events, queued deliveries)
  after the API answered 202. At start a process refuses to run on such a Redis
  (:class:`RedisEvictingError`: exit status 2) unless ``ALLOW_EVICTING_REDIS`` is on,
  and then logs ``redis_evicting`` as an error every minute. A policy found changed
  while the process runs makes it refuse work (:attr:`RedisGuard.refusal`) until it is
  ``noeviction`` again. A Redis that refuses ``CONFIG GET`` (some managed services, an
  ACL) is taken as it is, with a warning: its policy is then the operator's to check.
* **Data lost.** The first endpoint's creation writes a random generation id under
  ``Keys.generation`` (``SET NX``; a process that finds endpoints but no marker, from
  before markers existed, writes one); each process remembers the one it saw. Finding it
  gone or changed later means Redis came back without its data (a restart without
  persistence, a ``FLUSHALL``, eviction): ``redis_data_lost`` is logged as an error with
  both ids, counted in ``cliq_redis_data_lost_total`` and reported by ``/readyz``, which
  stays ready: the process carries on with the Redis it has, under the new generation.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis import exceptions as redis_errors
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from producer.keys import Keys
from producer.redis.clients import RedisClient, server_of
from producer.settings import SettingsError

log = structlog.get_logger("cliq.producer.redis_guard")

NOEVICTION = "noeviction"
CHECK_INTERVAL_S = 2.0
# A check that takes longer is given up (tried again next interval; /readyz says why).
CHECK_TIMEOUT_S = 5.0
EVICTING_LOG_INTERVAL_S = 60.0
RUNBOOK = "docs/operations.md#cliqredisdatalost"


def new_generation() -> str:
    """A random generation id."""
    return secrets.token_hex(8)


def stage_generation(pipe: Pipeline | ClusterPipeline, keys: Keys) -> None:
    """Add the creation of the generation marker, unless it exists, to ``pipe``: done
    with the first endpoint, before which Redis holds nothing that could be lost."""
    pipe.set(keys.generation, new_generation(), nx=True)


class RedisEvictingError(SettingsError):
    """Redis may evict keys and ``ALLOW_EVICTING_REDIS`` is off: the process does not start."""


def evicting_message(policy: str) -> str:
    """What is wrong with a Redis whose ``maxmemory-policy`` is ``policy``, and the fixes."""
    return (
        f"Redis has maxmemory-policy {policy}: when its memory is full it deletes keys "
        "(endpoints, events, queued deliveries) that were already acknowledged. Run "
        "`CONFIG SET maxmemory-policy noeviction` on it (and put it in its configuration "
        "so that it survives a restart), or set ALLOW_EVICTING_REDIS=1 to run anyway"
    )


@dataclass(frozen=True)
class DataLoss:
    """Redis was found without the generation this process had seen."""

    previous: str
    current: str
    at: float  # time.time()
    partition: int = 0

    def describe(self) -> str:
        """A sentence for ``/readyz``."""
        when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        where = f" (partition {self.partition})" if self.partition else ""
        return (
            f"Redis lost its data{where} (noticed {when}): generation {self.previous} was gone, "
            f"now {self.current}. Endpoints, events and deliveries stored before then are "
            f"lost; see {RUNBOOK}"
        )


class GuardMetrics:
    """The guard's metrics, registered in the API's or a worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.data_lost = Counter(
            "cliq_redis_data_lost_total",
            "Times this process found Redis without the generation marker it had seen: "
            "Redis lost its data (restart without persistence, FLUSHALL, eviction).",
            registry=registry,
        )
        self.evicting = Gauge(
            "cliq_redis_evicting",
            "1 while the Redis written to has a maxmemory-policy other than noeviction "
            "(allowed by ALLOW_EVICTING_REDIS, or refused: no work is taken).",
            registry=registry,
            multiprocess_mode="livemax",
        )


class RedisGuard:
    """The checks of one process; ``await start()``, then ``check()`` now and then."""

    def __init__(
        self,
        redis: RedisClient,
        partitions: Sequence[Keys],
        metrics: GuardMetrics,
        *,
        allow_evicting: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``partitions``: the keys of every partition, partition 0 first."""
        # bullmq warns of an evicting Redis on stderr, outside the JSON log, on every
        # connection: this guard reports it in the log instead (refused or every minute).
        warnings.filterwarnings("ignore", "IMPORTANT! Eviction policy", UserWarning, r"bullmq\.")
        self._redis = redis
        self._partitions = tuple(partitions)
        self._metrics = metrics
        self._allow_evicting = allow_evicting
        self._clock = clock
        # The last policy read; None while unknown (not reached yet, or CONFIG refused).
        self.policy: str | None = None
        self._policy_error: str | None = None
        self._evicting_logged_at: float | None = None
        # The generation each partition had when last checked (None: none seen yet).
        self._generations: list[str | None] = [None] * len(self._partitions)
        self.data_lost: DataLoss | None = None

    @property
    def generation(self) -> str | None:
        """Partition 0's generation, as last checked."""
        return self._generations[0]

    @property
    def refusal(self) -> str | None:
        """Why this process must take no work now (Redis evicts, not allowed), or None."""
        if self.policy in (None, NOEVICTION) or self._allow_evicting:
            return None
        assert self.policy is not None
        return evicting_message(self.policy)

    def warnings(self) -> list[str]:
        """What ``/readyz`` reports besides its status; empty when all is well."""
        notes: list[str] = []
        if self.policy not in (None, NOEVICTION):
            assert self.policy is not None
            notes.append(
                self.refusal + ": no work is taken until then"
                if self.refusal
                else evicting_message(self.policy) + " (ALLOW_EVICTING_REDIS is on)"
            )
        if self._policy_error is not None:
            notes.append(
                f"maxmemory-policy unknown ({self._policy_error}): make sure it is noeviction"
            )
        if self.data_lost is not None:
            notes.append(self.data_lost.describe())
        return notes

    async def start(self) -> None:
        """The check at start: raises :class:`RedisEvictingError` on an evicting Redis
        (unless allowed). A Redis that does not answer is checked once it does."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                await self.check(starting=True)
        except (TimeoutError, redis_errors.RedisError) as exc:
            log.warning(
                "redis_guard_deferred",
                error=repr(exc),
                detail="Redis did not answer: its maxmemory-policy and generation are "
                "checked as soon as it does",
            )

    async def check(self, *, starting: bool = False) -> None:
        """Read the policy and the generation; Redis errors propagate (try again later)."""
        await self._check_policy(starting)
        await self._check_generation()

    async def watch(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Check every ``interval_s`` until cancelled (the API's loop; workers check in
        their housekeeping). A Redis that does not answer is tried again next time."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                async with asyncio.timeout(CHECK_TIMEOUT_S):
                    await self.check()
            except (TimeoutError, redis_errors.RedisError):
                pass  # Redis down: /readyz says so
            except Exception:  # a bug: keep checking, and show it
                log.exception("redis_guard_failed")

    async def _check_policy(self, starting: bool) -> None:
        previous = self.policy
        self.policy = await self._read_policy()
        evicting = self.policy not in (None, NOEVICTION)
        self._metrics.evicting.set(int(evicting))
        if not evicting:
            if previous not in (None, NOEVICTION):
                log.warning("redis_policy_restored", policy=self.policy, previous=previous)
            return
        assert self.policy is not None
        if starting and not self._allow_evicting:
            # In the JSON log too, not only on stderr: that is where it is looked for.
            log.error("redis_evicting", policy=self.policy, refusing_to_start=True)
            raise RedisEvictingError(evicting_message(self.policy))
        now = self._clock()
        if (
            self.policy != previous
            or self._evicting_logged_at is None
            or now - self._evicting_logged_at >= EVICTING_LOG_INTERVAL_S
        ):
            self._evicting_logged_at = now
            log.error(
                "redis_evicting",
                policy=self.policy,
                allowed=self._allow_evicting,
                refusing_work=not self._allow_evicting,
                detail=evicting_message(self.policy),
            )

    async def _read_policy(self) -> str | None:
        """The policy of the servers holding the partitions: the first that evicts, else
        noeviction; None when one refused to say."""
        servers: dict[str, dict[str, object]] = {}
        for keys in self._partitions:
            target = await server_of(self._redis, keys.prefix)
            node = target.get("target_nodes")
            servers.setdefault("" if node is None else str(node.name), target)
        found = NOEVICTION
        for target in servers.values():
            try:
                reply = await self._redis.config_get("maxmemory-policy", **target)
            except redis_errors.ResponseError as exc:  # CONFIG renamed, disabled or denied
                self._policy_unknown(str(exc))
                return None
            policy = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
            if not isinstance(policy, str):
                self._policy_unknown(f"CONFIG GET answered {reply!r}")
                return None
            if found == NOEVICTION:
                found = policy
        self._policy_error = None
        return found

    def _policy_unknown(self, error: str) -> None:
        if self._policy_error is None:
            log.warning(
                "redis_policy_unknown",
                error=error,
                detail="CONFIG GET maxmemory-policy was refused: this process runs without "
                "knowing whether Redis evicts keys; make sure its policy is noeviction",
            )
        self._policy_error = error

    async def _check_generation(self) -> None:
        for k, keys in enumerate(self._partitions):
            await self._check_partition(k, keys)

    async def _check_partition(self, k: int, keys: Keys) -> None:
        seen = self._generations[k]
        current = await self._read(keys.generation)
        if current is None and (seen is not None or await self._redis.exists(keys.endpoints)):
            # Lost (this process had seen one), or endpoints from before markers existed:
            # start a new generation, the same for every process (SET NX).
            await self._redis.set(keys.generation, new_generation(), nx=True)
            current = await self._read(keys.generation)
        self._generations[k] = current
        if seen is None or current == seen:
            return
        self.data_lost = DataLoss(seen, str(current), time.time(), k)
        self._metrics.data_lost.inc()
        log.error(
            "redis_data_lost",
            partition=k,
            previous_generation=seen,
            generation=current,
            detail=self.data_lost.describe(),
        )

    async def _read(self, key: str) -> str | None:
        value = await self._redis.get(key)
        return None if value is None else str(value)  # our clients decode replies
