"""Auto-disable (``DISABLE_FAILING_AFTER``): an endpoint failing without a success for that
long is disabled, its deliveries paused, with one email and one operational webhook.

Off by default (0), as in the seed. An endpoint turns ``failing`` when a delivery fails
every attempt (worker/record.lua notes the time); a success returns it to ``active``. So
an endpoint still ``failing`` that long after it turned so has had no success since.
Every worker looks every :func:`check_interval`; worker/autodisable.lua disables each
endpoint once, whichever worker gets there first, and writes with it the email's job
and (``OPERATIONS_WEBHOOK_URL``) the ``endpoint.disabled`` event's, so that a worker
killed right after disabling it loses neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import cast

import structlog

from producer.events import iso_time
from producer.fields import ENDPOINT_PAUSE_FIELDS
from producer.jobs import JobDispatcher, JobSpec
from producer.keys import NOTIFICATION_QUEUE, Keys
from producer.messages import NotificationJob
from producer.operations import endpoint_disabled, is_operational
from producer.pausing import AUTO_DISABLE_REASON, PauseEvents
from producer.redis.clients import RedisClient
from producer.scripts import load_script
from worker.metrics import Metrics

log = structlog.get_logger("cliq.worker.autodisable")


def check_interval(after_s: float) -> float:
    """Seconds between looks: a tenth of the threshold, from 0.1 s to a minute."""
    return min(60.0, max(0.1, after_s / 10))


def no_success_since(failing_since_ms: int) -> str:
    """The last error the email and the operational event give an auto-disable."""
    return f"no successful delivery since {iso_time(failing_since_ms)}"


def notification_job(endpoint_id: str, failing_since_ms: int) -> JobSpec:
    """The owner's email for an endpoint disabled after failing since ``failing_since_ms``
    (its id makes a second copy of it the same job)."""
    job = NotificationJob(
        endpoint_id=endpoint_id,
        delivery_id="",
        event_id="",
        attempts=0,
        last_error=no_success_since(failing_since_ms),
        failed_at_ms=failing_since_ms,
        reason="auto_disabled",
    )
    return JobSpec(NOTIFICATION_QUEUE, f"n-{endpoint_id}-auto-{failing_since_ms}", job.to_dict())


def operational_job(
    endpoint_id: str, failing_since_ms: int, now_ms: int, workspace_id: str, url: str
) -> JobSpec:
    """``endpoint.disabled`` (reason ``auto``) for the same disable: the failing period it
    ends names the transition, so a second copy of it is the same job and event."""
    return endpoint_disabled(
        endpoint_id,
        transition=f"a{failing_since_ms}",
        at_ms=now_ms,
        reason="auto",
        workspace_id=workspace_id,
        endpoint_url=url,
        last_error=no_success_since(failing_since_ms),
    ).spec()


class AutoDisabler:
    """Disables endpoints failing for longer than ``after_s`` seconds."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        dispatcher: JobDispatcher,
        after_s: float,
        events: PauseEvents,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        operations: bool = False,
    ) -> None:
        """``clock``: seconds since the epoch (tests inject one). ``operations``: each
        disable also sends ``endpoint.disabled`` (``OPERATIONS_WEBHOOK_URL`` is set)."""
        self._operations = operations
        self._redis = redis
        self._keys = keys
        self._dispatcher = dispatcher
        self._after_ms = int(after_s * 1000)
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._script = load_script(redis, keys, "worker", "autodisable.lua")

    async def run_once(self) -> list[str]:
        """Disable the endpoints due; returns their ids."""
        ids = sorted(cast(set[str], await self._redis.smembers(self._keys.failing)))
        if not ids:
            return []
        since_field = ENDPOINT_PAUSE_FIELDS.failing_since
        async with self._redis.pipeline(transaction=False) as pipe:
            for endpoint_id in ids:
                key = self._keys.endpoint(endpoint_id)
                pipe.hmget(key, "status", since_field, "workspace", "url")
            rows: list[list[str | None]] = await pipe.execute()
        now_ms = int(self._clock() * 1000)
        args: list[str | int] = [now_ms]
        for endpoint_id, (status, since, workspace, url) in zip(ids, rows, strict=True):
            if status != "failing":
                continue
            if since is None:  # failing since before this was noted: count from now
                await self._redis.hsetnx(self._keys.endpoint(endpoint_id), since_field, now_ms)
            elif now_ms - int(since) >= self._after_ms:
                email = notification_job(endpoint_id, int(since))
                told = (
                    operational_job(endpoint_id, int(since), now_ms, workspace or "", url or "")
                    if self._operations and not is_operational(endpoint_id)
                    else None
                )
                args += [endpoint_id, since, email.to_json(), told.to_json() if told else ""]
        if len(args) == 1:
            return []
        disabled, members = await self._script(*args)
        await self._dispatcher.dispatch(members)
        done = []
        for k in range(0, len(disabled), 2):
            endpoint_id, workspace_id = disabled[k], disabled[k + 1]
            self._metrics.auto_disabled.inc()
            self._metrics.endpoint_transitions.labels("disabled").inc()
            log.warning(
                "endpoint_disabled",
                reason=AUTO_DISABLE_REASON,
                endpoint_id=endpoint_id,
                workspace_id=workspace_id,
            )
            await self._events.endpoint_disabled(endpoint_id, workspace_id, AUTO_DISABLE_REASON)
            done.append(endpoint_id)
        return done

    async def run(self, stop: asyncio.Event) -> None:
        """Look until ``stop`` is set; Redis errors are reported and retried."""
        interval = check_interval(self._after_ms / 1000)
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # Redis down: report and keep trying
                log.warning("auto_disable_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
