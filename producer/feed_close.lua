-- A poll endpoint is deleted: the deliveries left in its feed end as dead ("endpoint
-- deleted", as a worker ends an http endpoint's), and the feed and its cursor go.
-- ARGV: prefix, now_ms, endpoint_id, retention_s, log ('1': the delivery log is
-- DATABASE_URL's). Returns the number of deliveries that ended.
local now = tonumber(ARGV[2])
local endpoint_id = ARGV[3]
local retention = tonumber(ARGV[4])
local log_outbox = nil
if ARGV[5] == '1' then log_outbox = K.log_outbox() end
local feed = K.endpoint_feed(endpoint_id)

local ended = 0
local ids = redis.call('ZRANGE', feed, 0, -1)
for _, delivery_id in ipairs(ids) do
  ended = ended + feed_dead(delivery_id, now, retention, log_outbox, 'endpoint deleted')
end
if #ids > 0 then redis.call('HINCRBY', K.stats(), 'polling', -#ids) end
redis.call('DEL', feed, K.endpoint_feed_seq(endpoint_id))
return ended
