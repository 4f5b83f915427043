"""Idempotency markers whose shard width adapts to the rate (producer/markers.lua): the
width rule, the placement shared by Lua and Python, duplicates found at every width and
in the buckets written before widths adapted."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from producer.context import Producer
from producer.fields import MARKER_BUCKET_FIELDS
from producer.keys import (
    MARKER_DIGEST_BYTES,
    MARKER_SHARD_HEX_MAX,
    MARKER_SHARD_HEX_MIN,
    MARKER_SHARD_TARGET,
    event_marker,
)
from producer.scripts import LIBRARIES

from markers_lua import MarkersLua
from support import make_event

PROJECT = Path(__file__).resolve().parent.parent
WIDTH, COUNT = MARKER_BUCKET_FIELDS.width, MARKER_BUCKET_FIELDS.count


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client of the flushed private server that returns bytes (markers' fields)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def lua(raw: aioredis.Redis, producer: Producer) -> MarkersLua:
    return MarkersLua(raw, producer.keys)


def count_for(width: int) -> int:
    """A previous bucket's count after which a bucket gets ``width``."""
    return 0 if width == MARKER_SHARD_HEX_MIN else MARKER_SHARD_TARGET * 16 ** (width - 1) + 1


def quiet_window(now_s: int) -> int:
    """A window (s) whose bucket boundary is at least a minute from ``now_s`` either way,
    so that a test publishing by Redis's clock stays in the bucket it prepared."""
    return next(w for w in itertools.count(3600) if 60 <= now_s % w <= w - 60)


async def test_the_width_follows_the_previous_buckets_count(lua: MarkersLua) -> None:
    # The real values: at most 100 markers per hash if the rate stays the same.
    expected = {
        0: 0,
        1: 0,
        100: 0,
        101: 1,
        1_600: 1,
        1_601: 2,
        25_600: 2,
        25_601: 3,
        409_600: 3,
        409_601: 4,
        6_553_600: 4,
        6_553_601: 5,
        104_857_600: 5,
        104_857_601: 6,
        1_677_721_600: 6,
        10**12: 6,
    }
    assert {count: await lua.width(count) for count in expected} == expected
    # The same rule at every bound of the constants.
    for width in range(MARKER_SHARD_HEX_MIN, MARKER_SHARD_HEX_MAX):
        bound = MARKER_SHARD_TARGET * 16**width
        assert await lua.width(bound) == width
        assert await lua.width(bound + 1) == width + 1


