-- Re-enqueue dead deliveries: each starts a new round of the retry schedule,
-- numbered after its last attempt. Deliveries that are not dead, or whose
-- event has expired, are left alone (so replaying twice enqueues nothing twice).
-- Those of a FIFO endpoint join the back of its line, in the order given (fifo.lua).
-- ARGV: prefix, now_ms, batch_size, count, then count delivery ids.
-- Returns {replayed delivery ids, outbox members}.
local now = tonumber(ARGV[2])
local batch_size = tonumber(ARGV[3])
local count = tonumber(ARGV[4])

local replayed = {}
local jobs = batch_writer(now, batch_size)
local fifo = {}  -- endpoint id -> whether it is FIFO, each endpoint read once

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
    local endpoint_id = fields[4]
    if fifo[endpoint_id] == nil then
      fifo[endpoint_id] = redis.call('HGET', K.endpoint(endpoint_id), 'ordering') == 'fifo'
    end
    if fifo[endpoint_id] then
      fifo_push(endpoint_id, delivery_id)
    else
      jobs.add(delivery_id, made + 1)
    end
  end
end
jobs.flush()
for endpoint_id, is_fifo in pairs(fifo) do
  if is_fifo then fifo_next(endpoint_id, false) end
end
-- Replayed deliveries are no longer dead: 'dead' counts what the endpoints' dead sets hold.
if #replayed > 0 then
  redis.call('HINCRBY', K.stats(), 'queued', #replayed)
  redis.call('HINCRBY', K.stats(), 'dead', -#replayed)
end
return {replayed, jobs.members}
