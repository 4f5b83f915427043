"""Walking a sorted-set index (by creation or death time) in chunks, within a budget.

Listings that filter (endpoints by status, an endpoint's delivery log by outcome and
time) examine at most :data:`SCAN_BUDGET` index entries per page, so that a filter that
matches little costs bounded work: the page then ends early, with a cursor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from producer.redis.clients import RedisClient

SCAN_BUDGET = 1000
SCAN_CHUNK = 100


async def scan_index(
    redis: RedisClient, key: str, start: float | str, *, descending: bool
) -> AsyncIterator[list[tuple[int, str]]]:
    """A sorted set's positions ``(score, member)`` from ``start`` (inclusive) on, in chunks.

    Members of equal score come in the order Redis keeps them (by member), so positions
    order the entries completely and compare as tuples.
    """
    offset = 0
    while True:
        if descending:
            rows = await redis.zrevrangebyscore(
                key, start, "-inf", start=offset, num=SCAN_CHUNK, withscores=True
            )
        else:
            rows = await redis.zrangebyscore(
                key, start, "+inf", start=offset, num=SCAN_CHUNK, withscores=True
            )
        chunk = [(int(score), member) for member, score in cast(list[tuple[str, float]], rows)]
        if chunk:
            yield chunk
        if len(chunk) < SCAN_CHUNK:
            return
        offset += len(chunk)
