"""producer/markers.lua's own functions, called from tests on a private Redis.

The script is the library as the producer's and worker's scripts include it (after the
same prelude), followed by a few lines that call its functions. It may set the one
clock the library reads (``marker_clock``, else Redis's TIME) to write markers into a
bucket of the test's choosing without waiting for one to begin.
"""

from __future__ import annotations

from importlib import resources

import redis.asyncio as aioredis

from producer.keys import Keys, lua_prelude
from producer.scripts import Script

_CALLS = """
local op = ARGV[2]
if ARGV[3] ~= '' then marker_clock = tonumber(ARGV[3]) end
if op == 'width' then return marker_width(tonumber(ARGV[4])) end
local window = tonumber(ARGV[4])
if op == 'mark' then
  local from, to = tonumber(ARGV[6]), tonumber(ARGV[7])
  for i = from, to do mark_seen(ARGV[5] .. i, window) end
  count_marks()
  return to - from + 1
elseif op == 'place' then
  local bucket, width, out = tonumber(ARGV[5]), tonumber(ARGV[6]), {}
  for i = 7, #ARGV do
    local key, field = marker_place(redis.sha1hex(ARGV[i]), window, bucket, width)
    out[#out + 1] = key
    out[#out + 1] = field
  end
  return out
elseif op == 'marked' then
  local out = {}
  for i = 5, #ARGV do out[#out + 1] = marked(ARGV[i], window) and 1 or 0 end
  return out
end
return redis.error_reply('unknown op ' .. op)
"""


class MarkersLua:
    """The marker functions of producer/markers.lua, on a client that returns bytes."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        library = resources.files("producer").joinpath("markers.lua").read_text()
        self._script = Script(redis, keys, lua_prelude() + library + _CALLS)

    async def width(self, count: int) -> int:
        """``marker_width(count)``: the width of a bucket after one of ``count`` markers."""
        return int(await self._script("width", "", count))

    async def mark(
        self, window_s: int, prefix: str, first: int, last: int, at_s: int | None = None
    ) -> None:
        """Mark the ids ``<prefix><first>`` … ``<prefix><last>`` in one script call
        (``count_marks`` included), at ``at_s`` (None: Redis's clock)."""
        await self._script("mark", _clock(at_s), window_s, prefix, first, last)

    async def place(
        self, window_s: int, bucket: int, width: int, ids: list[str]
    ) -> list[tuple[bytes, bytes]]:
        """``marker_place`` of each id: (key, field)."""
        out = await self._script("place", "", window_s, bucket, width, *ids)
        return list(zip(out[::2], out[1::2], strict=True))

    async def marked(self, window_s: int, ids: list[str], at_s: int | None = None) -> list[bool]:
        """``marked`` of each id in one script call (None: by Redis's clock)."""
        out = await self._script("marked", _clock(at_s), window_s, *ids)
        return [flag == 1 for flag in out]


def _clock(at_s: int | None) -> str:
    return "" if at_s is None else str(at_s)
