"""Taking new deliveries off the ready list as they arrive.

Events published one at a time leave a partial batch, which waits on the ready list
(producer/outbox.lua) rather than becoming a bullmq job: a job costs the publisher and
the worker together about 0.5 ms of CPU, more than sending the event. Every worker keeps
one blocking BLMOVE on the list, so Redis hands each new item to the worker that has
waited longest. That worker takes it with up to a batch more (claims.lua), so batches
grow with the load and a lone event leaves at once.

At least once: an item is on the ready list, in a worker's inbox or in one of its
claims until its attempt is recorded. A worker renews its key every third of its TTL;
when it dies, the housekeeping of any worker gives its claims back to the ready list.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from typing import Any

import structlog

from producer.jobs import WEEK_S, DeliveryItem, ready_entry
from producer.keys import Keys
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from worker.delivery import DeliveryProcessor

log = structlog.get_logger("cliq.worker.pickup")

# How long one BLMOVE waits: below the client's socket timeout (producer.jobs).
WAIT_S = 2
# After a Redis error the loop waits this long before trying again.
RETRY_S = 1.0


class Pickup:
    """One worker's taker of ready items: ``run()`` until cancelled, then ``close()``."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        processor: DeliveryProcessor,
        *,
        worker_id: str,
        batch_size: int,
        max_claims: int,
        ttl_s: float,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._processor = processor
        self._worker_id = worker_id
        self._batch_size = batch_size
        self._ttl_ms = int(ttl_s * 1000)
        self._script = load_script(redis, keys, "worker", "claims.lua")
        self._inbox = f"{worker_id}.in"
        self._numbers = itertools.count(1)
        # Claims being attempted; a new one is taken only while fewer than max_claims are.
        self._room = asyncio.Semaphore(max_claims)
        self._attempting: dict[str, asyncio.Task[None]] = {}
        # Claims that could not be finished (Redis failed): given back when it answers.
        self._unfinished: set[str] = set()
        # Claims attempted: dropped by the next call that goes to Redis anyway (a take,
        # a renewal), which saves a round trip per claim when events come one by one.
        self._done: list[str] = []
        self._renewing: asyncio.Task[None] | None = None
        # Cleared while the worker takes no work (producer.redis_guard).
        self._open = asyncio.Event()
        self._open.set()

    def pause(self) -> None:
        """Take no new items (those being attempted finish) until :meth:`resume`."""
        self._open.clear()

    def resume(self) -> None:
        """Take items again."""
        self._open.set()

    async def run(self) -> None:
        """Take ready items and attempt them, until cancelled. Redis errors are retried."""
        # Registered before the first BLMOVE, so that an item moved into the inbox by a
        # worker that dies at once is given back too.
        while True:
            if await self._renew():
                break
            await asyncio.sleep(RETRY_S)
        # Until close(): claims still being attempted while the worker drains stay ours.
        self._renewing = asyncio.create_task(self._keep_alive())
        while True:
            await self._open.wait()
            await self._room.acquire()  # released when the claim taken is attempted
            started = False
            try:
                taken = await self._wait_for_items()
                if taken is not None:
                    self._start(*taken)
                    started = True
            except Exception as exc:
                log.warning("pickup_failed", error=str(exc))
                await asyncio.sleep(RETRY_S)
            finally:
                if not started:
                    self._room.release()

    async def _wait_for_items(self) -> tuple[str, list[str], Any] | None:
        """BLMOVE one item into the inbox, then claim it with up to a batch more."""
        moved = await self._redis.blmove(
            self._keys.ready, self._keys.claimed(self._inbox), WAIT_S, "LEFT", "RIGHT"
        )
        if moved is None:
            return None
        claim_id = f"{self._worker_id}.{next(self._numbers)}"
        done, self._done = self._done, []
        try:
            entries, loaded = await self._script(
                "take", self._worker_id, self._inbox, claim_id, self._batch_size, WEEK_S, *done
            )
        except BaseException:
            self._done.extend(done)
            raise
        return (claim_id, entries, loaded) if entries else None

    def _start(self, claim_id: str, entries: list[str], loaded: Any) -> None:
        task = asyncio.create_task(self._attempt(claim_id, entries, loaded))
        self._attempting[claim_id] = task

    async def _attempt(self, claim_id: str, entries: list[str], loaded: Any) -> None:
        try:
            await self._processor.attempt_claimed(claim_id, entries, loaded)
            self._done.append(claim_id)
        except Exception as exc:
            # Redis failed mid-claim: the items stay claimed and go back to the ready
            # list once it answers again (_keep_alive), to be attempted again.
            self._unfinished.add(claim_id)
            log.warning("claim_unfinished", claim_id=claim_id, error=str(exc))
        finally:
            del self._attempting[claim_id]
            self._room.release()

    async def _keep_alive(self) -> None:
        """Renew this worker's key, and give back the claims it could not finish."""
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            if await self._renew() and self._unfinished:
                failed = sorted(self._unfinished)
                with contextlib.suppress(Exception):  # tried again next time
                    await self._script("release", self._worker_id, *failed)
                    self._unfinished.difference_update(failed)

    async def _renew(self) -> bool:
        done, self._done = self._done, []
        try:
            await self._script("renew", self._worker_id, self._ttl_ms, self._inbox, *done)
            return True
        except Exception as exc:  # Redis down: keep trying; the key may expire meanwhile
            self._done.extend(done)
            log.warning("pickup_renew_failed", error=str(exc))
            return False

    async def keep(self, items: Sequence[DeliveryItem]) -> str:
        """Hold ``items``, which this worker is attempting, in a claim of its own until
        :meth:`kept`: given back like any claim if the worker dies or stops first."""
        claim_id = f"{self._worker_id}.{next(self._numbers)}"
        entries = [ready_entry(item) for item in items]
        await self._script("keep", self._worker_id, claim_id, WEEK_S, *entries)
        return claim_id

    def kept(self, claim_id: str, recorded: bool) -> None:
        """The items of a claim from :meth:`keep` ended: it is dropped if all were
        recorded, else given back (when Redis answers) to be attempted again."""
        if recorded:
            self._done.append(claim_id)
        else:
            self._unfinished.add(claim_id)

    async def reclaim(self) -> int:
        """Give back the claims of workers that died; returns how many items went back."""
        return int(await self._script("reclaim", self._worker_id))

    async def drain(self, grace_s: float) -> None:
        """After ``run`` is cancelled: let claims finish for ``grace_s``, cancel the rest."""
        attempting = list(self._attempting.values())
        if attempting:
            _done, pending = await asyncio.wait(attempting, timeout=grace_s)
            if pending:
                log.warning("drain_timeout", grace_s=grace_s, claims=len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def close(self) -> None:
        """After :meth:`drain` (and the deliveries kept): give back what is unfinished."""
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        # Everything of ours still claimed, also a claim whose take was cut short.
        try:
            returned = await self._script("retire", self._worker_id, *self._done)
        except Exception as exc:  # our key expires, and another worker gives them back
            log.warning("pickup_retire_failed", error=str(exc))
            return
        if returned:
            log.info("pickup_returned", entries=returned)
