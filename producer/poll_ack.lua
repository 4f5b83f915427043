-- A poll endpoint's consumer acknowledges its feed up to a cursor: each delivery of the
-- feed with a cursor at most `upto` is recorded as delivered, as a worker records a
-- delivered attempt (worker/record.lua: stats, the delivery log's outbox or Redis's own
-- bounded log), and leaves the feed. Acknowledging again changes nothing.
-- ARGV: prefix, now_ms, endpoint_id, upto (the cursor), retention_s, log ('1': the delivery log is
-- DATABASE_URL's), keep (LOG_KEEP_PER_ENDPOINT).
-- Returns the number of deliveries acknowledged.
local now = tonumber(ARGV[2])
local endpoint_id = ARGV[3]
local upto = ARGV[4]
local retention = tonumber(ARGV[5])
local log_outbox = nil
if ARGV[6] == '1' then log_outbox = K.log_outbox() end
local keep = tonumber(ARGV[7])
local feed, stats = K.endpoint_feed(endpoint_id), K.stats()

local acked = 0
local ids = redis.call('ZRANGEBYSCORE', feed, '-inf', upto)
for _, delivery_id in ipairs(ids) do
  local key = K.delivery(delivery_id)
  local row = redis.call('HMGET', key, F.delivery.state, F.delivery.attempts,
    F.delivery.event, F.delivery.created)
  if row[1] == 'queued' then
    local number = tonumber(row[2]) + 1
    -- The latency of a fetched delivery: from its creation to its acknowledgement.
    local attempt = cjson.encode({number = number, at_ms = now, status = cjson.null,
      error = cjson.null, latency_ms = now - tonumber(row[4]), response = 'acknowledged',
      outcome = 'delivered', next_attempt_ms = cjson.null})
    redis.call('HSET', key, F.delivery.attempts, number, F.delivery.attempt .. number, attempt,
      F.delivery.updated, now, F.delivery.state, 'delivered')
    redis.call('HINCRBY', stats, 'queued', -1)
    redis.call('HINCRBY', stats, 'delivered', 1)
    finish_delivery(key, row[3], retention)
    log_attempt(log_outbox, delivery_id, row[4], row[3], endpoint_id, attempt)
    if not log_outbox then keep_latest(endpoint_id, {now, delivery_id}, now, retention, keep) end
    acked = acked + 1
  end
end
if #ids > 0 then
  redis.call('ZREMRANGEBYSCORE', feed, '-inf', upto)
  redis.call('HINCRBY', stats, 'polling', -#ids)
end
count_marks()
return acked
