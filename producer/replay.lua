-- Re-enqueue dead deliveries: each starts a new round of the retry schedule,
-- numbered after its last attempt. Deliveries that are not dead, or whose
-- event has expired, are left alone (so replaying twice enqueues nothing twice).
-- ARGV: prefix, now_ms, batch_size, count, then count delivery ids.
-- Returns {replayed delivery ids, outbox members}.
local now = tonumber(ARGV[2])
local batch_size = tonumber(ARGV[3])
local count = tonumber(ARGV[4])

local replayed = {}
local jobs = batch_writer(now, batch_size)

for k = 1, count do
  local delivery_id = ARGV[4 + k]
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
    jobs.add(delivery_id, made + 1)
  end
end
jobs.flush()
-- Replayed deliveries are no longer dead: 'dead' counts what the endpoints' dead sets hold.
if #replayed > 0 then
  redis.call('HINCRBY', K.stats(), 'queued', #replayed)
  redis.call('HINCRBY', K.stats(), 'dead', -#replayed)
end
return {replayed, jobs.members}
