-- Idempotency markers (K.event_seen): an event id that left Redis stays known for at least
-- `window` seconds, in small hashes by window bucket and digest shard (producer/keys.py).
-- A bucket's shard width (hex digits of the digest naming its hash) is chosen when the
-- bucket is first written, from the markers its previous bucket received, and stored in
-- the bucket's K.marker_bucket hash with its own count of markers; a script that may mark
-- calls count_marks() once before it returns.

-- Redis's clock (s), read once per script call: every writer and reader of markers agree
-- on the buckets' bounds, whatever the clocks of the machines calling. Only marker_now()
-- reads it (tests/test_markers.py sets it to place markers in a bucket of its choosing).
local marker_clock = nil
local function marker_now()
  if not marker_clock then marker_clock = tonumber(redis.call('TIME')[1]) end
  return marker_clock
end

-- The shard width of a bucket whose previous bucket received `count` markers: the
-- narrowest from MARKER_SHARD_HEX_MIN to MARKER_SHARD_HEX_MAX that keeps at most
-- MARKER_SHARD_TARGET markers per hash if the rate stays the same (the one rule: keys.py).
local function marker_width(count)
  local width = MARKER_SHARD_HEX_MIN
  while width < MARKER_SHARD_HEX_MAX and count > MARKER_SHARD_TARGET * 16 ^ width do
    width = width + 1
  end
  return width
end

-- The marker's key in bucket `bucket` of shard width `width`, and its field, for the
-- SHA-1 hex `digest` of an event id (producer.keys.event_marker computes the same).
local function marker_place(digest, window, bucket, width)
  local shard = string.sub(digest, 1, width)
  local hex = string.sub(digest, width + 1, width + 2 * MARKER_DIGEST_BYTES)
  local field = string.gsub(hex, '..', function(pair) return string.char(tonumber(pair, 16)) end)
  return K.event_seen(window .. ':' .. bucket .. ':' .. shard), field
end

-- The widths of the buckets this script call looked at, by "<window>:<bucket>": each is
-- read once. A bucket without a stored width has MARKER_SHARD_HEX_UNKNOWN, the fixed
-- width of the markers written before widths adapted (and of a bucket never written).
local bucket_widths = {}
local function bucket_width(window, bucket)
  local id = window .. ':' .. bucket
  local width = bucket_widths[id]
  if not width then
    width = tonumber(redis.call('HGET', K.marker_bucket(id), F.marker_bucket.width))
      or MARKER_SHARD_HEX_UNKNOWN
    bucket_widths[id] = width
  end
  return width
end

-- The bucket now's markers of `window` go to, opened once per script call: its width is
-- stored by the call that writes it first, from the previous bucket's count (final by
-- then: Redis's clock has left it). Its hash lasts as long as its markers.
local marking = {}
local function marker_bucket_open(window)
  local open = marking[window]
  if open then return open end
  local bucket = math.floor(marker_now() / window)
  local id = window .. ':' .. bucket
  local info = K.marker_bucket(id)
  local width = tonumber(redis.call('HGET', info, F.marker_bucket.width))
  if not width then
    local before = redis.call('HGET', K.marker_bucket(window .. ':' .. (bucket - 1)),
      F.marker_bucket.count)
    -- No count before (the first bucket, or one after a quiet window): no rate to
    -- follow, so a width that takes a burst.
    width = before and marker_width(tonumber(before)) or MARKER_SHARD_HEX_UNKNOWN
    redis.call('HSET', info, F.marker_bucket.width, width)
    redis.call('EXPIREAT', info, (bucket + 2) * window)
  end
  bucket_widths[id] = width
  open = {bucket = bucket, width = width, info = info, count = 0}
  marking[window] = open
  return open
end

-- Mark an event id as published; its bucket's hash lasts until the next bucket ends.
-- The first marker of a script call also says which window publish looks in.
local window_told = false
local function mark_seen(event_id, window)
  local open = marker_bucket_open(window)
  local key, field = marker_place(redis.sha1hex(event_id), window, open.bucket, open.width)
  open.count = open.count + redis.call('HSET', key, field, 1)
  redis.call('EXPIREAT', key, (open.bucket + 2) * window, 'NX')
  if not window_told then
    redis.call('SET', K.marker_window(), window)
    window_told = true
  end
end

-- Add this call's new markers to their buckets' counts (one command per bucket, not per
-- marker), from which the next bucket's width is chosen. Every script that may mark calls
-- it once, last (tests/test_markers.py checks that they do).
local function count_marks()
  for _, open in pairs(marking) do
    if open.count > 0 then
      redis.call('HINCRBY', open.info, F.marker_bucket.count, open.count)
      open.count = 0
    end
  end
end

-- The window of the markers (nil when none was ever written), for marked().
local function marker_window()
  return tonumber(redis.call('GET', K.marker_window()))
end

-- Whether an event id was marked within the last `window` seconds (or a little longer):
-- its marker is in now's bucket or the one before, each at its own width.
local function marked(event_id, window)
  if not window then return false end
  local digest = redis.sha1hex(event_id)
  local bucket = math.floor(marker_now() / window)
  for back = 0, 1 do
    local key, field = marker_place(digest, window, bucket - back,
      bucket_width(window, bucket - back))
    if redis.call('HEXISTS', key, field) == 1 then return true end
  end
  return false
end