async def test_python_and_lua_place_markers_alike(lua: MarkersLua, producer: Producer) -> None:
    ids = [f"evt_{n}" for n in range(1500)] + ["", "é-ü", "x" * 300]
    window, now = 86_400, 1_760_000_123
    for width in range(MARKER_SHARD_HEX_MIN, MARKER_SHARD_HEX_MAX + 1):
        placed = await lua.place(window, now // window, width, ids)
        python = [event_marker(i, window, now, width) for i in ids]
        assert placed == [(producer.keys.event_seen(m).encode(), field) for m, field in python]
        assert {len(field) for _, field in placed} == {MARKER_DIGEST_BYTES}
        shards = {key.rsplit(b":", 1)[1] for key, _ in placed}
        assert {len(s) for s in shards} == {width}
        assert len(shards) > min(1000, 16**width // 2)  # the ids spread over the shards


@pytest.mark.parametrize("width", range(MARKER_SHARD_HEX_MIN, MARKER_SHARD_HEX_MAX + 1))
async def test_a_bucket_stores_its_width_and_count_where_python_finds_its_markers(
    lua: MarkersLua, raw: aioredis.Redis, producer: Producer, width: int
) -> None:
    window = 3600
    bucket = int((await raw.time())[0]) // window + 5  # ahead: nothing expires meanwhile
    previous = producer.keys.marker_bucket(window, bucket - 1)
    await raw.hset(previous, COUNT, count_for(width))
    at = bucket * window + 7
    await lua.mark(window, "evt_", 0, 299, at)
    await lua.mark(window, "evt_", 300, 499, at + 100)  # a second call, same bucket
    info = producer.keys.marker_bucket(window, bucket)
    assert await raw.hgetall(info) == {WIDTH.encode(): str(width).encode(), COUNT.encode(): b"500"}
    assert await raw.expiretime(info) == (bucket + 2) * window
    for n in range(500):
        marker_id, field = event_marker(f"evt_{n}", window, at, width)
        key = producer.keys.event_seen(marker_id)
        assert await raw.hget(key, field) == b"1"
        assert await raw.expiretime(key) == (bucket + 2) * window
    # Marking an id again adds no marker, and the count says so.
    await lua.mark(window, "evt_", 0, 9, at + 200)
    assert await raw.hget(info, COUNT) == b"500"
    # The width was fixed by the first call: a count changed since does not move it.
    await raw.hset(previous, COUNT, count_for(MARKER_SHARD_HEX_MAX))
    await lua.mark(window, "late_", 0, 0, at + 300)
    assert await raw.hget(info, WIDTH) == str(width).encode()
    assert await lua.marked(window, ["late_0", "evt_499", "never"], at + 301) == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    ("before", "now"),
    list(itertools.product(range(MARKER_SHARD_HEX_MIN, MARKER_SHARD_HEX_MAX + 1), repeat=2)),
)
async def test_a_republished_id_is_refused_whatever_the_widths_of_its_buckets(
    lua: MarkersLua, raw: aioredis.Redis, producer: Producer, before: int, now: int
) -> None:
    """Markers in the previous bucket of width ``before`` and in now's of width ``now``,
    written by the library, found by the real publish (which reads Redis's clock)."""
    clock = int((await raw.time())[0])
    window = quiet_window(clock)
    bucket = clock // window
    await raw.hset(producer.keys.marker_bucket(window, bucket - 2), COUNT, count_for(before))
    await lua.mark(window, "old_", 0, 19, (bucket - 1) * window + 1)
    await raw.hset(producer.keys.marker_bucket(window, bucket - 1), COUNT, count_for(now))
    await lua.mark(window, "new_", 0, 19)
    for back, width in ((1, before), (0, now)):
        stored = await raw.hget(producer.keys.marker_bucket(window, bucket - back), WIDTH)
        assert stored == str(width).encode()

    ids = [f"old_{n}" for n in range(20)] + [f"new_{n}" for n in range(20)] + ["fresh_1"]
    results = await producer.publisher.publish_many(
        [make_event(producer, "issue.created", id=i) for i in ids]
    )
    assert [r.duplicate for r in results] == [True] * 40 + [False]


def legacy_marker(event_id: str) -> tuple[str, bytes]:
    """The shard and field of a marker as written before widths adapted (3 hex digits,
    then 8 bytes), spelled out here, not from producer.keys, which may change."""
    digest = hashlib.sha1(event_id.encode()).hexdigest()
    return digest[:3], bytes.fromhex(digest[3:19])


async def test_markers_written_before_widths_adapted_are_still_found(
    lua: MarkersLua, raw: aioredis.Redis, producer: Producer
) -> None:
    clock = int((await raw.time())[0])
    window = quiet_window(clock)
    bucket = clock // window
    # The layout of before: no bucket hash, width 3, the window in seenw.
    for back in (0, 1):
        for n in range(30):
            shard, field = legacy_marker(f"legacy{back}_{n}")
            key = producer.keys.event_seen(f"{window}:{bucket - back}:{shard}")
            await raw.hset(key, field, 1)
            await raw.expireat(key, (bucket - back + 2) * window)
    await raw.set(producer.keys.marker_window, window)
    ids = [f"legacy{back}_{n}" for back in (0, 1) for n in range(30)]
    assert await lua.marked(window, [*ids, "fresh_0"]) == [True] * 60 + [False]

    # The upgraded code marks more in now's bucket: it keeps width 3 there (the previous
    # bucket has no count), so old and new markers are found alike.
    await lua.mark(window, "new_", 0, 49)
    info = producer.keys.marker_bucket(window, bucket)
    assert await raw.hgetall(info) == {WIDTH.encode(): b"3", COUNT.encode(): b"50"}
    published = await producer.publisher.publish_many(
        [make_event(producer, "issue.created", id=i) for i in [*ids, "new_7", "fresh_1"]]
    )
    assert [r.duplicate for r in published] == [True] * 61 + [False]
    # The next bucket's width comes from the markers counted since the upgrade only
    # (50 of them: width 0, one hash).
    await lua.mark(window, "next_", 0, 0, (bucket + 1) * window)
    assert await raw.hget(producer.keys.marker_bucket(window, bucket + 1), WIDTH) == b"0"


MARKING = re.compile(r"\b(mark_seen|forget_event_if_done|keep_latest)\(")


def test_every_script_that_may_mark_counts_its_marks() -> None:
    """count_marks() once, after the script's last call that may write a marker (else
    its bucket's count, hence the next bucket's width, would miss them)."""
    libraries = {name for parts in LIBRARIES.values() for _, name in parts}
    scripts = sorted((PROJECT / "producer").glob("*.lua")) + sorted(
        (PROJECT / "worker").glob("*.lua")
    )
    marking = {}
    for path in scripts:
        if path.name in libraries:
            continue
        code = "\n".join(line.split("--", 1)[0] for line in path.read_text().splitlines())
        calls = [m.start() for m in MARKING.finditer(code)]
        if calls:
            marking[path.name] = code.count("count_marks()") == 1 and code.index(
                "count_marks()"
            ) > max(calls)
    assert marking == {"logdone.lua": True, "poll_ack.lua": True, "record.lua": True}
