"""Disable means pause: an endpoint's paused backlog, and disabling, enabling, dropping.

A delivery for a disabled endpoint (queued, retrying, or new) is kept as ``paused`` in
the endpoint's backlog (``LAYOUT["endpoint_paused"]``), in publish order, and spends no
attempt (producer/pause.lua). Enabling the endpoint puts it in ``resuming``: the workers
re-enqueue the backlog in publish order, each delivery with its remaining attempts
(worker/resume.py). Disabling with ``drop`` ends the backlog, and every later delivery
until enabled, dead with the reason instead. A backlog holds at most
``PAUSED_MAX_PER_ENDPOINT``; past it the oldest end dead ("paused backlog full").
docs/endpoint-states.md tells the whole story.

:class:`PauseEvents` is told of these (an endpoint disabled automatically, a backlog
that overflowed): the default one logs, the workers' and the API's also send the
backlog's operational webhook (an auto-disable's is written by worker/autodisable.lua).
"""

from __future__ import annotations

import time
from typing import Protocol

import structlog

from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoints import EndpointRegistry
from producer.fields import ENDPOINT_PAUSE_FIELDS
from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.operations import (
    OPERATIONS_ENDPOINT_ID,
    OperationalJob,
    emit,
    endpoint_paused_backlog_full,
)
from producer.redis.clients import RedisClient
from producer.scripts import load_script

log = structlog.get_logger("cliq.producer.pausing")

# Paused deliveries one backlog.lua call moves (Redis blocks while a script runs).
BACKLOG_CHUNK = 1000
# The reasons a paused delivery ends dead with.
DROPPED_BY_DISABLE = "endpoint disabled (drop)"
BACKLOG_FULL = "paused backlog full"
# Why an endpoint is disabled automatically (DISABLE_FAILING_AFTER).
AUTO_DISABLE_REASON = "failing without a success for DISABLE_FAILING_AFTER"


class PauseEvents(Protocol):
    """Notices of pause events (wired by the caller).

    Called once per event, after it is stored: ``endpoint_disabled`` when an endpoint
    is disabled automatically (``DISABLE_FAILING_AFTER``), ``paused_backlog_full`` the
    first time its paused backlog overflows since it was last resumed.
    """

    async def endpoint_disabled(self, endpoint_id: str, workspace_id: str, reason: str) -> None:
        """An endpoint was disabled (its deliveries pause) for ``reason``."""

    async def paused_backlog_full(self, endpoint_id: str, workspace_id: str, reason: str) -> None:
        """An endpoint's paused backlog reached ``PAUSED_MAX_PER_ENDPOINT``; the oldest
        deliveries end dead."""


class LoggedPauseEvents:
    """The default :class:`PauseEvents`: a log line each."""

    async def endpoint_disabled(self, endpoint_id: str, workspace_id: str, reason: str) -> None:
        """Log ``endpoint_auto_disabled``."""
        log.warning(
            "endpoint_auto_disabled",
            endpoint_id=endpoint_id,
            workspace_id=workspace_id,
            reason=reason,
        )

    async def paused_backlog_full(self, endpoint_id: str, workspace_id: str, reason: str) -> None:
        """Log ``paused_backlog_full``."""
        log.warning(
            "paused_backlog_full",
            endpoint_id=endpoint_id,
            workspace_id=workspace_id,
            reason=reason,
        )


class OperationalPauseEvents(LoggedPauseEvents):
    """The :class:`PauseEvents` of the API and the workers: the log line, and for a full
    backlog the operational event ``endpoint.paused_backlog_full`` once a worker has
    registered the operations endpoint (``OPERATIONS_WEBHOOK_URL``); without it nobody
    would receive it. An auto-disable's ``endpoint.disabled`` is not sent from here:
    worker/autodisable.lua writes it with the disable itself, so that it is not lost."""

    def __init__(
        self, redis: RedisClient, keys: Keys, dispatcher: JobDispatcher, paused_max: int
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._dispatcher = dispatcher
        self._paused_max = paused_max

    async def paused_backlog_full(self, endpoint_id: str, workspace_id: str, reason: str) -> None:
        """Log it; queue ``endpoint.paused_backlog_full``."""
        await super().paused_backlog_full(endpoint_id, workspace_id, reason)
        now_ms = int(time.time() * 1000)
        # Told once per overflow until the backlog is next resumed.
        await self._emit(
            endpoint_paused_backlog_full(
                endpoint_id,
                transition=f"b{now_ms}",
                at_ms=now_ms,
                backlog=self._paused_max,
                workspace_id=workspace_id,
                last_error=reason,
            )
        )

    async def _emit(self, job: OperationalJob) -> None:
        if await self._redis.exists(self._keys.endpoint(OPERATIONS_ENDPOINT_ID)):
            await emit(self._dispatcher, [job])


class Pausing:
    """Disable (pause or drop) and enable endpoints; read and move paused backlogs."""

    def __init__(self, redis: RedisClient, keys: Keys, registry: EndpointRegistry) -> None:
        self._redis = redis
        self._keys = keys
        self._registry = registry
        self._backlog = load_script(redis, keys, "producer", "backlog.lua")

    async def disable(self, endpoint_id: str, *, drop: bool = False) -> Endpoint:
        """Disable the endpoint: its deliveries pause, or with ``drop`` end dead (those
        already paused included) until it is enabled."""
        endpoint = await self._registry.set_status(endpoint_id, EndpointStatus.DISABLED, drop)
        if drop:
            dropped = await self.drop_backlog(endpoint_id, DROPPED_BY_DISABLE)
            log.info("paused_dropped", endpoint_id=endpoint_id, deliveries=dropped)
        return endpoint

    async def enable(self, endpoint_id: str) -> Endpoint:
        """Enable the endpoint (``active``, clearing ``failing``); the workers resume its
        paused backlog in publish order."""
        return await self._registry.set_status(endpoint_id, EndpointStatus.ACTIVE)

    async def set_status(self, endpoint_id: str, status: EndpointStatus, drop: bool) -> Endpoint:
        """:meth:`enable` for ``active``, else :meth:`disable` (``drop`` applies)."""
        if status == EndpointStatus.DISABLED:
            return await self.disable(endpoint_id, drop=drop)
        return await self.enable(endpoint_id)

    async def drop_backlog(self, endpoint_id: str, reason: str) -> int:
        """Queue every paused delivery of the endpoint to end dead with ``reason`` (a
        worker records it); returns how many."""
        total = 0
        while True:
            moved, left = await self._backlog("drop", endpoint_id, BACKLOG_CHUNK, reason)
            total += int(moved)
            if int(left) == 0 or int(moved) == 0:
                return total

    async def paused(self, endpoint_id: str) -> int:
        """How many of the endpoint's deliveries are paused."""
        return int(await self._redis.zcard(self._keys.endpoint_paused(endpoint_id)))

    async def drops(self, endpoint_id: str) -> bool:
        """Whether the endpoint is disabled with drop."""
        value = await self._redis.hget(self._keys.endpoint(endpoint_id), ENDPOINT_PAUSE_FIELDS.drop)
        return value == "1"
