"""Redis errors that mean "not available right now", and a deadline for one step.

Factored out so that every layer names them the same way: the HTTP API answers them
with 503 (:mod:`producer.http.problems`), the dashboard with its error page, the CLI
with exit status 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.exceptions
import structlog

log = structlog.get_logger("cliq.producer.redis")

# No request waits longer than this for Redis (the producer's client has no read timeout).
REDIS_DEADLINE_S = 10.0

# Redis errors that mean "not available right now" (503), as opposed to a bug (500).
REDIS_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
DEADLINE_ERRORS: tuple[type[Exception], ...] = (TimeoutError, *REDIS_UNAVAILABLE_ERRORS)


class RedisUnavailable(Exception):
    """Redis failed or took too long for a step; ``detail`` says what was not done."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@asynccontextmanager
async def deadline(detail: str) -> AsyncIterator[None]:
    """:class:`RedisUnavailable` with ``detail`` when Redis fails or takes longer than
    :data:`REDIS_DEADLINE_S`."""
    try:
        async with asyncio.timeout(REDIS_DEADLINE_S):
            yield
    except DEADLINE_ERRORS as exc:
        log.warning("redis_unavailable", error=repr(exc))
        raise RedisUnavailable(detail) from exc
