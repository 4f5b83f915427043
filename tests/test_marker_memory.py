"""What idempotency markers cost in Redis memory: ``MEMORY USAGE`` summed over one
bucket's keys, divided by its markers, written by producer/markers.lua's own functions
into buckets of a compressed window after a previous bucket that received as many
(tests/markers_lua.py sets the library's clock to those buckets: no waiting)."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from producer.fields import MARKER_BUCKET_FIELDS
from producer.keys import Keys

from harness import RedisServerFactory
from markers_lua import MarkersLua

KEYS = Keys()
WINDOW = 600  # s: a compressed IDEMPOTENCY_WINDOW
BOUND = 64  # bytes per marker (issue 15)
CALL = 10_000  # markers per script call, as a busy log writer's batches would write


@dataclass(frozen=True)
class Bucket:
    """One bucket's markers as Redis holds them."""

    markers: int
    width: int
    hashes: int
    listpack: int  # hashes still listpack-encoded
    bytes: int  # MEMORY USAGE summed over its hashes and its own info hash

    @property
    def per_marker(self) -> float:
        return self.bytes / self.markers


async def measured(redis: aioredis.Redis, bucket: int) -> Bucket:
    """The markers of ``bucket`` of WINDOW, by MEMORY USAGE (every sample: exact)."""
    keys = [k async for k in redis.scan_iter(KEYS.event_seen(f"{WINDOW}:{bucket}:*"), count=2000)]
    info = KEYS.marker_bucket(WINDOW, bucket)
    async with redis.pipeline(transaction=False) as pipe:
        for key in [*keys, info]:
            pipe.memory_usage(key, samples=0)
        for key in keys:
            pipe.object("encoding", key)
        replies = await pipe.execute()
    sizes, encodings = replies[: len(keys) + 1], replies[len(keys) + 1 :]
    stored = await redis.hgetall(info)
    return Bucket(
        markers=int(stored[MARKER_BUCKET_FIELDS.count.encode()]),
        width=int(stored[MARKER_BUCKET_FIELDS.width.encode()]),
        hashes=len(keys),
        listpack=sum(1 for e in encodings if e == b"listpack"),
        bytes=sum(sizes),
    )


async def two_buckets(redis: aioredis.Redis, markers: int) -> tuple[Bucket, Bucket]:
    """``markers`` ids marked into a bucket, then as many into the next: both measured.
    The buckets lie ahead of Redis's clock, so that none expires during the test."""
    lua = MarkersLua(redis, KEYS)
    first = int((await redis.time())[0]) // WINDOW + 10
    for bucket in (first, first + 1):
        for start in range(0, markers, CALL):
            last = min(start + CALL, markers) - 1
            await lua.mark(WINDOW, f"evt_{bucket}_", start, last, bucket * WINDOW + 1)
    return await measured(redis, first), await measured(redis, first + 1)


async def test_markers_cost_at_most_64_bytes_each_at_200_000_per_window(redis_url: str) -> None:
    """redis-server with its defaults (hash-max-listpack-entries 512)."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        before, bucket = await two_buckets(redis, 200_000)
    finally:
        await redis.aclose()
    assert before.width == bucket.width == 3  # 200,000 ≤ 409,600: 49 a hash
    assert bucket.markers == 200_000
    assert bucket.hashes == bucket.listpack == 4096
    assert bucket.per_marker <= BOUND, bucket


async def test_a_rate_past_what_width_3_holds_gets_wider_buckets_that_stay_compact(
    redis_server_factory: RedisServerFactory,
) -> None:
    """A server with hash-max-listpack-entries 128 (the lowest the widths are made for):
    the first bucket, at width 3 (no count before it), is what every bucket was before
    widths adapted: 146 markers a hash, past the listpack limit. The next is wider."""
    server = redis_server_factory("--hash-max-listpack-entries", "128")
    redis = aioredis.Redis.from_url(server.url)
    try:
        before, bucket = await two_buckets(redis, 600_000)
    finally:
        await redis.aclose()
    assert before.width == 3
    assert before.listpack < before.hashes // 2  # most turned into hashtables
    assert bucket.width == 4  # 600,000 > 409,600: 9 a hash
    assert bucket.markers == 600_000
    assert bucket.hashes == bucket.listpack
    assert bucket.per_marker <= BOUND, bucket
    # What the width saves, as measured by the same sum: at least half.
    assert bucket.per_marker * 2 < before.per_marker, (before, bucket)


async def test_few_markers_take_few_hashes_and_stay_under_64_bytes(redis_url: str) -> None:
    """At a low rate a bucket takes as few hashes as its count asks (a hash costs about
    100 bytes of its own): 50 markers a window in one hash, 1,000 in 16, 20,000 in 256.
    The first bucket, with no count before it, has width 3 (4,096 hashes) for a burst."""
    redis = aioredis.Redis.from_url(redis_url)
    measured_buckets = {}
    try:
        for markers in (50, 1_000, 20_000):
            first, measured_buckets[markers] = await two_buckets(redis, markers)
            assert first.width == 3
            await redis.flushall()
    finally:
        await redis.aclose()
    assert {n: b.width for n, b in measured_buckets.items()} == {50: 0, 1_000: 1, 20_000: 2}
    for bucket in measured_buckets.values():
        assert bucket.hashes == bucket.listpack == 16**bucket.width
        assert bucket.per_marker <= BOUND, bucket
