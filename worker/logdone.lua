-- Forget log outbox entries once the delivery log's database holds them, and let the
-- records they finished leave Redis, all at once (producer/forget.lua):
-- * the entries are acknowledged in the writers' group and deleted from the stream;
-- * a delivered or dead delivery whose hash still says so (not replayed since) is
--   deleted with its index entries (a dead one is replayed from the database then:
--   producer/revive.lua);
-- * an event none of whose deliveries is left in Redis is deleted, leaving its marker
--   for marker_ttl_s (IDEMPOTENCY_WINDOW).
-- ARGV: prefix, group, marker_ttl_s, n, then n pairs (delivery id, attempt number) of
-- final attempts (delivered or dead), then the entry ids. Returns {entries deleted,
-- deliveries deleted, events deleted}.
local key = K.log_outbox()
local ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local ids = {}
for i = 5 + 2 * n, #ARGV do ids[#ids + 1] = ARGV[i] end
local entries = 0
if #ids > 0 then
  redis.call('XACK', key, ARGV[2], unpack(ids))
  entries = redis.call('XDEL', key, unpack(ids))
end

local deliveries, events, touched, gone = 0, 0, {}, {}
for t = 0, n - 1 do
  local delivery_id = ARGV[5 + 2 * t]
  local event_id = forget_final(delivery_id, ARGV[6 + 2 * t], true)
  if event_id then
    deliveries = deliveries + 1
    touched[event_id] = true
    gone[delivery_id] = true
  end
end
for event_id in pairs(touched) do
  events = events + forget_event_if_done(event_id, ttl, gone)
end
count_marks()
return {entries, deliveries, events}
