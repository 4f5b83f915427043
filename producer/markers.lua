-- Idempotency markers (K.event_seen): an event id that left Redis stays known for at least
-- `window` seconds, in small hashes by window bucket and digest shard (producer/keys.py).

-- Redis's clock (s), read once per script call: every writer and reader of markers agree
-- on the buckets' bounds, whatever the clocks of the machines calling.
local marker_clock = nil

-- The marker's key in the bucket `back` buckets before now's, and its field.
local function marker_place(event_id, window, back)
  if not marker_clock then marker_clock = tonumber(redis.call('TIME')[1]) end
  local digest = redis.sha1hex(event_id)
  local bucket = math.floor(marker_clock / window) - back
  local shard = string.sub(digest, 1, MARKER_SHARD_HEX)
  local hex = string.sub(digest, MARKER_SHARD_HEX + 1, MARKER_SHARD_HEX + 2 * MARKER_DIGEST_BYTES)
  local field = string.gsub(hex, '..', function(pair) return string.char(tonumber(pair, 16)) end)
  return K.event_seen(window .. ':' .. bucket .. ':' .. shard), field, bucket
end

-- Mark an event id as published; its bucket's hash lasts until the next bucket ends.
-- The first marker of a script call also says which window publish looks in.
local window_told = false
local function mark_seen(event_id, window)
  local key, field, bucket = marker_place(event_id, window, 0)
  redis.call('HSET', key, field, 1)
  redis.call('EXPIREAT', key, (bucket + 2) * window, 'NX')
  if not window_told then
    redis.call('SET', K.marker_window(), window)
    window_told = true
  end
end

-- The window of the markers (nil when none was ever written), for marked().
local function marker_window()
  return tonumber(redis.call('GET', K.marker_window()))
end

-- Whether an event id was marked within the last `window` seconds (or a little longer):
-- its marker is in now's bucket or the one before.
local function marked(event_id, window)
  if not window then return false end
  for back = 0, 1 do
    local key, field = marker_place(event_id, window, back)
    if redis.call('HEXISTS', key, field) == 1 then return true end
  end
  return false
end
