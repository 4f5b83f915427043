-- Re-enqueue dead deliveries: each starts a new round of the retry schedule,
-- numbered after its last attempt. Deliveries that are not dead, or whose
-- event has expired, are left alone (so replaying twice enqueues nothing twice).
-- Those of a FIFO endpoint join the back of its line, in the order given (fifo.lua); a
-- poll endpoint's go back to the end of its feed (feed.lua).
-- ARGV: prefix, now_ms, batch_size, POLL_MAX_PER_ENDPOINT, log ('1': the delivery log is
-- DATABASE_URL's), retention_s, count, then count delivery ids.
-- Returns {replayed delivery ids, outbox members}.
local now = tonumber(ARGV[2])
local batch_size = tonumber(ARGV[3])
local poll_max = tonumber(ARGV[4])
local log_outbox = nil
if ARGV[5] == '1' then log_outbox = K.log_outbox() end
local retention = tonumber(ARGV[6])
local count = tonumber(ARGV[7])

local replayed = {}
local jobs = batch_writer(now, batch_size)
local queue = requeuer(jobs,
  {now = now, max = poll_max, retention = retention, log_outbox = log_outbox})

for k = 1, count do
  local delivery_id = ARGV[7 + k]
  local key = K.delivery(delivery_id)
  local fields = redis.call('HMGET', key,
    F.delivery.state, F.delivery.attempts, F.delivery.event, F.delivery.endpoint)
  local event_key = K.event(tostring(fields[3]))
  if fields[1] == 'dead' and redis.call('EXISTS', event_key) == 1 then
    local made = tonumber(fields[2])
    redis.call('HSET', key,
      F.delivery.state, 'queued', F.delivery.round, made, F.delivery.updated, now)
    redis.call('HDEL', key, F.delivery.drop)
    redis.call('PERSIST', key)
    redis.call('ZREM', K.endpoint_dead(fields[4]), delivery_id)
    redis.call('HINCRBY', event_key, F.event.open, 1)
    redis.call('PERSIST', event_key)
    redis.call('PERSIST', K.event_deliveries(fields[3]))
    replayed[#replayed + 1] = delivery_id
    -- Counted first: a full feed may push it (or an older one) out as dead again.
    redis.call('HINCRBY', K.stats(), 'queued', 1)
    redis.call('HINCRBY', K.stats(), 'dead', -1)
    queue.add(fields[4], delivery_id, made + 1)
  end
end
queue.finish()
return {replayed, jobs.members}
