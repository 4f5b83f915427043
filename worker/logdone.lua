-- Forget log outbox entries once the delivery log's database holds them, and let the
-- records they finished leave Redis, all at once:
-- * the entries are acknowledged in the writers' group and deleted from the stream;
-- * a delivered delivery whose hash still says so (not replayed since) is deleted with
--   its entry of the endpoint's index (dead ones stay for replay, until their retention);
-- * an event none of whose deliveries is left in Redis (every one delivered and written)
--   is deleted with its fan-out list, leaving K.event_seen(id) for marker_ttl_s so that
--   publishing its id again is still a duplicate.
-- ARGV: prefix, group, marker_ttl_s, n, then n triples (delivery id, event id, attempt
-- number) of delivered attempts, then the entry ids. Returns {entries deleted,
-- deliveries deleted, events deleted}.
local key = K.log_outbox()
local ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local ids = {}
for i = 5 + 3 * n, #ARGV do ids[#ids + 1] = ARGV[i] end
local entries = 0
if #ids > 0 then
  redis.call('XACK', key, ARGV[2], unpack(ids))
  entries = redis.call('XDEL', key, unpack(ids))
end

local deliveries, events, touched = 0, 0, {}
for t = 0, n - 1 do
  local delivery_id, event_id, number = ARGV[5 + 3 * t], ARGV[6 + 3 * t], ARGV[7 + 3 * t]
  local dkey = K.delivery(delivery_id)
  local row = redis.call('HMGET', dkey, 's', 'n', 'p')
  if row[1] == 'delivered' and row[2] == number then
    redis.call('DEL', dkey)
    redis.call('ZREM', K.endpoint_deliveries(row[3]), delivery_id)
    deliveries = deliveries + 1
    touched[event_id] = true
  end
end

for event_id in pairs(touched) do
  local ekey = K.event(event_id)
  if redis.call('EXISTS', ekey) == 1 and tonumber(redis.call('HGET', ekey, 'o') or '0') <= 0 then
    local fan_out = K.event_deliveries(event_id)
    local left = false
    for _, delivery_id in ipairs(redis.call('LRANGE', fan_out, 0, -1)) do
      if redis.call('EXISTS', K.delivery(delivery_id)) == 1 then
        left = true
        break
      end
    end
    if not left then
      redis.call('DEL', ekey, fan_out)
      redis.call('SET', K.event_seen(event_id), 1, 'EX', ttl)
      events = events + 1
    end
  end
end
return {entries, deliveries, events}
